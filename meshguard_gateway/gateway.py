"""The gateway's behaviour, without HTTP: the only place that joins store, engine and identity.

`Gateway.check` is the hot path: token already verified, agent from the in-memory cache, a pure
engine decision, one audit row committed (batched) -> a `CheckResult`. Everything else here is the
admin surface: agents, policies (apply / delete / reload with last-good semantics), audit queries,
approvals (durable, bound to agent + action + resource + context, usable once, expiring, every
transition audited), retention.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from meshguard_gateway.chain import sha256_text
from meshguard_gateway.config import Settings
from meshguard_gateway.engine import Agent, Decision, Effect, Engine, Request
from meshguard_gateway.errors import (
    ConflictError,
    InvalidRequestError,
    MeshGuardError,
    NotFoundError,
    PolicyError,
    Problem,
)
from meshguard_gateway.events import EventBus, PublishingStore
from meshguard_gateway.identity import InvalidTokenError, TokenIssuer, new_agent_id, normalize_tier
from meshguard_gateway.policy import Policy, PolicySet, load_policies, parse_policy
from meshguard_gateway.url import Resolution
from meshguard_gateway.ratelimit import SlidingWindowLimiter
from meshguard_gateway.resolver import DEFAULT_TIMEOUT, resolve_url_host
from meshguard_gateway.store import (
    AgentRecord,
    Approval,
    AuditEntry,
    AuditEvent,
    AuditQuery,
    AuditStats,
    OutcomeRecord,
    Store,
)

log = logging.getLogger("meshguard.gateway")

# Who did something, as a client names it (X-MeshGuard-Actor, an approval's `by`): printable ASCII
# only, so that it cannot break a log line or a terminal.
ACTOR_NAME = re.compile(r"^[\x21-\x7e][\x20-\x7e]{0,127}$")


class TooManyWatchesError(MeshGuardError):
    """429 for a watch beyond the caps; ``retry_after`` seconds go into the Retry-After header."""

    code = "too_many_watches"
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

RESULT_LIMIT = 1000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")
_TRACE = re.compile(r"^[\x21-\x7e]{1,128}$")
_FILE_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
APPROVAL_STATUSES = ("pending", "approved", "denied", "expired", "used")


def iso(ts: float | None) -> str | None:
    """Epoch seconds -> ISO-8601 UTC with milliseconds (``2026-01-02T03:04:05.678Z``)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def canonical_context(context: Mapping[str, Any] | None) -> str:
    """The context as canonical JSON: what an approval is bound to."""
    return json.dumps(context or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# Decision and trace ids need to be unique, not secret (a decision id only links an outcome to
# its own agent's decision): a seeded PRNG is enough and costs no system call per check.
# Approval ids, which grant something, come from `secrets`.
_ids = random.Random(int.from_bytes(os.urandom(16), "big"))


def new_decision_id() -> str:
    return f"dec_{_ids.getrandbits(96):024x}"


def new_trace_id() -> str:
    return f"trace_{_ids.getrandbits(64):016x}"


def valid_trace_id(value: str) -> bool:
    return _TRACE.match(value) is not None


@dataclass(frozen=True, slots=True)
class CheckResult:
    """A decision as answered: ``decision`` is what the policies say; ``enforced`` False in audit mode."""

    decision: Effect
    reason: str
    policy: str | None
    rule: str | None
    retry_after: float | None
    limit: str | None
    decision_id: str
    trace_id: str
    agent: AgentRecord
    action: str
    resource: str | None
    enforced: bool
    audit_id: int
    approval: Approval | None = None

    @property
    def allowed(self) -> bool:
        """May the client go ahead? Always in audit mode; in enforce mode only on ALLOW."""
        return self.decision is Effect.ALLOW or not self.enforced


class Gateway:
    """One gateway's state: settings, store, agent cache, the engine in force."""

    def __init__(self, settings: Settings, store: Store, clock: Callable[[], float] = time.time) -> None:
        assert settings.jwt_secret is not None, "prepare_state() fills in the JWT secret"
        self.settings = settings
        # Committed changes are published to live listeners (alerts, the console's feed) by the
        # store wrapper, whichever code path wrote them; see events.py.
        self.events = EventBus()
        self.store: Store = PublishingStore(store, self.events)
        self.clock = clock
        self.mode = settings.mode
        self.enforce = settings.mode == "enforce"
        # AUDIT_DURABILITY=deferred answers before the audit row commits (a crash can lose the last
        # batch). Only for measuring what durability costs; the default commits first.
        self._deferred = settings.audit_durability == "deferred"
        self.tokens = TokenIssuer(settings.jwt_secret, settings.token_ttl_hours)
        self.policies_path = Path(settings.policies_dir)
        self.engine = Engine(PolicySet(), limiter=SlidingWindowLimiter())
        self.last_reload_error: PolicyError | None = None
        self._agents: dict[str, AgentRecord] = {}
        self._by_name: dict[str, str] = {}
        self._engine_agents: dict[str, Agent] = {}
        self._policy_lock = asyncio.Lock()
        self._approval_lock = asyncio.Lock()
        self._waiters: dict[str, asyncio.Event] = {}
        self._revocations: dict[str, asyncio.Event] = {}  # agent id -> set when it is revoked (watch)
        self._watching: dict[str, int] = {}  # agent id -> watches held now (capped: each holds a socket)
        self.started_at = clock()

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, load agents into the cache, load the policies (PolicyError if invalid)."""
        await self.store.open()
        for agent in await self.store.load_agents():
            self._cache_agent(agent)
        try:
            policies = await asyncio.to_thread(load_policies, self.policies_path)
        except PolicyError as exc:
            await self._audit_reload_failed(exc, "gateway", "start")
            raise
        self.engine = self.engine.with_policies(policies)
        await self._audit_reload(PolicySet(), policies, "gateway", "start")
        for w in policies.warnings:
            log.warning("policy warning: %s", w)
        log.info("loaded %d policies from %s: %s", len(policies), self.policies_path, ", ".join(policies.names))
        await self._rebuild_rate_limits()

    REPLAY_LIMIT = 200_000

    async def _rebuild_rate_limits(self) -> None:
        """Refill the rate-limit windows from the last hour of the audit trail, so that a restart
        (a crash, a deploy) does not hand every agent a fresh budget. Each check is decided again
        at its own time, in commit order, which counts exactly what was counted before (under the
        policies in force now)."""
        now = self.clock()
        checks = await self.store.recent_checks(now - 3600.0, self.REPLAY_LIMIT)
        replayed = 0
        for ev in checks:
            agent = self._engine_agents.get(ev.agent_id or "")
            if agent is None or ev.timestamp > now:
                continue
            try:
                context = json.loads(ev.context) if ev.context else None
            except ValueError:
                context = None
            self.engine.decide(Request(agent, ev.action, ev.resource, context), ev.timestamp)
            replayed += 1
        if replayed:
            log.info("rate limits rebuilt from the last hour of the audit trail (%d checks)", replayed)
        if len(checks) >= self.REPLAY_LIMIT:
            log.warning("only the newest %d checks of the last hour were replayed into the rate limits",
                        self.REPLAY_LIMIT)  # fmt: skip

    async def close(self) -> None:
        await self.store.close()

    @property
    def policies(self) -> PolicySet:
        return self.engine.policies

    # ---- agents: cache ---------------------------------------------------------------------

    def _cache_agent(self, agent: AgentRecord) -> None:
        old = self._agents.get(agent.id)
        if old is not None and old.name != agent.name:
            self._by_name.pop(old.name, None)
        self._agents[agent.id] = agent
        self._by_name[agent.name] = agent.id
        self._engine_agents[agent.id] = Agent(agent.id, agent.name, agent.trust_tier, frozenset(agent.tags))

    def active_agents(self) -> int:
        return sum(1 for a in self._agents.values() if not a.revoked)

    def authenticate(self, token: str | None) -> AgentRecord:
        """The agent a token stands for, checked against its current record (revocation included)."""
        claims = self.tokens.verify(token, self.clock())
        agent = self._agents.get(claims.agent_id)
        if agent is None:
            raise InvalidTokenError("unknown agent: the token's agent does not exist on this gateway")
        if agent.status != "active":
            raise InvalidTokenError(f"revoked: agent '{agent.name}' was revoked; it cannot act any more")
        return agent

    def _still_active(self, agent: AgentRecord) -> AgentRecord:
        """The agent as it is now: a revocation that landed while its request body was still
        arriving (after the token was checked) refuses the request too."""
        current = self._agents.get(agent.id)
        if current is None or current.status != "active":
            raise InvalidTokenError(f"revoked: agent '{agent.name}' was revoked; it cannot act any more")
        return current

    def find_agent(self, ref: str) -> AgentRecord:
        """An agent by id or name; NotFoundError otherwise."""
        agent = self._agents.get(ref)
        if agent is None:
            aid = self._by_name.get(ref)
            agent = self._agents.get(aid) if aid is not None else None
        if agent is None:
            raise NotFoundError(f"agent {ref!r} does not exist; list agents with `meshguard agent list`")
        return agent

    # ---- agents: admin ---------------------------------------------------------------------

    def _admin_event(self, agent: AgentRecord, what: str, reason: str, actor: str = "admin") -> AuditEvent:
        return AuditEvent(
            timestamp=self.clock(), kind="admin", agent_id=agent.id, agent_name=agent.name, action="admin:agent",
            resource=agent.name, decision=what, enforced=True, policy=None, rule=None, reason=f"{reason} by {actor}",
            trace_id=None, decision_id=None, actor=actor,
        )  # fmt: skip

    async def create_agent(
        self, name: Any, trust_tier: Any = "verified", tags: Any = None, actor: str = "admin"
    ) -> tuple[AgentRecord, str, float]:
        """A new agent and its first token: (agent, token, expires_at)."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidRequestError(
                "field 'name' must be 1-128 characters: letters, digits, '_', '-', '.', '@', starting with a "
                "letter or digit"
            )
        tier = normalize_tier(trust_tier)
        tag_list = self._validate_tags(tags if tags is not None else [])
        if name in self._by_name:
            raise ConflictError(f"an agent named {name!r} already exists; choose another name or use that agent")
        now = self.clock()
        agent = AgentRecord(new_agent_id(), name, tier, tuple(tag_list), "active", now, None, now)
        created = self._admin_event(agent, "agent_created", f"trust tier {tier}, tags {tag_list}", actor)
        await self.store.insert_agent(agent, created)
        self._cache_agent(agent)
        token, exp = self.tokens.issue(agent.id, agent.name, agent.trust_tier, list(agent.tags), now)
        log.info("agent created: %s (%s, %s)", agent.name, agent.id, tier)
        return agent, token, exp

    @staticmethod
    def _validate_tags(tags: Any) -> list[str]:
        if isinstance(tags, str):
            tags = [t.strip() for t in tags.split(",") if t.strip()]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise InvalidRequestError("field 'tags' must be a list of strings")
        bad = [t for t in tags if not _TAG.match(t)]
        if bad:
            raise InvalidRequestError(
                f"invalid tag(s) {bad}: tags are 1-64 characters of letters, digits, '_', '-', '.', ':', '/'"
            )
        if len(tags) > 64:
            raise InvalidRequestError("at most 64 tags per agent")
        return sorted(set(tags))

    def list_agents(self, trust: str | None = None, status: str | None = None) -> list[AgentRecord]:
        agents = sorted(self._agents.values(), key=lambda a: (a.created_at, a.name))
        if trust:
            tier = normalize_tier(trust)
            agents = [a for a in agents if a.trust_tier == tier]
        if status:
            if status not in ("active", "revoked"):
                raise InvalidRequestError(f"status {status!r} is not valid; use active or revoked")
            agents = [a for a in agents if a.status == status]
        return agents

    async def update_agent(self, ref: str, trust_tier: Any = None, tags: Any = None, actor: str = "admin") -> AgentRecord:
        agent = self.find_agent(ref)
        if agent.revoked:
            raise ConflictError(f"agent {agent.name!r} is revoked; revocation is permanent, create a new agent")
        changes: dict[str, Any] = {}
        if trust_tier is not None:
            changes["trust_tier"] = normalize_tier(trust_tier)
        if tags is not None:
            changes["tags"] = tuple(self._validate_tags(tags))
        if not changes:
            raise InvalidRequestError("nothing to change: give 'trustTier' and/or 'tags'")
        updated = replace(agent, updated_at=self.clock(), **changes)
        await self.store.update_agent(
            updated, self._admin_event(updated, "agent_updated", f"trust tier {agent.trust_tier} -> {updated.trust_tier}, "
                                                                 f"tags {list(agent.tags)} -> {list(updated.tags)}", actor)
        )
        self._cache_agent(updated)
        return updated

    async def revoke_agent(self, ref: str, actor: str = "admin") -> AgentRecord:
        """Permanent. The cache is marked first, so no request slips through while the commit runs."""
        agent = self.find_agent(ref)
        if agent.revoked:
            return agent
        now = self.clock()
        revoked = replace(agent, status="revoked", revoked_at=now, updated_at=now)
        self._cache_agent(revoked)
        try:
            await self.store.update_agent(revoked, self._admin_event(revoked, "agent_revoked", "revoked", actor))
        except BaseException:
            self._cache_agent(agent)
            raise
        log.warning("agent revoked: %s (%s)", agent.name, agent.id)
        self._notify_revoked(agent.id)
        return revoked

    # ---- agents: watch (kill switch for work already running) ------------------------------

    def _notify_revoked(self, agent_id: str) -> None:
        event = self._revocations.pop(agent_id, None)
        if event is not None:
            event.set()

    # A launcher holds one watch per running command; the caps keep one token (or all of them) from
    # using up the gateway's file descriptors, after which every check would fail.
    WATCHES_PER_AGENT = 8
    WATCHES_TOTAL = 512

    def release_watchers(self) -> None:
        """Shutting down: every held watch answers now (200 for an agent still active), so that
        uvicorn's graceful shutdown does not wait for them."""
        for agent_id in list(self._revocations):
            self._notify_revoked(agent_id)

    async def watch_agent(self, token: str | None, wait: float) -> AgentRecord:
        """Held until the token's agent is revoked (InvalidTokenError, at once if it already is) or
        `wait` seconds pass (returns the agent, still active). Woken by revoke_agent, no polling: a
        launcher holds one of these while a command runs, to end that command on revocation."""
        agent = self.authenticate(token)
        held = self._watching.get(agent.id, 0)
        if held >= self.WATCHES_PER_AGENT or sum(self._watching.values()) >= self.WATCHES_TOTAL:
            raise TooManyWatchesError(
                f"agent {agent.name!r} already holds {held} watches (at most {self.WATCHES_PER_AGENT} per agent, "
                f"{self.WATCHES_TOTAL} in all): each holds a connection open; retry when one has answered",
                retry_after=max(1, min(int(wait) or 1, 5)),
            )
        self._watching[agent.id] = held + 1
        event = self._revocations.setdefault(agent.id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout=wait)
        except asyncio.TimeoutError:
            pass
        finally:
            left = self._watching.get(agent.id, 1) - 1
            if left > 0:
                self._watching[agent.id] = left
            else:
                self._watching.pop(agent.id, None)
        return self.authenticate(token)  # revoked, or expired meanwhile: 401

    async def issue_token(self, ref: str, actor: str = "admin") -> tuple[AgentRecord, str, float]:
        agent = self.find_agent(ref)
        if agent.revoked:
            raise ConflictError(f"agent {agent.name!r} is revoked; it cannot get a new token")
        token, exp = self.tokens.issue(agent.id, agent.name, agent.trust_tier, list(agent.tags), self.clock())
        await self.store.append_audit(self._admin_event(agent, "token_issued", "new token issued", actor))
        return agent, token, exp

    # ---- the check path --------------------------------------------------------------------

    RESOLVE_TIMEOUT = DEFAULT_TIMEOUT  # seconds for the DNS lookup of a URL resource's host

    async def resolve_for(self, resource: object) -> Resolution | None:
        """The edge of the `publicAddress` condition: resolve a URL resource's host before deciding,
        only when a policy in force asks for it (the engine never does I/O)."""
        if not self.engine.needs_resolution:
            return None
        return await resolve_url_host(resource, self.RESOLVE_TIMEOUT)

    def _event(self, result_decision: Effect | str, agent: AgentRecord, action: str, resource: str | None,
               d: Decision, reason: str, decision_id: str, trace_id: str, now: float,
               approval_id: str | None, context: str | None) -> AuditEvent:  # fmt: skip
        return AuditEvent(
            now, "check", agent.id, agent.name, action, resource, str(result_decision), self.enforce,
            d.policy, d.rule, reason, trace_id, decision_id, approval_id, context,
        )  # fmt: skip

    async def check(
        self,
        agent: AgentRecord,
        action: str,
        resource: str | None = None,
        context: Mapping[str, Any] | None = None,
        approval_id: str | None = None,
        trace_id: str | None = None,
    ) -> CheckResult:
        """Decide, audit (committed before returning), answer."""
        agent = self._still_active(agent)
        now = self.clock()
        trace = trace_id or new_trace_id()
        resolution = await self.resolve_for(resource)
        d = self.engine.decide(Request(self._engine_agents[agent.id], action, resource, context, resolution), now)
        effect = d.effect
        reason = d.reason
        decision_id = new_decision_id()
        ctx = canonical_context(context) if context else None
        approval: Approval | None = None

        if effect is Effect.APPROVAL_REQUIRED:
            if approval_id is not None:
                return await self._check_with_approval(agent, action, resource, context, approval_id, d, decision_id,
                                                       trace, now)  # fmt: skip
            ctx_key = ctx or canonical_context(None)
            async with self._approval_lock:  # the same request asked twice at once gets one approval
                approval = await self.store.find_pending_approval(agent.id, action, resource, ctx_key)
                if approval is not None and approval.expires_at <= now:
                    await self._expire(approval)
                    approval = None
                if approval is not None:
                    reason = f"{d.reason}; approval {approval.id} is pending"
                    event = self._event(effect, agent, action, resource, d, reason, decision_id, trace, now,
                                        approval.id, ctx)  # fmt: skip
                    audit_id = await self.store.append_audit(event)
                else:
                    approval = Approval(
                        id="apr_" + secrets.token_hex(12), agent_id=agent.id, agent_name=agent.name, action=action,
                        resource=resource, context=ctx_key, status="pending", created_at=now,
                        expires_at=now + self.settings.approval_ttl_seconds, decision_id=decision_id, trace_id=trace,
                    )  # fmt: skip
                    reason = f"{d.reason}; approval {approval.id} was requested"
                    event = self._event(effect, agent, action, resource, d, reason, decision_id, trace, now,
                                        approval.id, ctx)  # fmt: skip
                    audit_id = await self.store.create_approval(approval, event)
                    log.info("approval %s requested: %s %s %s", approval.id, agent.name, action, resource or "")
        else:
            event = AuditEvent(now, "check", agent.id, agent.name, action, resource, effect.value, self.enforce,
                               d.policy, d.rule, reason, trace, decision_id, None, ctx)  # fmt: skip
            if self._deferred:
                self.store.append_audit_nowait(event)
                audit_id = 0
            else:
                audit_id = await self.store.append_audit(event)
        return CheckResult(effect, reason, d.policy, d.rule, d.retry_after, d.limit, decision_id, trace, agent, action,
                           resource, self.enforce, audit_id, approval)  # fmt: skip

    async def _check_with_approval(
        self, agent: AgentRecord, action: str, resource: str | None, context: Mapping[str, Any] | None,
        approval_id: str, d: Decision, decision_id: str, trace: str, now: float,
    ) -> CheckResult:  # fmt: skip
        """The policies want an approval and the agent presents one: allow once if it is approved
        and bound to exactly this request; otherwise deny (or keep waiting while it is pending)."""
        ctx = canonical_context(context) if context else None
        ctx_key = ctx or canonical_context(None)
        approval = await self.store.get_approval(approval_id)
        effect = Effect.DENY
        reason: str
        result_approval: Approval | None = approval

        async def audit(eff: Effect, why: str, apr_id: str | None) -> int:
            return await self.store.append_audit(
                self._event(eff, agent, action, resource, d, why, decision_id, trace, now, apr_id, ctx)
            )

        if approval is None or approval.agent_id != agent.id:
            reason = f"denied: approval {approval_id!r} does not exist for this agent; retry without it to ask again"
            result_approval = None
        elif (approval.action, approval.resource, approval.context) != (action, resource, ctx_key):
            reason = (
                f"denied: approval {approval.id} was asked for {approval.action} {approval.resource or ''} "
                f"with context {approval.context}, not for this request; retry without it to ask again"
            )
        elif approval.status == "pending" and approval.expires_at > now:
            effect = Effect.APPROVAL_REQUIRED
            reason = f"{d.reason}; approval {approval.id} is pending"
        elif approval.status in ("pending", "approved") and approval.expires_at <= now:
            result_approval = await self._expire(approval)
            reason = (
                f"denied: approval {approval.id} expired at {iso(approval.expires_at)}; "
                "retry without it to ask again"
            )
        elif approval.status == "approved":
            used = replace(approval, status="used", used_at=now)
            why = (
                f"allowed by approval {approval.id} (approved by {approval.decided_by}"
                + (f": {approval.decision_reason}" if approval.decision_reason else "")
                + ")"
            )
            check_event = self._event(Effect.ALLOW, agent, action, resource, d, why, decision_id, trace, now,
                                      approval.id, ctx)  # fmt: skip
            try:
                audit_id = await self.store.transition_approval(
                    used, ("approved",), self._approval_event(used, "approval_used", f"used by decision {decision_id}"),
                    check=check_event,
                )
            except ConflictError:
                reason = f"denied: approval {approval.id} was already used; retry without it to ask again"
            else:
                self._notify(approval.id)
                return CheckResult(Effect.ALLOW, why, d.policy, d.rule, None, None, decision_id, trace, agent, action,
                                   resource, self.enforce, audit_id, used)  # fmt: skip
        elif approval.status == "denied":
            reason = f"denied: approval {approval.id} was denied by {approval.decided_by}" + (
                f": {approval.decision_reason}" if approval.decision_reason else ""
            )
        elif approval.status == "used":
            reason = f"denied: approval {approval.id} was already used; retry without it to ask again"
        else:
            reason = f"denied: approval {approval.id} is {approval.status}; retry without it to ask again"
        audit_id = await audit(effect, reason, approval_id)
        return CheckResult(effect, reason, d.policy, d.rule, None, None, decision_id, trace, agent, action, resource,
                           self.enforce, audit_id, result_approval)  # fmt: skip

    async def record(
        self,
        agent: AgentRecord,
        action: str,
        resource: str | None,
        status: str,
        result: str | None,
        duration_ms: float | None,
        decision_id: str | None,
        trace_id: str | None,
    ) -> int:
        """Store an outcome, linked to its decision when ``decision_id`` is given."""
        agent = self._still_active(agent)
        now = self.clock()
        if result is not None and len(result) > RESULT_LIMIT:
            result = result[:RESULT_LIMIT]
        rec = OutcomeRecord(now, agent.id, action, resource, status, result, duration_ms, decision_id)
        event = None
        if decision_id is None:
            event = AuditEvent(now, "record", agent.id, agent.name, action, resource, "recorded", self.enforce,
                               None, None, f"outcome reported: {status}", trace_id, None)  # fmt: skip
        return await self.store.append_record(rec, event)

    # ---- approvals -------------------------------------------------------------------------

    def _approval_event(self, a: Approval, what: str, reason: str, actor: str | None = None) -> AuditEvent:
        return AuditEvent(
            timestamp=self.clock(), kind="approval", agent_id=a.agent_id, agent_name=a.agent_name, action=a.action,
            resource=a.resource, decision=what, enforced=self.enforce, policy=None, rule=None, reason=reason,
            trace_id=a.trace_id, decision_id=a.decision_id, approval_id=a.id, actor=actor,
        )  # fmt: skip

    def _notify(self, approval_id: str) -> None:
        event = self._waiters.pop(approval_id, None)
        if event is not None:
            event.set()

    async def _expire(self, approval: Approval) -> Approval:
        expired = replace(approval, status="expired", decided_at=self.clock())
        try:
            await self.store.transition_approval(
                expired, ("pending", "approved"),
                self._approval_event(expired, "approval_expired", f"expired at {iso(approval.expires_at)}", "gateway"),
            )  # fmt: skip
        except ConflictError:
            current = await self.store.get_approval(approval.id)
            return current or expired
        self._notify(approval.id)
        return expired

    async def expire_due_approvals(self) -> int:
        """Turn every pending approval past its time into ``expired`` (audited). Returns how many."""
        due = await self.store.expired_pending_approvals(self.clock())
        for a in due:
            await self._expire(a)
        return len(due)

    async def list_approvals(self, status: str | None = None) -> list[Approval]:
        if status is not None and status not in APPROVAL_STATUSES:
            raise InvalidRequestError(f"status {status!r} is not valid; use one of: {', '.join(APPROVAL_STATUSES)}")
        await self.expire_due_approvals()
        return await self.store.list_approvals(status)

    async def get_approval(self, approval_id: str, agent: AgentRecord | None = None) -> Approval:
        approval = await self.store.get_approval(approval_id)
        if approval is None or (agent is not None and approval.agent_id != agent.id):
            raise NotFoundError(f"approval {approval_id!r} does not exist" + (" for this agent" if agent else ""))
        if approval.status in ("pending", "approved") and approval.expires_at <= self.clock():
            approval = await self._expire(approval)
        return approval

    async def wait_approval(self, approval_id: str, agent: AgentRecord, wait: float) -> Approval:
        """The approval, held until it leaves ``pending`` or ``wait`` seconds pass (or it expires)."""
        approval = await self.get_approval(approval_id, agent)
        deadline = self.clock() + wait
        while approval.status == "pending":
            remaining = min(deadline, approval.expires_at) - self.clock()
            if remaining <= 0:
                break
            event = self._waiters.setdefault(approval_id, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), timeout=min(remaining, 5.0))
            except asyncio.TimeoutError:
                pass
            approval = await self.get_approval(approval_id, agent)
        return approval

    async def decide_approval(
        self, approval_id: str, approve: bool, by: Any, reason: Any, actor: str | None = None
    ) -> Approval:
        """A person approves or denies a pending approval. 409 when it is decided or expired already.
        ``by`` (who decides) defaults to the actor's name; the audit row names both."""
        if by is None:
            by = actor.partition(":")[2] if actor and ":" in actor else "admin"
        if not isinstance(by, str) or not ACTOR_NAME.match(by.strip()):
            raise InvalidRequestError(
                "field 'by' (who decides) must be 1-128 printable ASCII characters (a person's name or login), "
                "like the header 'X-MeshGuard-Actor'"
            )
        if reason is not None and (not isinstance(reason, str) or len(reason) > 2000):
            raise InvalidRequestError("field 'reason' must be a string of up to 2000 characters")
        approval = await self.get_approval(approval_id)
        if approval.status != "pending":
            raise ConflictError(f"approval {approval.id} is already {approval.status}; it cannot be decided again")
        now = self.clock()
        status = "approved" if approve else "denied"
        # An approved request gets a fresh window to be used in.
        expires = now + self.settings.approval_ttl_seconds if approve else approval.expires_at
        decided = replace(approval, status=status, decided_by=by.strip(), decision_reason=reason, decided_at=now,
                          expires_at=expires)  # fmt: skip
        why = f"{status} by {decided.decided_by}" + (f": {reason}" if reason else "")
        await self.store.transition_approval(
            decided, ("pending",),
            self._approval_event(decided, f"approval_{status}", why, actor or _admin_actor(decided.decided_by)),
        )  # fmt: skip
        self._notify(approval.id)
        log.info("approval %s %s by %r", approval.id, status, decided.decided_by)
        return decided

    # ---- policies --------------------------------------------------------------------------

    async def reload_policies(self, actor: str = "gateway", trigger: str = "signal") -> PolicySet:
        """Reload POLICIES_DIR. On error the set in force stays (last good) and PolicyError is raised.
        Either way an audit row says who reloaded and which policy texts are in force (SHA-256)."""
        async with self._policy_lock:
            before = self.policies
            try:
                policies = await self._reload_locked()
            except PolicyError as exc:
                await self._audit_reload_failed(exc, actor, trigger)
                raise
        await self._audit_reload(before, policies, actor, trigger)
        return policies

    # ---- policies: the audit of every change (who, and which text: SHA-256 before and after) ----

    async def _audit_policy(self, what: str, name: str | None, reason: str, actor: str, details: dict[str, Any]) -> None:
        await self.store.append_audit(AuditEvent(
            timestamp=self.clock(), kind="admin", agent_id=None, agent_name=None, action="admin:policy",
            resource=name, decision=what, enforced=True, policy=name, rule=None, reason=reason, trace_id=None,
            decision_id=None, context=canonical_context(details), actor=actor,
        ))  # fmt: skip

    async def _audit_reload(self, before: PolicySet, after: PolicySet, actor: str, trigger: str) -> None:
        old = {p.name: sha256_text(p.text) for p in before}
        new = {p.name: sha256_text(p.text) for p in after}
        added = sorted(set(new) - set(old))
        removed = sorted(set(old) - set(new))
        changed = sorted(n for n in set(new) & set(old) if new[n] != old[n])
        parts = [f"{len(new)} policies in force"]
        parts += [f"{label}: {', '.join(names)}" for label, names in
                  (("added", added), ("changed", changed), ("removed", removed)) if names]  # fmt: skip
        what = "policies_loaded" if trigger == "start" else "policies_reloaded"
        await self._audit_policy(what, None, f"{'; '.join(parts)} ({trigger}, by {actor})", actor,
                                 {"trigger": trigger, "folder": str(self.policies_path), "before": old,
                                  "after": new, "mode": self.mode})  # fmt: skip

    async def _audit_reload_failed(self, exc: PolicyError, actor: str, trigger: str) -> None:
        in_force = {p.name: sha256_text(p.text) for p in self.policies}
        await self._audit_policy(
            "policy_reload_failed", None,
            f"reload failed ({trigger}, by {actor}); the {len(in_force)} policies in force stay: {exc.problems[0]}"
            if exc.problems else f"reload failed ({trigger}, by {actor})",
            actor, {"trigger": trigger, "folder": str(self.policies_path), "in_force": in_force,
                    "errors": [str(p) for p in exc.problems[:20]]},
        )  # fmt: skip

    async def _reload_locked(self) -> PolicySet:
        try:
            policies = await asyncio.to_thread(load_policies, self.policies_path)
        except PolicyError as exc:
            self.last_reload_error = exc
            log.error("policy reload failed; keeping the %d policies in force:\n%s", len(self.policies), exc)
            raise
        self.engine = self.engine.with_policies(policies)
        self.last_reload_error = None
        log.info("policies reloaded: %d (%s)", len(policies), ", ".join(policies.names))
        return policies

    def _policy_dir(self) -> Path:
        if not self.policies_path.is_dir():
            raise ConflictError(
                f"POLICIES_DIR {self.policies_path} is a file, not a folder; policies cannot be applied or deleted "
                "through the API. Point POLICIES_DIR at a folder."
            )
        return self.policies_path

    def _in_dir(self, policy: Policy, folder: Path) -> Path | None:
        try:
            path = Path(policy.source).resolve()
        except (OSError, ValueError):
            return None
        return path if path.parent == folder.resolve() else None

    async def apply_policy(self, text: str, actor: str = "admin") -> tuple[Policy, bool]:
        """Validate YAML text, write it into POLICIES_DIR, reload. Returns (policy, created).

        On any problem the files and the set in force are left as they were. Audited either way:
        the policy's name and the SHA-256 of the text in force before and after."""
        try:
            policy, created, before = await self._apply_policy(text)
        except MeshGuardError as exc:
            name = _policy_name(text)
            await self._audit_policy(
                "policy_apply_failed", name, f"apply refused (by {actor}): {_first_problem(exc)}", actor,
                {"policy": name, "sha256_sent": sha256_text(text), "in_force": sha256_text(self._text_of(name)),
                 "errors": _problems(exc)},
            )  # fmt: skip
            raise
        after = sha256_text(policy.text)
        await self._audit_policy(
            "policy_applied", policy.name,
            f"policy {policy.name} {'created' if created else 'replaced'} by {actor}: sha256 "
            f"{(before or 'none')[:12]} -> {(after or '')[:12]}", actor,
            {"policy": policy.name, "file": policy.source, "created": created, "sha256_before": before,
             "sha256_after": after},
        )  # fmt: skip
        return policy, created

    def _text_of(self, name: str | None) -> str | None:
        found = self.policies.get(name) if name else None
        return found.text if found is not None else None

    async def _apply_policy(self, text: str) -> tuple[Policy, bool, str | None]:
        if not text.strip():
            raise InvalidRequestError("the policy is empty; send the policy YAML as the body")
        parsed = parse_policy(text, source="request body")
        async with self._policy_lock:
            folder = self._policy_dir()
            existing = self.policies.get(parsed.name)
            digest_before = sha256_text(existing.text) if existing is not None else None
            target = self._in_dir(existing, folder) if existing is not None else None
            created = existing is None
            if target is None:
                stem = _FILE_SAFE.sub("-", parsed.name).strip("-.") or "policy"
                target = folder / f"{stem}.yaml"
                n = 2
                while target.exists():
                    target = folder / f"{stem}-{n}.yaml"
                    n += 1
            previous = target.read_text(encoding="utf-8") if target.exists() else None
            reload_error = self.last_reload_error
            await asyncio.to_thread(_atomic_write, target, text)
            try:
                policies = await self._reload_locked()
            except PolicyError as exc:
                self.last_reload_error = reload_error  # the files are put back as they were
                if previous is None:
                    target.unlink(missing_ok=True)
                else:
                    await asyncio.to_thread(_atomic_write, target, previous)
                problems = [replace(p, source="request body") if p.source == str(target) else p for p in exc.problems]
                raise PolicyError(problems) from None
        policy = policies.get(parsed.name)
        assert policy is not None
        log.info("policy %s applied to %s", parsed.name, target)
        return policy, created, digest_before

    async def delete_policy(self, name: str, actor: str = "admin") -> Policy:
        """Remove a policy's file and reload; audited either way (the SHA-256 of the text removed)."""
        before = sha256_text(self._text_of(name))
        try:
            policy = await self._delete_policy(name)
        except MeshGuardError as exc:
            await self._audit_policy(
                "policy_delete_failed", name, f"delete refused (by {actor}): {_first_problem(exc)}", actor,
                {"policy": name, "in_force": before, "errors": _problems(exc)},
            )  # fmt: skip
            raise
        await self._audit_policy(
            "policy_deleted", name, f"policy {name} deleted by {actor}: sha256 {(before or '')[:12]} -> none", actor,
            {"policy": name, "file": policy.source, "sha256_before": before, "sha256_after": None},
        )  # fmt: skip
        return policy

    async def _delete_policy(self, name: str) -> Policy:
        async with self._policy_lock:
            policy = self.policies.get(name)
            if policy is None:
                raise NotFoundError(f"policy {name!r} does not exist; list them with `meshguard policy list`")
            folder = self._policy_dir()
            path = self._in_dir(policy, folder)
            if path is None:
                raise ConflictError(
                    f"policy {name!r} comes from {policy.source}, outside POLICIES_DIR; delete it there"
                )
            text = path.read_text(encoding="utf-8")
            reload_error = self.last_reload_error
            path.unlink()
            try:
                await self._reload_locked()
            except PolicyError:
                await asyncio.to_thread(_atomic_write, path, text)
                self.last_reload_error = reload_error  # the files are put back as they were
                raise
        log.info("policy %s deleted (%s)", name, path)
        return policy

    def get_policy(self, name: str) -> Policy:
        policy = self.policies.get(name)
        if policy is None:
            raise NotFoundError(f"policy {name!r} does not exist; list them with `meshguard policy list`")
        return policy

    def test_policy(
        self, agent_spec: Any, action: Any, resource: Any, context: Any, policy: Any = None,
        resolution: Resolution | None = None,
    ) -> Decision:
        """What the policies would decide now, without counting or auditing."""
        if isinstance(agent_spec, str):
            rec = self.find_agent(agent_spec)
            agent = self._engine_agents[rec.id]
        elif isinstance(agent_spec, dict):
            name = agent_spec.get("name") or agent_spec.get("id") or "test-agent"
            if not isinstance(name, str):
                raise InvalidRequestError("field 'agent.name' must be a string")
            tier = normalize_tier(agent_spec.get("trustTier", "verified"))
            tags = self._validate_tags(agent_spec.get("tags", []))
            agent = Agent(str(agent_spec.get("id") or name), name, tier, frozenset(tags))
        else:
            raise InvalidRequestError("field 'agent' is required: an agent id or name, or {name, trustTier, tags}")
        if not isinstance(action, str) or not action:
            raise InvalidRequestError("field 'action' is required: a string 'verb:object'")
        if resource is not None and not isinstance(resource, str):
            raise InvalidRequestError("field 'resource' must be a string")
        if context is not None and not isinstance(context, dict):
            raise InvalidRequestError("field 'context' must be an object")
        engine = self.engine
        if policy is not None:
            if not isinstance(policy, str):
                raise InvalidRequestError("field 'policy' must be a policy name")
            only = self.policies.get(policy)
            if only is None:
                raise NotFoundError(f"no policy named {policy!r}; list them with `meshguard policy list`")
            engine = self.engine.with_policies(PolicySet((only,)))  # same counters; explain counts nothing
        return engine.explain(Request(agent, action, resource, context, resolution), self.clock())

    def allowed_for(self, ref: str) -> list[dict[str, Any]]:
        """Per applicable policy: which patterns it allows, denies, and sends for approval."""
        rec = self.find_agent(ref)
        out = []
        for p in self.engine.applicable(self._engine_agents[rec.id]):
            out.append({
                "name": p.name,
                "allowed": [pat.text for r in p.rules if r.effect != "deny" for pat in r.actions],
                "denied": [pat.text for r in p.rules if r.effect == "deny" for pat in r.actions],
                "approval": [pat.text for pat in p.require_approval],
                "defaultEffect": p.default_effect,
                "rateLimits": p.rate_limit.to_dict() if p.rate_limit is not None else None,
            })  # fmt: skip
        return out

    # ---- audit -----------------------------------------------------------------------------

    async def query_audit(self, query: AuditQuery) -> list[AuditEntry]:
        return await self.store.query_audit(query)

    async def audit_stats(self, period_hours: float, agent: str | None, hourly: bool) -> AuditStats:
        since = self.clock() - period_hours * 3600.0
        return await self.store.audit_stats(since, self.agent_id_for(agent) if agent else None, hourly)

    def agent_id_for(self, ref: str) -> str:
        """The id of the agent named or numbered ``ref``; ``ref`` itself when there is none (then
        an audit filter matches nothing, as it should: agents are never deleted)."""
        try:
            return self.find_agent(ref).id
        except NotFoundError:
            return ref

    async def verify_audit(self) -> dict[str, Any]:
        """The audit chain's verdict (store.verify_chain): the first broken row, or ok."""
        return await self.store.verify_chain()

    async def purge(self) -> int:
        days = self.settings.audit_retention_days
        if days <= 0:
            return 0
        before = self.clock() - days * 86400.0
        deleted = await self.store.purge(before)
        if deleted:  # the chain's anchor moved: say so in the trail itself
            await self.store.append_audit(AuditEvent(
                timestamp=self.clock(), kind="admin", agent_id=None, agent_name=None, action="admin:audit",
                resource=None, decision="audit_purged", enforced=True, policy=None, rule=None,
                reason=f"retention ({days:g} days): {deleted} audit rows older than {iso(before)} deleted; the "
                       "chain now starts at the purge anchor", trace_id=None, decision_id=None, actor="gateway",
            ))  # fmt: skip
        return deleted

    # ---- health ----------------------------------------------------------------------------

    async def health_problem(self) -> str | None:
        """Why the gateway cannot serve decisions now, or None."""
        try:
            await self.store.ping()
        except Exception as exc:  # any failure to read the database means unhealthy
            return f"database {self.settings.database} is not usable: {exc}"
        if len(self.policies) == 0:
            return (
                f"no policies are loaded from {self.policies_path}: every request is denied; "
                "apply one with `meshguard policy apply FILE`"
            )
        return None


def _admin_actor(name: str | None) -> str:
    """The principal of an admin request: ``admin`` (the admin token), with the person's name
    when one was given (``admin:alice``)."""
    return f"admin:{name}" if name and name != "admin" else "admin"


def _policy_name(text: str) -> str | None:
    """The name a (perhaps invalid) policy text gives itself, for the audit row of a refused apply."""
    match = re.search(r"^name:[ \t]*['\"]?([^'\"\n#]+?)['\"]?[ \t]*(?:#.*)?$", text, re.MULTILINE)
    return match.group(1)[:128] if match else None


def _problems(exc: MeshGuardError) -> list[str]:
    if isinstance(exc, PolicyError):
        return [str(p) for p in exc.problems[:20]]
    return [str(exc)]


def _first_problem(exc: MeshGuardError) -> str:
    problems = _problems(exc)
    more = f" (and {len(exc.problems) - 1} more)" if isinstance(exc, PolicyError) and len(exc.problems) > 1 else ""
    return (problems[0] if problems else type(exc).__name__) + more


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


__all__ = ["CheckResult", "Gateway", "InvalidTokenError", "Problem", "canonical_context", "iso"]
