"""The decision engine: may this agent do this action on this resource now?

Pure: ``(PolicySet, Request, now) -> Decision``. The only state is the rate limiter's
counters, which the caller injects (and may share between engines across reloads).

Decision policy (the contract; docs/policies.md explains it to users):

1. A request whose action is not ``verb:object``, or whose resource holds a ``..`` path
   segment or control characters, is denied before any policy is consulted.
2. The applicable policies are those whose ``appliesTo`` selectors all match the agent.
   None applicable -> DENY.
3. Inside one policy (rule order never matters):
   a. any matching deny rule -> DENY;
   b. else, when nothing matches (no allow rule, no approval pattern) and the
      ``defaultEffect`` is deny (also when absent) -> DENY;
   c. else, when the policy's ``rateLimits`` counter is full -> RATE_LIMITED;
   d. else, a match in ``humanInTheLoop.requireApproval`` -> APPROVAL_REQUIRED;
   e. else, matching allow rules -> ALLOW if at least one is under its own ``rateLimit``
      condition (or has none), else RATE_LIMITED;
   f. else (nothing matches, ``defaultEffect: allow``) -> ALLOW.
   A rule matches when one of its patterns matches the action (or ``action/resource``)
   and all its conditions hold. A condition that cannot be checked (conditions.py: no
   amount, an unreadable command line or URL, an unresolved host) fails closed: the
   rule applies if it is a deny rule and does not if it is an allow rule.
4. Across policies, the most severe outcome wins: DENY > RATE_LIMITED >
   APPROVAL_REQUIRED > ALLOW. So a request is allowed only if every applicable policy
   allows it. The deciding policy is the first (in set order) with that outcome.
5. Counting: unless the final decision is RATE_LIMITED, the request is counted in every
   applicable policy's ``rateLimits`` counter that has room (a denied request is still a
   request), and in the ``rateLimit`` counter of every allow rule that admitted it.
   ``explain`` computes the same decision and counts nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from meshguard_gateway.conditions import Facts, PublicAddress
from meshguard_gateway.policy import DENY, Pattern, Policy, PolicySet, Rule
from meshguard_gateway.ratelimit import LimitCheck, LimitStatus, RateLimiter, SlidingWindowLimiter, describe_window
from meshguard_gateway.url import Resolution

__all__ = ["Agent", "Decision", "Effect", "Engine", "LimitUsage", "PolicyOutcome", "Request", "RuleMatch", "check_request"]


class Effect(str, Enum):
    ALLOW = "allow"
    DENY = "deny"
    RATE_LIMITED = "rate_limited"
    APPROVAL_REQUIRED = "approval_required"

    def __str__(self) -> str:
        return self.value


_RANK = {Effect.ALLOW: 0, Effect.APPROVAL_REQUIRED: 1, Effect.RATE_LIMITED: 2, Effect.DENY: 3}


@dataclass(frozen=True, slots=True)
class Agent:
    """Who asks. ``tags`` may be given as any iterable; it is kept as a frozenset."""

    id: str
    name: str | None = None
    trust_tier: str | None = None
    tags: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not isinstance(self.tags, frozenset):
            object.__setattr__(self, "tags", frozenset(self.tags))


@dataclass(frozen=True, slots=True)
class Request:
    """What is asked. ``context`` carries e.g. ``{"sandbox": True}``. ``resolution`` is what the
    gateway's own resolver said about the host of a URL resource (never taken from the client)."""

    agent: Agent
    action: str
    resource: str | None = None
    context: Mapping[str, Any] | None = None
    resolution: Resolution | None = None


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """A rule or approval pattern whose pattern matched (``explain`` only). ``applied``
    is False when a condition did not hold; ``note`` then says which."""

    rule: str
    effect: str  # "allow" | "deny" | "approval"
    pattern: str
    applied: bool = True
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "effect": self.effect, "pattern": self.pattern,
                               "applied": self.applied}
        if self.note is not None:
            out["note"] = self.note
        return out


