"""`meshguard policy test`: test cases, their file format, and the two ways to decide them.

A test file (MeshGuard's format, plus an optional ``agents`` section for offline runs)::

    agents:                      # offline only: who the agents are
      autogpt-agent: {trust: verified, tags: [autogpt]}
    tests:                       # or the list alone, at the top level
      - name: browsing is allowed
        agent: autogpt-agent
        action: browse:web
        resource: https://example.com      # optional
        context: {sandbox: false}          # optional
        expect: allow                      # allow | deny | approval_required | rate_limited

Online, each case is asked of the gateway (``POST /admin/policies/test``: no rate-limit
budget used, no audit row). Offline, the local policy files are evaluated with the engine,
and nothing touches a gateway.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from meshguard_gateway.cli._errors import BadArgumentError
from meshguard_gateway.policy import TIER_ALIASES, TRUST_TIERS

DECISIONS = ("allow", "deny", "approval_required", "rate_limited")
_EXPECT_ALIASES = {
    "allow": "allow",
    "allowed": "allow",
    "true": "allow",
    "deny": "deny",
    "denied": "deny",
    "false": "deny",
    "approval_required": "approval_required",
    "approval": "approval_required",
    "require_approval": "approval_required",
    "requires_approval": "approval_required",
    "rate_limited": "rate_limited",
    "ratelimited": "rate_limited",
    "rate_limit": "rate_limited",
}
CASE_KEYS = ("name", "agent", "action", "resource", "context", "expect", "description")
AGENT_KEYS = ("name", "id", "trust", "trustTier", "tags")


def normalize_expect(value: Any) -> str | None:
    if isinstance(value, bool):
        value = "allow" if value else "deny"
    if not isinstance(value, str):
        return None
    return _EXPECT_ALIASES.get(value.strip().lower().replace("-", "_").replace(" ", "_"))


@dataclass(frozen=True)
class AgentSpec:
    """An agent as the offline engine sees it (online, only ``name`` is used)."""

    name: str
    id: str | None = None
    trust: str | None = None
    tags: frozenset[str] = frozenset()


@dataclass
class Case:
    name: str
    agent: str | AgentSpec
    action: str
    resource: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    expect: str | None = None

    @property
    def agent_name(self) -> str:
        return self.agent if isinstance(self.agent, str) else self.agent.name


@dataclass
class Outcome:
    """What a case got. ``error`` is set when it could not be decided (unknown agent ...)."""

    case: Case
    decision: str | None = None
    reason: str | None = None
    policy: str | None = None
    rule: str | None = None
    details: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def passed(self) -> bool:
        if self.error is not None:
            return False
        if self.case.expect is None:
            return self.decision == "allow"
        return self.decision == self.case.expect

    @property
    def result(self) -> str:
        return "ERROR" if self.error is not None else ("PASS" if self.passed else "FAIL")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.case.name,
            "agent": self.case.agent_name,
            "action": self.case.action,
            "resource": self.case.resource,
            "context": self.case.context,
            "expected": self.case.expect,
            "decision": self.decision,
            "passed": self.passed,
            "result": self.result.lower(),
            "reason": self.reason,
            "policy": self.policy,
            "rule": self.rule,
        }
        out.update(self.extra)
        if self.details is not None:
            out["details"] = self.details
        if self.error is not None:
            out["error"] = self.error
        return out


# --------------------------------------------------------------------------- test files


def parse_context(text: str | None, where: str = "--context") -> dict[str, Any]:
    if text is None or text == "":
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise BadArgumentError(f"{where} is not valid JSON ({exc}); e.g. --context '{{\"sandbox\": true}}'") from None
    if not isinstance(value, dict):
        raise BadArgumentError(f"{where} must be a JSON object, e.g. '{{\"sandbox\": true}}'")
    return value


def parse_agent_spec(value: Any, where: str, name: str | None = None) -> AgentSpec:
    if not isinstance(value, dict):
        raise BadArgumentError(f"{where}: an agent is described by a mapping with trust and tags")
    unknown = sorted(set(map(str, value)) - set(AGENT_KEYS))
    if unknown:
        raise BadArgumentError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(AGENT_KEYS)})")
    agent_name = name if name is not None else value.get("name")
    if not isinstance(agent_name, str) or not agent_name:
        raise BadArgumentError(f"{where}: the agent needs a 'name'")
    trust = value.get("trust", value.get("trustTier"))
    if trust is not None:
        trust = TIER_ALIASES.get(str(trust).lower(), str(trust).lower())
        if trust not in TRUST_TIERS:
            raise BadArgumentError(f"{where}: trust {trust!r} is not one of: {', '.join(TRUST_TIERS)}")
    tags = value.get("tags", [])
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",") if t.strip()]
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise BadArgumentError(f"{where}: tags must be a list of strings")
    agent_id = value.get("id")
    return AgentSpec(name=agent_name, id=str(agent_id) if agent_id else None, trust=trust, tags=frozenset(tags))


def _item_lines(text: str) -> tuple[list[int], dict[str, int]]:
    """Line numbers (1-based) of each test case, and of each described agent, for messages."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return [], {}
    tests_node = root
    agents: dict[str, int] = {}
    if isinstance(root, yaml.MappingNode):
        tests_node = None
        for key, value in root.value:
            if getattr(key, "value", None) == "tests":
                tests_node = value
            if getattr(key, "value", None) == "agents" and isinstance(value, yaml.MappingNode):
                agents = {str(k.value): k.start_mark.line + 1 for k, _ in value.value}
    if isinstance(tests_node, yaml.SequenceNode):
        return [item.start_mark.line + 1 for item in tests_node.value], agents
    return [], agents


