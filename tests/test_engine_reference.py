"""The indexed engine agrees with a deliberately naive reference evaluator.

The reference reads DESIGN.md "Policy semantics" literally: it loops over every policy,
every rule and every pattern, matches globs with a character-by-character recursive
matcher (no regex, no index), and keeps rate-limit hits in plain lists. Hypothesis
generates random policies (as YAML, so the parser is exercised too), agents and
sequences of timed requests; every decision must agree: effect, deciding policy and
rule, retry-after and limit. Rules also carry MeshGuard's resource / amount / time_range /
context / tags conditions, read literally here, with "cannot be checked" failing closed
(an allow rule does not apply, a deny rule does). The shell and URL conditions have their
own tests (test_shell.py, test_url.py, test_policy_conditions.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshguard_gateway.engine import Agent, Engine, Request
from meshguard_gateway.policy import Policy, PolicySet, Rule, parse_policies

# --------------------------------------------------------------------------- the reference


@lru_cache(maxsize=None)
def glob(pattern: str, subject: str) -> bool:
    """'*' any run, '?' one character, everything else literal; anchored; case-sensitive."""
    if not pattern:
        return not subject
    head, rest = pattern[0], pattern[1:]
    if head == "*":
        return any(glob(rest, subject[i:]) for i in range(len(subject) + 1))
    if not subject:
        return False
    return (head == "?" or head == subject[0]) and glob(rest, subject[1:])


def pattern_matches(pattern: str, action: str, resource: str | None) -> bool:
    return glob(pattern, action) or (resource is not None and glob(pattern, action + "/" + resource))


def conditions_hold(rule: Rule, action: str, resource: str | None, context: dict[str, Any], agent: Agent,
                    now: float) -> bool:  # fmt: skip
    if rule.resource_pattern is not None:
        if resource is None:
            return False
        obj = action.split(":", 1)[1].split("/", 1)[0]
        rp = rule.resource_pattern.text
        if not (glob(rp, resource) or glob(rp, obj + "/" + resource)):
            return False
    if rule.sandbox is not None and rule.sandbox != (context.get("sandbox") is True):
        return False
    states = [other_condition(c.path, c.value, resource, context, agent, now) for c in rule.checks]
    if False in states:
        return False
    if None in states:  # cannot be checked: fail closed
        return rule.effect == "deny"
    return True


def other_condition(path: tuple[str, ...], value: Any, resource: str | None, context: dict[str, Any], agent: Agent,
                    now: float) -> bool | None:  # fmt: skip
    """MeshGuard's resource / amount / time_range / context / tags conditions, read literally:
    True, False, or None when the request lacks what the condition needs."""
    values = value if isinstance(value, list) else [value]
    if path[0] == "resource":
        if resource is None:
            return False
        if path[1] == "contains":
            return any(v in resource for v in values)
        if path[1] == "startsWith":
            return any(resource.startswith(v) for v in values)
        hit = any(glob(v, resource) for v in values)
        return hit if path[1] == "matches" else not hit
    if path[0] in ("amount_max", "amount_min"):
        amount = context.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            return None
        return amount <= value if path[0] == "amount_max" else amount >= value
    if path[0] == "time_range":
        start, end = ((int(x[:2]) * 60 + int(x[3:])) for x in value.split("-"))
        minute = int(now // 60) % 1440
        return start <= minute < end if start < end else (minute >= start or minute < end)
    if path[0] == "context":
        if path[1] not in context:
            return None
        got = context[path[1]]
        if len(path) == 2:
            return type(got) is type(value) and got == value
        if path[2] in ("in", "not_in"):
            hit = any(type(got) is type(v) and got == v for v in values)
            return hit if path[2] == "in" else not hit
        if not isinstance(got, str):
            return None
        hit = any(glob(v, got) for v in values)
        return hit if path[2] == "matches" else not hit
    if path[0] == "tags":
        return all(t in agent.tags for t in values)
    raise AssertionError(f"no reference for condition {path}")


def applies(policy: Policy, agent: Agent) -> bool:
    a = policy.applies_to
    if a.agent_ids is not None and agent.id not in a.agent_ids and agent.name not in a.agent_ids:
        return False
    if a.trust_tiers is not None and agent.trust_tier not in a.trust_tiers:
        return False
    return a.tags is None or all(t in agent.tags for t in a.tags)


@dataclass
class RefDecision:
    effect: str
    policy: str | None = None
    rule: str | None = None
    retry_after: float | None = None
    limit: str | None = None


@dataclass
class Reference:
    policies: list[Policy]
    hits: dict[Any, list[float]] = field(default_factory=dict)

    def status(self, key: Any, windows: tuple[tuple[float, int], ...], now: float) -> tuple[bool, float, str | None]:
        """(over, retry_after, limit) by counting every stored hit inside each window."""
        over, wait, limit = False, 0.0, None
        for seconds, n in windows:
            inside = sorted(t for t in self.hits.get((key, seconds), []) if t > now - seconds)
            if len(inside) >= n:
                w = inside[len(inside) - n] + seconds - now
                if not over or w > wait:
                    unit = {60.0: "minute", 3600.0: "hour"}[seconds]
                    over, wait, limit = True, w, f"{n} request{'s' if n != 1 else ''} per {unit}"
        return over, wait, limit

    def add(self, key: Any, windows: tuple[tuple[float, int], ...], now: float) -> None:
        for seconds, _ in windows:
            self.hits.setdefault((key, seconds), []).append(now)

    def decide(self, agent: Agent, action: str, resource: str | None, context: dict[str, Any], now: float,
               consume: bool = True) -> RefDecision:
        if resource is not None and ".." in resource.replace("\\", "/").split("/"):
            return RefDecision("deny")
        applicable = [p for p in self.policies if applies(p, agent)]
        if not applicable:
            return RefDecision("deny")
        outcomes: list[RefDecision] = []
        admitted: list[tuple[Policy, Rule]] = []
        for p in applicable:
            def first_pattern(rule: Rule) -> str | None:
                for pat in rule.actions:
                    if pattern_matches(pat.text, action, resource):
                        return pat.text
                return None

            def label(rule: Rule) -> str:
                return rule.id if rule.id is not None else f"#{rule.index} ({first_pattern(rule)})"

            matching = [r for r in p.rules if first_pattern(r) is not None
                        and conditions_hold(r, action, resource, context, agent, now)]  # fmt: skip
            denies = [r for r in matching if r.effect == "deny"]
            allows = [r for r in matching if r.effect == "allow"]
            approval = any(pattern_matches(a.text, action, resource) for a in p.require_approval)
            policy_over = (
                self.status(("policy", agent.id, p.name), p.rate_limit.windows, now) if p.rate_limit else (False, 0, None)
            )
            if denies:
                outcomes.append(RefDecision("deny", p.name, label(min(denies, key=lambda r: r.index))))
            elif not allows and not approval and p.default_effect == "deny":
                outcomes.append(RefDecision("deny", p.name))
            elif policy_over[0]:
                outcomes.append(RefDecision("rate_limited", p.name, None, policy_over[1], policy_over[2]))
            elif approval:
                outcomes.append(RefDecision("approval_required", p.name, "humanInTheLoop.requireApproval"))
            elif allows:
                under: list[tuple[Rule, Any]] = []
                over: list[tuple[Rule, Any]] = []
                for r in allows:
                    s = self.status(("rule", agent.id, p.name, r.index), r.rate_limit.windows, now) if r.rate_limit else None
                    (over if s is not None and s[0] else under).append((r, s))
                if under:
                    admitted.extend((p, r) for r, _ in under)
                    outcomes.append(RefDecision("allow", p.name, label(min((r for r, _ in under), key=lambda r: r.index))))
                else:
                    r, s = min(over, key=lambda rs: (rs[1][1], rs[0].index))
                    outcomes.append(RefDecision("rate_limited", p.name, label(r), s[1], s[2]))
            else:
                outcomes.append(RefDecision("allow", p.name))
        rank = {"allow": 0, "approval_required": 1, "rate_limited": 2, "deny": 3}
        worst = max(rank[o.effect] for o in outcomes)
        deciding = [o for o in outcomes if rank[o.effect] == worst]
        final = deciding[0]
        if final.effect == "rate_limited":
            final = max(deciding, key=lambda o: o.retry_after or 0.0)
        if consume and final.effect != "rate_limited":
            for p in applicable:
                if p.rate_limit and not self.status(("policy", agent.id, p.name), p.rate_limit.windows, now)[0]:
                    self.add(("policy", agent.id, p.name), p.rate_limit.windows, now)
            for p, r in admitted:
                if r.rate_limit:
                    self.add(("rule", agent.id, p.name, r.index), r.rate_limit.windows, now)
        return final


# --------------------------------------------------------------------------- random policies

VERBS = ["read", "write", "exec"]
OBJECTS = ["ws", "sys", "web"]
verb_pat = st.sampled_from(VERBS + ["*", "r*", "?rite", "e*c"])
obj_pat = st.sampled_from(OBJECTS + ["*", "w?", "s*s", "ws*", "web*"])
path_pat = st.sampled_from(["", "", "/*", "/a/*", "/*.txt", "/a", "/*/*"])
patterns = st.builds(lambda v, o, p: f"{v}:{o}{p}", verb_pat, obj_pat, path_pat)
limits = st.fixed_dictionaries(
    {}, optional={"requestsPerMinute": st.integers(1, 3), "requestsPerHour": st.integers(2, 4)}
).filter(bool)
TAGS = ["t1", "t2", "t3"]
TEXTS = ["a", "b.txt", "*.txt", "a*", "/", "ws"]
TIERS = ["unverified", "verified", "trusted"]


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    effect = draw(st.sampled_from(["allow", "deny"]))
    rule: dict[str, Any] = {"effect": effect, "actions": draw(st.lists(patterns, min_size=1, max_size=3))}
    conditions: dict[str, Any] = {}
    if draw(st.booleans()):
        conditions["resourcePattern"] = draw(st.sampled_from(["ws/*", "*.txt", "a*", "sys/a/*"]))
    if draw(st.booleans()):
        conditions["sandbox"] = draw(st.booleans())
    if effect == "allow" and draw(st.integers(0, 2)) == 0:
        conditions["rateLimit"] = draw(limits)
    if draw(st.integers(0, 3)) == 0:
        conditions["resource"] = draw(st.dictionaries(
            st.sampled_from(["contains", "startsWith", "matches", "not_matches"]),
            st.one_of(st.sampled_from(TEXTS), st.lists(st.sampled_from(TEXTS), min_size=1, max_size=2)),
            min_size=1, max_size=2))  # fmt: skip
    if draw(st.integers(0, 3)) == 0:
        conditions[draw(st.sampled_from(["amount_max", "amount_min"]))] = draw(st.sampled_from([0, 5, 10.5]))
    if draw(st.integers(0, 4)) == 0:
        conditions["time_range"] = draw(st.sampled_from(["00:10-00:30", "00:20-02:00", "23:00-00:20"]))
    if draw(st.integers(0, 4)) == 0:
        conditions["context"] = {"channel": draw(st.one_of(
            st.sampled_from(["slack", "sms"]), st.fixed_dictionaries({"in": st.just(["slack", "mail"])}),
            st.fixed_dictionaries({"not_matches": st.just("s*")})))}  # fmt: skip
    if draw(st.integers(0, 5)) == 0:
        conditions["tags"] = draw(st.lists(st.sampled_from(TAGS), min_size=1, max_size=2, unique=True))
    if conditions:
        rule["conditions"] = conditions
    if draw(st.integers(0, 4)) == 0:
        rule["id"] = draw(st.sampled_from(["r-a", "r-b", "r-c"]))
    return rule


@st.composite
def policies(draw: st.DrawFn, name: str, busy: bool = False) -> dict[str, Any]:
    """A random policy; ``busy`` ones apply to everyone, mostly allow, and always limit,
    so that counters fill up and interact across policies."""
    rule_list = draw(st.lists(rules(), max_size=6))
    ids: set[str] = set()
    for r in rule_list:  # rule ids are unique within a policy
        if "id" in r and r["id"] in ids:
            del r["id"]
        ids.add(r.get("id", ""))
    doc: dict[str, Any] = {"name": name, "rules": rule_list}
    applies_to: dict[str, Any] = {}
    if draw(st.integers(0, 2)) == 0:
        applies_to["tags"] = draw(st.lists(st.sampled_from(TAGS), min_size=1, max_size=2, unique=True))
    if draw(st.integers(0, 3)) == 0:
        applies_to["trustTiers"] = draw(st.lists(st.sampled_from(TIERS), min_size=1, max_size=2, unique=True))
    if draw(st.integers(0, 4)) == 0:
        applies_to["agentIds"] = draw(st.lists(st.sampled_from(["agent_0", "bot1", "agent_2"]), min_size=1, max_size=2))
    if applies_to and not busy:
        doc["appliesTo"] = applies_to
    if busy:
        doc["defaultEffect"] = draw(st.sampled_from(["allow", "allow", "deny"]))
    elif draw(st.booleans()):
        doc["defaultEffect"] = draw(st.sampled_from(["allow", "deny"]))
    if busy or draw(st.booleans()):
        doc["rateLimits"] = draw(limits)
    if draw(st.integers(0, 2)) == 0:
        doc["humanInTheLoop"] = {"requireApproval": draw(st.lists(patterns, min_size=1, max_size=2))}
    return doc


@st.composite
def policy_sets(draw: st.DrawFn, busy: bool = False) -> PolicySet:
    n = draw(st.integers(2 if busy else 1, 3))
    docs = [draw(policies(f"p{i}", busy)) for i in range(n)]
    return parse_policies([(f"p{i}.yaml", yaml.safe_dump(d)) for i, d in enumerate(docs)])


AGENTS = [
    Agent("agent_0", "bot0", "verified", frozenset({"t1"})),
    Agent("agent_1", "bot1", "trusted", frozenset({"t1", "t2"})),
    Agent("agent_2", "bot2", "unverified", frozenset()),
    Agent("agent_3", "bot3", "verified", frozenset({"t1", "t2", "t3"})),
]
actions = st.builds(lambda v, o: f"{v}:{o}", st.sampled_from(VERBS + ["delete"]), st.sampled_from(OBJECTS))
resources = st.sampled_from([None, "a", "a/b.txt", "x.txt", "ws/a", "sys/a/b", "../x", "a/b/c", "*"])
contexts = st.sampled_from([{}, {"sandbox": True}, {"sandbox": False}, {"amount": 5}, {"amount": 10.5},
                            {"amount": 11, "channel": "slack"}, {"amount": "5"}, {"channel": "sms"},
                            {"channel": "mail", "sandbox": True}, {"channel": 1}])  # fmt: skip
steps = st.sampled_from([0.0, 0.0, 0.5, 1.0, 1.0, 30.0, 59.5, 60.0, 61.0, 3599.0, 3600.0])
agents = st.one_of(st.sampled_from(AGENTS[:2]), st.sampled_from(AGENTS))  # repeat agents to fill counters
requests = st.tuples(agents, actions, resources, contexts, steps)


def as_tuple(d: Any) -> tuple[Any, ...]:
    effect = getattr(d.effect, "value", d.effect)
    return (effect, d.policy, d.rule, d.retry_after, d.limit)


def check_sequence(ps: PolicySet, sequence: list[tuple[Any, ...]]) -> None:
    engine = Engine(ps)
    ref = Reference(list(ps.policies))
    now = 1000.0
    for agent, action, resource, context, step in sequence:
        now += step
        expected_peek = ref.decide(agent, action, resource, context, now, consume=False)
        explained = engine.explain(Request(agent, action, resource, context), now)
        assert as_tuple(explained) == as_tuple(expected_peek)
        expected = ref.decide(agent, action, resource, context, now)
        got = engine.decide(Request(agent, action, resource, context), now)
        assert as_tuple(got) == as_tuple(expected), (agent, action, resource, context, now)
        assert as_tuple(got) == as_tuple(explained)  # explain predicts decide


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy_sets(), st.lists(requests, min_size=5, max_size=60))
def test_engine_agrees_with_naive_reference(ps: PolicySet, sequence: list[tuple[Any, ...]]) -> None:
    check_sequence(ps, sequence)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy_sets(busy=True), st.lists(requests, min_size=10, max_size=60))
def test_engine_agrees_with_naive_reference_when_limits_bind(ps: PolicySet, sequence: list[tuple[Any, ...]]) -> None:
    check_sequence(ps, sequence)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab*?:/", max_size=8), st.text(alphabet="ab:/", max_size=10))
def test_engine_glob_agrees_with_reference_glob(pattern: str, subject: str) -> None:
    from meshguard_gateway.policy import compile_pattern

    assert compile_pattern(pattern).matches(subject) is glob(pattern, subject)