@dataclass(frozen=True, slots=True)
class PolicyOutcome:
    """What one applicable policy said."""

    policy: str
    effect: Effect
    reason: str
    rule: str | None = None
    retry_after: float | None = None
    limit: str | None = None
    matched: tuple[RuleMatch, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"policy": self.policy, "decision": self.effect.value, "reason": self.reason,
                               "rule": self.rule}
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
            out["limit"] = self.limit
        out["matched"] = [m.to_dict() for m in self.matched]
        return out


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer. ``policy``/``rule`` name what decided (None when no policy applied
    or the request itself was refused); ``retry_after``/``limit`` only for RATE_LIMITED;
    ``details`` only from ``Engine.explain``."""

    effect: Effect
    reason: str
    policy: str | None = None
    rule: str | None = None
    retry_after: float | None = None
    limit: str | None = None
    details: tuple[PolicyOutcome, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.effect is Effect.ALLOW

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"decision", "allowed", "reason", "policy", "rule"[, "retry_after",
        "limit"][, "details"]}``."""
        out: dict[str, Any] = {
            "decision": self.effect.value,
            "allowed": self.effect is Effect.ALLOW,
            "reason": self.reason,
            "policy": self.policy,
            "rule": self.rule,
        }
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
            out["limit"] = self.limit
        if self.details:
            out["details"] = [d.to_dict() for d in self.details]
        return out


def _split(per: tuple[str, ...], request: Request) -> tuple[str, ...]:
    """The counter-key suffix of a limit with ``per`` keys: one counter per value of those context
    keys (a request without the key counts under ""). Keys stay tuples of strings (ratelimit.py)."""
    if not per:
        return ()
    context = request.context or {}
    return tuple(f"{name}={'' if context.get(name) is None else context.get(name)}" for name in per)


# --------------------------------------------------------------------------- request checks

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Characters that change how text is displayed rather than what it says: bidirectional overrides and
# isolates, and Unicode line/paragraph separators. A resource holding them can read as something else
# in the audit trail and the CLI, so it is refused like a control character.
_DISGUISE = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
_SEGMENTS = re.compile(r"[/\\]")


def _path_problem(path: str, obj: str, what: str) -> str | None:
    """Why `path` (a resource, or the /path part of an action) is not canonical for `obj`, or None.

    Canonical means what the launcher sends: for ``workspace``, a path relative to the workspace with
    no ``.``/``..``/empty segments; anywhere, no ``..`` segment. A client that skipped canonicalisation
    is refused, never trusted.
    """
    segments = _SEGMENTS.split(path)
    if ".." in path and ".." in segments:
        return (
            f"the {what} '{path}' contains a '..' path segment; resources must be canonical "
            "(resolve the path first)"
        )
    if obj == "workspace" and path != ".":
        if path.startswith(("/", "~")) or "\\" in path or (len(path) > 1 and path[1] == ":"):
            return (
                f"the {what} '{path}' is not a path relative to the workspace; a file outside the workspace "
                "is 'system' with its absolute real path (e.g. 'write:system' + '/etc/hosts')"
            )
        if "" in segments or "." in segments:
            return f"the {what} '{path}' has an empty or '.' path segment; send the canonical relative path"
    return None


def check_request(action: object, resource: object) -> str | None:
    """Why this action/resource must be refused before any policy is consulted, or None."""
    if not isinstance(action, str) or not action:
        return "the action is missing; give it as 'verb:object' (e.g. 'read:workspace')"
    if _CONTROL.search(action) or _DISGUISE.search(action):
        return f"the action {action!r} contains control characters"
    verb, colon, rest = action.partition(":")
    obj, slash, action_path = rest.partition("/")
    if not colon or not verb or not obj or "/" in verb:
        return f"the action '{action}' is not 'verb:object' (e.g. 'read:workspace')"
    if slash:
        problem = _path_problem(action_path, obj, "path in the action")
        if problem:
            return problem
    if resource is None:
        return None
    if not isinstance(resource, str):
        return "the resource must be text"
    if _CONTROL.search(resource) or _DISGUISE.search(resource):
        return f"the resource {resource!r} contains control characters; send the canonical resource"
    return _path_problem(resource, obj, "resource")