def load_test_file(path: Path) -> tuple[list[Case], dict[str, AgentSpec]]:
    """Parse a test file; BadArgumentError (exit 2) with file and line on any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadArgumentError(f"{path}: cannot read the test file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise BadArgumentError(f"{path}: the test file is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        what = exc.problem or exc.context or "syntax error"
        if exc.problem and exc.context and exc.context_mark is not None:
            what += f" ({exc.context} at line {exc.context_mark.line + 1})"
        raise BadArgumentError(f"{where}: not valid YAML: {what}") from None
    except yaml.YAMLError as exc:
        raise BadArgumentError(f"{path}: not valid YAML: {exc}") from None
    lines, agent_lines = _item_lines(text)
    agents: dict[str, AgentSpec] = {}
    if isinstance(data, dict):
        unknown = sorted(set(map(str, data)) - {"tests", "agents"})
        if unknown:
            raise BadArgumentError(f"{path}: unknown top-level key '{unknown[0]}' (known: agents, tests)")
        raw_agents = data.get("agents") or {}
        if not isinstance(raw_agents, dict):
            raise BadArgumentError(f"{path}: 'agents' must map agent names to {{trust, tags}}")
        for agent_name, spec in raw_agents.items():
            line = agent_lines.get(str(agent_name))
            where = f"{path}:{line}" if line else str(path)
            agents[str(agent_name)] = parse_agent_spec(spec or {}, f"{where}: agent '{agent_name}'", str(agent_name))
        data = data.get("tests")
    if not isinstance(data, list) or not data:
        raise BadArgumentError(
            f"{path}: expected a list of test cases (or 'tests:' with one), each with agent, action and expect"
        )
    cases: list[Case] = []
    for index, item in enumerate(data, start=1):
        line = lines[index - 1] if index - 1 < len(lines) else None
        where = f"{path}:{line}: test {index}" if line else f"{path}: test {index}"
        if not isinstance(item, dict):
            raise BadArgumentError(f"{where}: a test case is a mapping with agent, action and expect")
        name = item.get("name")
        if name is not None:
            where += f" ({name})"
        unknown = sorted(set(map(str, item)) - set(CASE_KEYS))
        if unknown:
            raise BadArgumentError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(CASE_KEYS)})")
        action = item.get("action")
        if not isinstance(action, str) or not action:
            raise BadArgumentError(f"{where}: missing 'action' (a verb:object such as write:workspace)")
        agent_value = item.get("agent")
        agent: str | AgentSpec
        if isinstance(agent_value, dict):
            agent = parse_agent_spec(agent_value, f"{where}: agent")
        elif isinstance(agent_value, (str, int)) and str(agent_value):
            agent = str(agent_value)
        else:
            raise BadArgumentError(f"{where}: missing 'agent' (a name, an id, or a mapping with name, trust and tags)")
        if "expect" not in item:
            raise BadArgumentError(f"{where}: missing 'expect' (one of: {', '.join(DECISIONS)})")
        expect = normalize_expect(item.get("expect"))
        if expect is None:
            raise BadArgumentError(f"{where}: expect {item.get('expect')!r} is not one of: {', '.join(DECISIONS)}")
        resource = item.get("resource")
        if resource is not None and not isinstance(resource, (str, int, float)):
            raise BadArgumentError(f"{where}: 'resource' must be a string")
        context = item.get("context") or {}
        if not isinstance(context, dict):
            raise BadArgumentError(f"{where}: 'context' must be a mapping, e.g. {{sandbox: true}}")
        cases.append(
            Case(
                name=str(name) if name is not None else f"#{index} {action}",
                agent=agent,
                action=action,
                resource=str(resource) if resource is not None else None,
                context=context,
                expect=expect,
            )
        )
    return cases, agents


# --------------------------------------------------------------------------- deciding


def _plain(value: Any) -> Any:
    """Engine objects (dataclasses, enums, frozensets) as JSON-ready data."""
    import dataclasses
    import enum

    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        if callable(to_dict):
            return _plain(to_dict())
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def decide_online(client: Any, case: Case, policy: str | None) -> Outcome:
    """Ask the gateway; an unknown agent or a bad request becomes an ERROR row, not an abort."""
    from meshguard_gateway.cli._client import GatewayError

    payload: dict[str, Any] = {"agent": case.agent_name, "action": case.action}
    if case.resource is not None:
        payload["resource"] = case.resource
    if case.context:
        payload["context"] = case.context
    try:
        body = client.post("/admin/policies/test", json=payload)
    except GatewayError as exc:
        if exc.status == 404 and exc.code in (None, "not_found", "agent_not_found"):
            message = f"no agent named or with id {case.agent_name!r} on the gateway"
            if policy is not None and "polic" in str(exc.message).lower():
                message = str(exc.message)
            return Outcome(case, error=message)
        if exc.status in (400, 404, 409, 422):
            return Outcome(case, error=str(exc.message))
        raise
    body = body if isinstance(body, dict) else {}
    if policy is not None:
        # What that one policy said, from the explanation of the whole decision.
        said = [d for d in body.get("details") or [] if isinstance(d, dict) and d.get("policy") == policy]
        if not said:
            return Outcome(
                case,
                error=f"policy {policy!r} does not apply to agent {case.agent_name!r} (or does not exist); "
                "`meshguard policy allowed AGENT` lists the policies that apply",
            )
        body = {**said[0], "details": said}
    extra = {k: body[k] for k in ("retry_after", "limit", "enforced", "mode") if body.get(k) is not None}
    return Outcome(
        case,
        decision=str(body.get("decision")) if body.get("decision") is not None else None,
        reason=body.get("reason"),
        policy=body.get("policy"),
        rule=body.get("rule"),
        details=body.get("details"),
        extra=extra,
    )


class OfflineDecider:
    """Evaluate cases against local policy files with the engine; no gateway involved."""

    def __init__(
        self,
        policies_path: Path,
        agents: dict[str, AgentSpec],
        default_agent: AgentSpec | None,
        policy: str | None,
    ) -> None:
        from meshguard_gateway.engine import Engine
        from meshguard_gateway.policy import PolicySet, load_policies
        from meshguard_gateway.ratelimit import SlidingWindowLimiter

        policy_set = load_policies(policies_path)
        if policy is not None:
            chosen = policy_set.get(policy)
            if chosen is None:
                known = ", ".join(policy_set.names) or "none"
                raise BadArgumentError(f"--policy: no policy named {policy!r} in {policies_path} (found: {known})")
            policy_set = PolicySet((chosen,))
        self.policy_set = policy_set
        self.engine = Engine(policy_set, limiter=SlidingWindowLimiter())
        self.agents = agents
        self.default_agent = default_agent

    def agent_for(self, case: Case) -> AgentSpec | None:
        if isinstance(case.agent, AgentSpec):
            return case.agent
        if case.agent in self.agents:
            return self.agents[case.agent]
        for spec in self.agents.values():
            if spec.id == case.agent:
                return spec
        if self.default_agent is not None:
            return AgentSpec(
                name=case.agent, id=self.default_agent.id, trust=self.default_agent.trust, tags=self.default_agent.tags
            )
        return None

    def decide(self, case: Case) -> Outcome:
        from meshguard_gateway.engine import Agent, Request

        spec = self.agent_for(case)
        if spec is None:
            return Outcome(
                case,
                error=(
                    f"agent {case.agent_name!r} is not described: offline, add it under 'agents:' in the test file "
                    "or pass --trust and --agent-tags"
                ),
            )
        agent = Agent(id=spec.id or spec.name, name=spec.name, trust_tier=spec.trust or "unverified", tags=spec.tags)
        resolution = None
        if getattr(self.engine, "needs_resolution", False):  # the publicAddress condition: resolve here, as a gateway would
            from meshguard_gateway.resolver import resolve_url_host_sync

            resolution = resolve_url_host_sync(case.resource)
        request = Request(agent, case.action, case.resource, dict(case.context), resolution)
        decision = self.engine.explain(request, time.time())
        effect = getattr(decision, "effect", None)
        extra: dict[str, Any] = {}
        if getattr(decision, "retry_after", None) is not None:
            extra["retry_after"] = decision.retry_after
        if getattr(decision, "limit", None) is not None:
            extra["limit"] = decision.limit
        details = getattr(decision, "details", None)
        return Outcome(
            case,
            decision=str(getattr(effect, "value", effect)),
            reason=getattr(decision, "reason", None),
            policy=getattr(decision, "policy", None),
            rule=getattr(decision, "rule", None),
            details=_plain(details) if details is not None else None,
            extra=extra,
        )