# --------------------------------------------------------------------------- index


class _Entry:
    """One pattern of one rule (or approval list) of one policy, as indexed."""

    __slots__ = ("pos", "kind", "rule", "order", "pattern")

    def __init__(self, pos: int, kind: int, rule: Rule | None, order: int, pattern: Pattern) -> None:
        self.pos = pos  # policy position in the set
        self.kind = kind  # _DENY_RULE, _APPROVAL, _ALLOW_RULE
        self.rule = rule
        self.order = order  # pattern position inside its list (lowest reported)
        self.pattern = pattern


_DENY_RULE, _APPROVAL, _ALLOW_RULE = 0, 1, 2


class _Index:
    """Finds the patterns that can match a subject without looking at the others.

    Patterns without wildcards are looked up by their full text. Patterns with a
    wildcard are bucketed by their literal prefix (the text before the first wildcard);
    for a subject we look up each of its prefixes whose length some bucket has, so the
    work grows with the number of distinct prefix lengths, not with the number of
    rules. Patterns that start with a wildcard (``*:email``) are bucketed the same way by
    their literal suffix (the text after the last wildcard). Only patterns that start
    and end with a wildcard (``*:*``, ``*secret*``) are tried for every subject.
    """

    def __init__(self, entries: Iterable[_Entry]) -> None:
        self.exact: dict[str, list[_Entry]] = {}
        self.prefixed: dict[str, list[_Entry]] = {}
        self.suffixed: dict[str, list[_Entry]] = {}
        self.anywhere: list[_Entry] = []
        for e in entries:
            text = e.pattern.text
            if e.pattern.regex is None:
                self.exact.setdefault(text, []).append(e)
            elif e.pattern.prefix:
                self.prefixed.setdefault(e.pattern.prefix, []).append(e)
            else:
                last = max(text.rfind("*"), text.rfind("?"))
                suffix = text[last + 1:]
                if suffix:
                    self.suffixed.setdefault(suffix, []).append(e)
                else:
                    self.anywhere.append(e)
        self.prefix_lengths = tuple(sorted({len(p) for p in self.prefixed}))
        self.suffix_lengths = tuple(sorted({len(p) for p in self.suffixed}))

    def candidates(self, subject: str) -> Iterable[_Entry]:
        hit = self.exact.get(subject)
        if hit:
            yield from hit
        n = len(subject)
        prefixed = self.prefixed
        for length in self.prefix_lengths:
            if length > n:
                break
            bucket = prefixed.get(subject[:length])
            if bucket:
                for e in bucket:
                    if e.pattern.matches(subject):
                        yield e
        suffixed = self.suffixed
        for length in self.suffix_lengths:
            if length > n:
                break
            bucket = suffixed.get(subject[n - length:])
            if bucket:
                for e in bucket:
                    if e.pattern.matches(subject):
                        yield e
        for e in self.anywhere:
            if e.pattern.matches(subject):
                yield e


# --------------------------------------------------------------------------- engine


class _Matches:
    """What matched in one policy: the lowest pattern order per rule."""

    __slots__ = ("deny", "allow", "approval", "failed", "trace", "notes")

    def __init__(self) -> None:
        self.deny: dict[int, tuple[Rule, int]] = {}
        self.allow: dict[int, tuple[Rule, int]] = {}
        self.approval: int | None = None
        self.failed: tuple[int, str] | None = None  # (rule index, note): first allow rule whose condition failed
        self.trace: dict[int, RuleMatch] | None = None  # rule index -> failed condition
        self.notes: dict[int, str] | None = None  # deny rule index -> why its conditions held (or could not be checked)


@dataclass(frozen=True, slots=True)
class LimitUsage:
    """One rate-limit window of one agent as it stands: ``used`` of ``maximum`` in ``seconds``.
    ``rule`` is None for a policy-level limit."""

    policy: str
    rule: str | None
    seconds: float
    maximum: int
    used: int

    @property
    def describe(self) -> str:
        return describe_window(self.seconds, self.maximum)


class Engine:
    """Decides requests against a policy set. Cheap to query, immutable policies;
    ``with_policies`` makes the engine for a reloaded set, keeping the counters."""

    def __init__(self, policies: PolicySet | Iterable[Policy], limiter: RateLimiter | None = None) -> None:
        self.policies = policies if isinstance(policies, PolicySet) else PolicySet(tuple(policies))
        self.limiter: RateLimiter = limiter if limiter is not None else SlidingWindowLimiter()
        self._policies = self.policies.policies
        entries: list[_Entry] = []
        for pos, policy in enumerate(self._policies):
            for rule in policy.rules:
                kind = _DENY_RULE if rule.effect == DENY else _ALLOW_RULE
                for order, pattern in enumerate(rule.actions):
                    entries.append(_Entry(pos, kind, rule, order, pattern))
            for order, pattern in enumerate(policy.require_approval):
                entries.append(_Entry(pos, _APPROVAL, None, order, pattern))
        self._index = _Index(entries)
        self._applicable_cache: dict[tuple[Any, ...], tuple[int, ...]] = {}
        self._wanted: dict[tuple[int, ...], frozenset[int]] = {}
        self.needs_resolution = any(
            isinstance(c, PublicAddress) for p in self._policies for r in p.rules for c in r.checks
        )  # the gateway resolves URL hosts only for a set with a publicAddress condition

    def with_policies(self, policies: PolicySet) -> Engine:
        """A new engine for ``policies`` sharing this engine's rate-limit counters."""
        return Engine(policies, limiter=self.limiter)

    # -- public

    def decide(self, request: Request, now: float) -> Decision:
        """Decide and count the request against the rate limits (see module docstring)."""
        return self._evaluate(request, now, consume=True, trace=False)

    def explain(self, request: Request, now: float) -> Decision:
        """The decision ``decide`` would give now, with ``details`` filled; counts nothing."""
        return self._evaluate(request, now, consume=False, trace=True)

    def applicable(self, agent: Agent) -> tuple[Policy, ...]:
        """The policies that apply to ``agent``, in set order."""
        return tuple(self._policies[i] for i in self._applicable(agent))

    def rate_limit_usage(self, agent: Agent, now: float) -> list[LimitUsage]:
        """Read-only: the agent's rate-limit counters now, one entry per window of every
        policy-level and rule-level limit that applies to it (for the console). Counts nothing.
        Empty when the limiter cannot report usage (a shared store that does not implement it)."""
        usage = getattr(self.limiter, "usage", None)
        if usage is None:
            return []
        out: list[LimitUsage] = []
        for pos in self._applicable(agent):
            policy = self._policies[pos]
            counters: list[tuple[str | None, Any, Any]] = []
            if policy.rate_limit is not None:
                counters.append((None, ("policy", agent.id, policy.name), policy.rate_limit))
            for rule in policy.rules:
                if rule.rate_limit is not None:
                    label = rule.id if rule.id is not None else f"#{rule.index}"
                    counters.append((rule.label(), ("rule", agent.id, policy.name, label), rule.rate_limit))
            for rule_label, key, limit in counters:
                for seconds, maximum, used in usage(LimitCheck(key, limit.windows), now):
                    out.append(LimitUsage(policy.name, rule_label, seconds, maximum, used))
        return out

    # -- internals

    def _applicable(self, agent: Agent) -> tuple[int, ...]:
        key = (agent.id, agent.name, agent.trust_tier, agent.tags)
        found = self._applicable_cache.get(key)
        if found is None:
            found = tuple(
                pos
                for pos, p in enumerate(self._policies)
                if p.applies_to.matches(agent.id, agent.name, agent.trust_tier, agent.tags)
            )
            if len(self._applicable_cache) >= 4096:
                self._applicable_cache.clear()
                self._wanted.clear()
            self._applicable_cache[key] = found
        return found

    def _match(self, request: Request, applicable: tuple[int, ...], trace: bool, now: float) -> dict[int, _Matches]:
        action, resource = request.action, request.resource
        subjects = (action,) if resource is None else (action, f"{action}/{resource}")
        wanted = self._wanted.get(applicable) if len(applicable) != len(self._policies) else None
        if wanted is None and len(applicable) != len(self._policies):
            wanted = self._wanted[applicable] = frozenset(applicable)
        context = request.context
        sandboxed = isinstance(context, Mapping) and context.get("sandbox") is True
        found: dict[int, _Matches] = {}
        for subject in subjects:
            for e in self._index.candidates(subject):
                if wanted is not None and e.pos not in wanted:
                    continue
                m = found.get(e.pos)
                if m is None:
                    m = found[e.pos] = _Matches()
                    if trace:
                        m.trace = {}
                if e.kind == _APPROVAL:
                    if m.approval is None or e.order < m.approval:
                        m.approval = e.order
                    continue
                rule = e.rule
                assert rule is not None
                target = m.deny if e.kind == _DENY_RULE else m.allow
                seen = target.get(rule.index)
                if seen is not None:
                    if e.order < seen[1]:
                        target[rule.index] = (rule, e.order)
                    continue
                failed = _failed_condition(rule, action, resource, sandboxed)
                note = None
                if failed is None and rule.checks:
                    failed, note = _check_conditions(rule, request, now)
                if failed is None:
                    target[rule.index] = (rule, e.order)
                    if note is not None:
                        if m.notes is None:
                            m.notes = {}
                        m.notes[rule.index] = note
                else:
                    if e.kind == _ALLOW_RULE and (m.failed is None or rule.index < m.failed[0]):
                        m.failed = (rule.index, f"{rule.describe(e.pattern)}: {failed}")
                    if not trace:
                        continue
                    assert m.trace is not None
                    m.trace.setdefault(
                        rule.index, RuleMatch(rule.label(e.pattern), rule.effect, e.pattern.text, False, failed)
                    )
        return found

    def _trace(self, pos: int, m: _Matches | None) -> tuple[RuleMatch, ...]:
        """Everything that matched in one policy, by rule index (for ``explain``)."""
        if m is None or m.trace is None:
            return ()
        out = dict(m.trace)
        notes = m.notes or {}
        for rule, order in (*m.deny.values(), *m.allow.values()):
            out[rule.index] = RuleMatch(rule.label(rule.actions[order]), rule.effect, rule.actions[order].text,
                                        note=notes.get(rule.index))  # fmt: skip
        listed = [out[i] for i in sorted(out)]
        if m.approval is not None:
            pattern = self._policies[pos].require_approval[m.approval].text
            listed.append(RuleMatch("humanInTheLoop.requireApproval", "approval", pattern))
        return tuple(listed)

    def _evaluate(self, request: Request, now: float, *, consume: bool, trace: bool) -> Decision:
        refused = check_request(request.action, request.resource)
        if refused is not None:
            return Decision(Effect.DENY, f"denied: {refused}")
        if request.resource == "":
            request = Request(request.agent, request.action, None, request.context)
        agent = request.agent
        applicable = self._applicable(agent)
        if not applicable:
            tags = ", ".join(sorted(agent.tags)) or "none"
            who = agent.name or agent.id
            return Decision(
                Effect.DENY,
                f"denied: no policy applies to agent '{who}' (trust tier {agent.trust_tier or 'none'}, "
                f"tags: {tags}); nothing is allowed until one does",
            )
        found = self._match(request, applicable, trace, now)

        # The rate-limit counters this request touches.
        checks: list[LimitCheck] = []
        owners: list[tuple[int, Rule | None]] = []  # (policy pos, rule or None for the policy counter)
        agent_key = agent.id
        for pos in applicable:
            policy = self._policies[pos]
            m = found.get(pos)
            if policy.rate_limit is not None:
                checks.append(LimitCheck(("policy", agent_key, policy.name, *_split(policy.rate_limit.per, request)),
                                         policy.rate_limit.windows))  # fmt: skip
                owners.append((pos, None))
            if m is not None and not m.deny and m.approval is None:
                for rule, _ in m.allow.values():
                    if rule.rate_limit is not None:
                        label = rule.id if rule.id is not None else f"#{rule.index}"
                        checks.append(LimitCheck(("rule", agent_key, policy.name, label,
                                                  *_split(rule.rate_limit.per, request)), rule.rate_limit.windows))  # fmt: skip
                        owners.append((pos, rule))

        result: list[Decision] = []

        def choose(statuses: list[LimitStatus]) -> list[int]:
            decision, admitted = self._combine(request, applicable, found, statuses, owners, trace)
            result.append(decision)
            if decision.effect is Effect.RATE_LIMITED:
                return []
            return [
                i for i, (pos, rule) in enumerate(owners)
                if not statuses[i].over and (rule is None or (pos, rule.index) in admitted)
            ]

        if not checks:
            return self._combine(request, applicable, found, [], owners, trace)[0]
        if consume:
            self.limiter.check_and_hit(checks, choose, now)
        else:
            choose(self.limiter.peek(checks, now))
        return result[0]

    def _combine(
        self,
        request: Request,
        applicable: tuple[int, ...],
        found: dict[int, _Matches],
        statuses: list[LimitStatus],
        owners: list[tuple[int, Rule | None]],
        trace: bool,
    ) -> tuple[Decision, set[tuple[int, int]]]:
        """Each applicable policy's outcome, then the most severe; also which
        (policy pos, rule index) allow rules admitted the request."""
        policy_status: dict[int, LimitStatus] = {}
        rule_status: dict[tuple[int, int], LimitStatus] = {}
        for (pos, rule), status in zip(owners, statuses):
            if rule is None:
                policy_status[pos] = status
            else:
                rule_status[(pos, rule.index)] = status
        admitted: set[tuple[int, int]] = set()
        outcomes: list[PolicyOutcome] = []
        worst = -1
        for pos in applicable:
            out = self._policy_outcome(pos, request, found.get(pos), policy_status.get(pos), rule_status, admitted)
            outcomes.append(out)
            rank = _RANK[out.effect]
            if rank > worst:
                worst = rank
        effect = next(o.effect for o in outcomes if _RANK[o.effect] == worst)
        deciding = [o for o in outcomes if o.effect is effect]
        first = deciding[0]
        details = tuple(outcomes) if trace else ()
        if effect is Effect.RATE_LIMITED:
            slowest = max(deciding, key=lambda o: o.retry_after or 0.0)
            decision = Decision(effect, slowest.reason, slowest.policy, slowest.rule, slowest.retry_after,
                                slowest.limit, details)
        elif len(deciding) == 1:
            decision = Decision(effect, first.reason, first.policy, first.rule, details=details)
        else:
            decision = Decision(effect, "; ".join(o.reason for o in deciding), first.policy, first.rule,
                                details=details)
        return decision, admitted

    def _policy_outcome(
        self,
        pos: int,
        request: Request,
        m: _Matches | None,
        own_status: LimitStatus | None,
        rule_status: dict[tuple[int, int], LimitStatus],
        admitted: set[tuple[int, int]],
    ) -> PolicyOutcome:
        policy = self._policies[pos]
        name = policy.name
        matched = self._trace(pos, m)
        if m is not None and m.deny:
            rule, order = min(m.deny.values(), key=lambda ro: ro[0].index)
            pattern = rule.actions[order]
            reason = f"denied by {rule.describe(pattern)} in policy '{name}'"
            note = m.notes.get(rule.index) if m.notes is not None else None
            if note is not None:
                reason += f" ({note})"
            if rule.reason:
                reason += f": {rule.reason}"
            return PolicyOutcome(name, Effect.DENY, reason, rule.label(pattern), matched=matched)
        has_allow = m is not None and bool(m.allow)
        has_approval = m is not None and m.approval is not None
        if not has_allow and not has_approval and policy.default_effect == DENY:
            return PolicyOutcome(name, Effect.DENY, _no_rule(request, name, "deny", m), matched=matched)
        if own_status is not None and own_status.over:
            return PolicyOutcome(
                name,
                Effect.RATE_LIMITED,
                f"rate limit exceeded: {own_status.limit} (policy '{name}')",
                retry_after=own_status.retry_after,
                limit=own_status.limit,
                matched=matched,
            )
        if has_approval:
            assert m is not None and m.approval is not None
            approval = policy.require_approval[m.approval].text
            return PolicyOutcome(
                name,
                Effect.APPROVAL_REQUIRED,
                f"approval required: '{request.action}' matches '{approval}' in humanInTheLoop.requireApproval "
                f"of policy '{name}'",
                "humanInTheLoop.requireApproval",
                matched=matched,
            )
        if has_allow:
            assert m is not None
            best: tuple[Rule, int] | None = None
            slowest: tuple[Rule, int, LimitStatus] | None = None
            for rule, order in m.allow.values():
                status = rule_status.get((pos, rule.index)) if rule.rate_limit is not None else None
                if status is not None and status.over:
                    # the rule that admits again soonest (lowest index on a tie)
                    if slowest is None or (status.retry_after, rule.index) < (
                        slowest[2].retry_after, slowest[0].index
                    ):
                        slowest = (rule, order, status)
                    continue
                admitted.add((pos, rule.index))
                if best is None or rule.index < best[0].index:
                    best = (rule, order)
            if best is not None:
                rule, order = best
                pattern = rule.actions[order]
                reason = f"allowed by {rule.describe(pattern)} in policy '{name}'"
                if rule.reason:
                    reason += f": {rule.reason}"
                return PolicyOutcome(name, Effect.ALLOW, reason, rule.label(pattern), matched=matched)
            assert slowest is not None
            rule, order, status = slowest
            pattern = rule.actions[order]
            return PolicyOutcome(
                name,
                Effect.RATE_LIMITED,
                f"rate limit exceeded: {status.limit} ({rule.describe(pattern)} in policy '{name}')",
                rule.label(pattern),
                retry_after=status.retry_after,
                limit=status.limit,
                matched=matched,
            )
        return PolicyOutcome(name, Effect.ALLOW, _no_rule(request, name, "allow", m), matched=matched)


def _no_rule(request: Request, policy: str, effect: str, m: _Matches | None) -> str:
    on = f" on '{request.resource}'" if request.resource is not None else ""
    if effect == DENY and m is not None and m.failed is not None:
        return (f"no rule applies to '{request.action}'{on} ({m.failed[1]}); "
                f"default effect of policy '{policy}' is {effect}")
    return f"no rule matches '{request.action}'{on}; default effect of policy '{policy}' is {effect}"


def _failed_condition(rule: Rule, action: str, resource: str | None, sandboxed: bool) -> str | None:
    """None when every condition of ``rule`` holds, else what did not."""
    rp = rule.resource_pattern
    if rp is not None:
        if resource is None:
            return f"condition resourcePattern '{rp.text}' needs a resource; none was given"
        obj = action.partition(":")[2].split("/", 1)[0]
        if not rp.matches(resource) and not rp.matches(f"{obj}/{resource}"):
            return f"condition resourcePattern '{rp.text}' does not match '{resource}'"
    if rule.sandbox is not None and rule.sandbox != sandboxed:
        want = "true" if rule.sandbox else "false"
        got = "true" if sandboxed else "false or unknown"
        return f"condition sandbox: {want} does not hold (context.sandbox is {got})"
    return None


def _check_conditions(rule: Rule, request: Request, now: float) -> tuple[str | None, str | None]:
    """The conditions of conditions.py, fail closed: (why the rule does not apply, None) or
    (None, a note for a deny rule's reason: why it applies). A condition that cannot be checked
    stops an allow rule and lets a deny rule apply."""
    facts = Facts(request.action, request.resource, request.context, now, request.resolution, request.agent.tags)
    unknown: str | None = None
    held: str | None = None
    for condition in rule.checks:
        holds, note = condition.check(facts)
        if holds is False:
            return note or f"condition {condition.name} does not hold", None
        if holds is None and unknown is None:
            unknown = note or f"condition {condition.name} cannot be checked"
        elif holds and note is not None and held is None:
            held = note
    if unknown is not None:
        if rule.effect != DENY:
            return unknown, None
        return None, unknown
    return None, held if rule.effect == DENY else None
