"""The decision engine, rule by rule (DESIGN.md "Policy semantics"). Pure: no gateway, no I/O."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from meshguard_gateway.engine import Agent, Decision, Effect, Engine, Request
from meshguard_gateway.policy import PolicySet, load_policies, parse_policies, parse_policy
from meshguard_gateway.ratelimit import SlidingWindowLimiter

ROOT = Path(__file__).resolve().parent.parent

AGENT = Agent("agent_1", "autogpt-agent", "verified", frozenset({"autogpt"}))
PROD = Agent("agent_2", "prod-agent", "verified", frozenset({"autogpt", "production"}))
OTHER = Agent("agent_3", "other", "unverified", frozenset({"langchain"}))


def engine(*texts: str) -> Engine:
    """An engine over policies given as YAML text (names taken from each text)."""
    return Engine(parse_policies([(f"p{i}.yaml", textwrap.dedent(t)) for i, t in enumerate(texts)]))


def rules_policy(rules: str, extra: str = "", name: str = "p") -> str:
    return f"name: {name}\nrules:\n{textwrap.indent(textwrap.dedent(rules), '  ')}\n{textwrap.dedent(extra)}"


def decide(e: Engine, action: str, resource: str | None = None, agent: Agent = AGENT,
           context: dict[str, object] | None = None, now: float = 0.0) -> Decision:
    return e.decide(Request(agent, action, resource, context), now)


# --------------------------------------------------------------------------- patterns

PATTERN_CASES = [
    # (pattern, action, resource, matches)
    ("read:*", "read:workspace", None, True),
    ("read:*", "read:workspace", "notes.txt", True),
    ("read:*", "reads:workspace", None, False),
    ("write:workspace/*", "write:workspace", "notes/today.txt", True),
    ("write:workspace/*", "write:workspace", None, False),  # the '/' needs a resource
    ("write:workspace/*", "write:workspacex", "a", False),
    ("write:workspace/*.txt", "write:workspace", "a/b.txt", True),  # '*' crosses '/'
    ("write:workspace/*.txt", "write:workspace", "a/b.txts", False),  # anchored at the end
    ("browse:web", "browse:web", "https://example.com", True),  # the action alone matches
    ("browse:web", "browse:webs", None, False),  # anchored
    ("browse:web", "xbrowse:web", None, False),  # anchored at the start
    ("*:email", "send:email", None, True),
    ("*:email", "send:emails", None, False),
    ("exec?te:shell", "execute:shell", None, True),
    ("exec?te:shell", "exectte:shell", None, True),
    ("exec?te:shell", "exece:shell", None, False),  # '?' is exactly one character
    ("Read:*", "read:workspace", None, False),  # case-sensitive
    ("read:*", "READ:workspace", None, False),
    ("read:a.b", "read:axb", None, False),  # '.' is literal
    ("read:a+", "read:aa", None, False),  # '+' is literal
    ("read:a+", "read:a+", None, True),
    ("write:system/etc/*", "write:system", "etc/passwd", True),
    ("*:*", "anything:at-all", "x", True),
    ("write:workspace*", "write:workspace", None, True),  # '*' matches the empty run at the end
    ("write:work*space", "write:workspace", None, True),
    ("write:*/*", "write:workspace", "a", True),
    ("read:*a*a*b", "read:aaaa", "aaaa", False),  # several stars: segment matching
    ("read:*a*a*b", "read:x", "aab", True),
    ("read:*a*a*b", "read:x", "ab", False),
]


@pytest.mark.parametrize(("pattern", "action", "resource", "matches"), PATTERN_CASES)
def test_engine_pattern_matching(pattern: str, action: str, resource: str | None, matches: bool) -> None:
    e = engine(rules_policy(f'- effect: allow\n  actions: ["{pattern}"]'))
    assert decide(e, action, resource).allowed is matches


# --------------------------------------------------------------------------- inside one policy

DENY_SHELL_AFTER_ALLOW = """
- id: allow-all-execute
  effect: allow
  actions: ["execute:*"]
- id: deny-shell
  effect: deny
  actions: ["execute:shell"]
  reason: No shell access
"""

INSIDE_CASES = [
    # (rules, extra, action, resource, effect, rule, reason fragment)
    pytest.param(
        DENY_SHELL_AFTER_ALLOW, "", "execute:shell", None, Effect.DENY, "deny-shell",
        "denied by rule 'deny-shell' (execute:shell) in policy 'p': No shell access",
        id="allow-listed-before-deny-still-denies",  # a first-match engine allows this
    ),
    pytest.param(
        DENY_SHELL_AFTER_ALLOW, "", "execute:python", None, Effect.ALLOW, "allow-all-execute",
        "allowed by rule 'allow-all-execute' (execute:*) in policy 'p'", id="allow-when-no-deny-matches",
    ),
    pytest.param(
        '- effect: deny\n  actions: ["execute:shell"]\n- effect: allow\n  actions: ["execute:*"]', "",
        "execute:shell", None, Effect.DENY, "#1 (execute:shell)",
        "denied by rule #1 (execute:shell) in policy 'p'", id="deny-listed-first-denies-too",
    ),
    pytest.param(
        '- effect: allow\n  actions: ["read:*"]', "", "write:x", None, Effect.DENY, None,
        "no rule matches 'write:x'; default effect of policy 'p' is deny", id="default-effect-absent-is-deny",
    ),
    pytest.param(
        '- effect: deny\n  actions: ["delete:*"]', "defaultEffect: allow", "write:x", "f", Effect.ALLOW, None,
        "no rule matches 'write:x' on 'f'; default effect of policy 'p' is allow", id="default-effect-allow",
    ),
    pytest.param(
        '- effect: deny\n  actions: ["delete:*"]', "defaultEffect: allow", "delete:x", None, Effect.DENY,
        "#1 (delete:*)", "denied by rule #1 (delete:*)", id="default-allow-still-honours-deny",
    ),
    pytest.param(
        '- effect: allow\n  actions: ["send:*"]', "humanInTheLoop:\n  requireApproval: [\"send:email\"]",
        "send:email", None, Effect.APPROVAL_REQUIRED, "humanInTheLoop.requireApproval",
        "approval required: 'send:email' matches 'send:email' in humanInTheLoop.requireApproval of policy 'p'",
        id="approval-beats-allow",
    ),
    pytest.param(
        '- effect: deny\n  actions: ["send:*"]', "humanInTheLoop:\n  requireApproval: [\"send:email\"]",
        "send:email", None, Effect.DENY, "#1 (send:*)", "denied by rule #1 (send:*)",
        id="deny-beats-approval",
    ),
    pytest.param(
        "[]", "humanInTheLoop:\n  requireApproval: [\"pay:*\"]",
        "pay:invoice", None, Effect.APPROVAL_REQUIRED, "humanInTheLoop.requireApproval", "approval required",
        id="approval-without-allow-rule-beats-default-deny",
    ),
    pytest.param(
        '- effect: allow\n  actions: ["send:*"]', "humanInTheLoop:\n  requireApproval: [\"send:email\"]",
        "send:sms", None, Effect.ALLOW, "#1 (send:*)", "allowed by rule #1 (send:*)",
        id="approval-pattern-not-matching-leaves-allow",
    ),
    pytest.param(
        '- effect: deny\n  actions: ["read:*"]\n  reason: nothing to read\n- id: z\n  effect: deny\n  actions: ["read:x"]',
        "", "read:x", None, Effect.DENY, "#1 (read:*)",
        "denied by rule #1 (read:*) in policy 'p': nothing to read", id="lowest-numbered-deny-is-reported",
    ),
    pytest.param(
        '- effect: allow\n  actions: ["write:a", "write:*"]', "", "write:a", None, Effect.ALLOW,
        "#1 (write:a)", "allowed by rule #1 (write:a)", id="first-matching-pattern-of-a-rule-is-reported",
    ),
]


@pytest.mark.parametrize(("rules", "extra", "action", "resource", "effect", "rule", "reason"), INSIDE_CASES)
def test_engine_inside_one_policy(
    rules: str, extra: str, action: str, resource: str | None, effect: Effect, rule: str | None, reason: str
) -> None:
    d = decide(engine(rules_policy(rules, extra)), action, resource)
    assert d.effect is effect
    assert d.policy == "p"
    assert d.rule == rule
    assert reason in d.reason


def test_engine_rule_order_never_matters() -> None:
    rules = [
        '- effect: allow\n  actions: ["execute:*"]',
        '- effect: deny\n  actions: ["execute:shell"]',
        '- effect: allow\n  actions: ["execute:shell"]\n  conditions: {sandbox: true}',
    ]
    import itertools

    for order in itertools.permutations(rules):
        e = engine(rules_policy("\n".join(order)))
        assert decide(e, "execute:shell", context={"sandbox": True}).effect is Effect.DENY
        assert decide(e, "execute:python").effect is Effect.ALLOW


# --------------------------------------------------------------------------- conditions

CONDITION_CASES = [
    # (conditions, action, resource, context, allowed)
    ('{resourcePattern: "workspace/*"}', "write:workspace", "notes.txt", None, True),  # qualified by object
    ('{resourcePattern: "workspace/*"}', "write:workspace", "a/b/c.txt", None, True),
    ('{resourcePattern: "workspace/*"}', "write:system", "/etc/passwd", None, False),
    ('{resourcePattern: "workspace/*"}', "write:workspace", None, None, False),  # no resource: cannot hold
    ('{resourcePattern: "*.txt"}', "write:workspace", "notes.txt", None, True),  # the bare resource
    ('{resourcePattern: "*.txt"}', "write:workspace", "notes.md", None, False),
    ("{sandbox: true}", "execute:python", None, {"sandbox": True}, True),
    ("{sandbox: true}", "execute:python", None, {"sandbox": False}, False),
    ("{sandbox: true}", "execute:python", None, None, False),  # unknown counts as false
    ("{sandbox: true}", "execute:python", None, {"sandbox": "true"}, False),  # only a real true
    ("{sandbox: false}", "execute:python", None, None, True),
    ("{sandbox: false}", "execute:python", None, {"sandbox": True}, False),
    ('{sandbox: true, resourcePattern: "x*"}', "execute:python", "xy", {"sandbox": True}, True),
    ('{sandbox: true, resourcePattern: "x*"}', "execute:python", "yy", {"sandbox": True}, False),
]


@pytest.mark.parametrize(("conditions", "action", "resource", "context", "allowed"), CONDITION_CASES)
def test_engine_allow_rule_conditions(
    conditions: str, action: str, resource: str | None, context: dict[str, object] | None, allowed: bool
) -> None:
    e = engine(rules_policy(f'- effect: allow\n  actions: ["{action}", "{action}/*"]\n  conditions: {conditions}'))
    assert decide(e, action, resource, context=context).allowed is allowed


def test_engine_conditions_restrict_deny_rules_too() -> None:
    e = engine(rules_policy(
        '- effect: allow\n  actions: ["execute:python"]\n'
        '- effect: deny\n  actions: ["execute:python"]\n  conditions: {sandbox: false}'
    ))
    assert decide(e, "execute:python", context={"sandbox": True}).effect is Effect.ALLOW
    d = decide(e, "execute:python")
    assert d.effect is Effect.DENY and d.rule == "#2 (execute:python)"


def test_engine_failed_condition_is_named_in_the_reason() -> None:
    e = engine(rules_policy('- effect: allow\n  actions: ["execute:python"]\n  conditions: {sandbox: true}'))
    d = decide(e, "execute:python", context={"sandbox": False})
    assert d.effect is Effect.DENY
    assert d.reason == (
        "no rule applies to 'execute:python' (rule #1 (execute:python): condition sandbox: true does not hold "
        "(context.sandbox is false or unknown)); default effect of policy 'p' is deny"
    )


# --------------------------------------------------------------------------- which policies apply

APPLIES_CASES = [
    # (appliesTo, agent, applies)
    ("{tags: [autogpt]}", AGENT, True),
    ("{tags: [autogpt, production]}", AGENT, False),  # every listed tag is needed
    ("{tags: [autogpt, production]}", PROD, True),
    ("{tags: [production]}", PROD, True),  # extra agent tags are fine
    ("{trustTiers: [verified, trusted]}", AGENT, True),
    ("{trustTiers: [trusted]}", AGENT, False),
    ("{agentIds: [agent_1]}", AGENT, True),  # by id
    ("{agentIds: [autogpt-agent]}", AGENT, True),  # or by name
    ("{agentIds: [agent_2]}", AGENT, False),
    ("{agentIds: [agent_1], tags: [production]}", AGENT, False),  # every selector must match
    ("{agentIds: [agent_1], trustTiers: [verified], tags: [autogpt]}", AGENT, True),
    ("{}", OTHER, True),  # no selector: every agent
]


@pytest.mark.parametrize(("applies_to", "agent", "applies"), APPLIES_CASES)
def test_engine_applies_to(applies_to: str, agent: Agent, applies: bool) -> None:
    e = engine(rules_policy('- effect: allow\n  actions: ["read:*"]', f"appliesTo: {applies_to}"))
    d = decide(e, "read:x", agent=agent)
    assert d.allowed is applies
    if not applies:
        assert d.policy is None
        assert d.reason.startswith(f"denied: no policy applies to agent '{agent.name}'")
    assert [p.name for p in e.applicable(agent)] == (["p"] if applies else [])


def test_engine_agent_whose_tags_change_gets_the_new_policies() -> None:
    e = engine(rules_policy('- effect: allow\n  actions: ["read:*"]', "appliesTo: {tags: [production]}"))
    assert not decide(e, "read:x", agent=AGENT).allowed
    retagged = Agent(AGENT.id, AGENT.name, AGENT.trust_tier, AGENT.tags | {"production"})
    assert decide(e, "read:x", agent=retagged).allowed
    assert not decide(e, "read:x", agent=AGENT).allowed


def test_engine_no_policy_at_all_denies() -> None:
    d = Engine(PolicySet()).decide(Request(AGENT, "read:x"), 0.0)
    assert d.effect is Effect.DENY
    assert d.reason == (
        "denied: no policy applies to agent 'autogpt-agent' (trust tier verified, tags: autogpt); "
        "nothing is allowed until one does"
    )


# --------------------------------------------------------------------------- across policies

def _policy(name: str, body: str) -> str:
    return f"name: {name}\n{textwrap.dedent(body)}"


ALLOW_ALL = "rules: [{effect: allow, actions: ['*:*']}]"
DENY_ALL = "rules: [{effect: deny, actions: ['*:*']}]"
APPROVE_ALL = "rules: []\nhumanInTheLoop: {requireApproval: ['*:*']}"
LIMIT_ONE = "rules: [{effect: allow, actions: ['*:*']}]\nrateLimits: {requestsPerMinute: 1}"


@pytest.mark.parametrize(
    ("bodies", "effect", "policy"),
    [
        ([ALLOW_ALL, ALLOW_ALL], Effect.ALLOW, "a"),
        ([ALLOW_ALL, DENY_ALL], Effect.DENY, "b"),
        ([DENY_ALL, ALLOW_ALL], Effect.DENY, "a"),
        ([ALLOW_ALL, APPROVE_ALL], Effect.APPROVAL_REQUIRED, "b"),
        ([APPROVE_ALL, DENY_ALL], Effect.DENY, "b"),
        ([LIMIT_ONE, APPROVE_ALL], Effect.RATE_LIMITED, "a"),  # RATE LIMITED > APPROVAL REQUIRED
        ([LIMIT_ONE, DENY_ALL], Effect.DENY, "b"),  # DENY > RATE LIMITED
        ([ALLOW_ALL, LIMIT_ONE], Effect.RATE_LIMITED, "b"),
    ],
)
def test_engine_across_policies_most_severe_wins(bodies: list[str], effect: Effect, policy: str) -> None:
    e = engine(*(_policy(n, b) for n, b in zip("ab", bodies)))
    if any("rateLimits" in b for b in bodies):
        e.decide(Request(AGENT, "read:first"), 0.0)  # use up the one request per minute
    d = decide(e, "read:x", now=1.0)
    assert d.effect is effect
    assert d.policy == policy


def test_engine_every_applicable_policy_must_allow() -> None:
    e = engine(
        _policy("broad", "rules: [{effect: allow, actions: ['read:*', 'write:*']}]"),
        _policy("narrow", "appliesTo: {tags: [production]}\nrules: [{effect: allow, actions: ['read:*']}]"),
    )
    assert decide(e, "write:x", agent=AGENT).allowed  # 'narrow' does not apply
    d = decide(e, "write:x", agent=PROD)
    assert d.effect is Effect.DENY
    assert d.policy == "narrow"
    assert d.reason == "no rule matches 'write:x'; default effect of policy 'narrow' is deny"


# --------------------------------------------------------------------------- refused requests

@pytest.mark.parametrize(
    ("action", "resource", "why"),
    [
        ("read:workspace", "../etc/passwd", "contains a '..' path segment"),
        ("read:workspace", "a/../../b", "contains a '..' path segment"),
        ("read:workspace", "a\\..\\b", "contains a '..' path segment"),
        ("read:workspace", "..", "contains a '..' path segment"),
        ("read:workspace", "notes\n.txt", "contains control characters"),
        ("read:workspace", "notes\x00", "contains control characters"),
        ("read:workspace", "a\x7f", "contains control characters"),
        ("read\x1b:workspace", None, "contains control characters"),
        ("read:workspace", "a\u202etxt.exe", "contains control characters"),
        ("read:workspace", "a\u2028b", "contains control characters"),
        ("write:workspace", "/etc/passwd", "is not a path relative to the workspace"),
        ("write:workspace", "~/.ssh/authorized_keys", "is not a path relative to the workspace"),
        ("write:workspace", "C:\\Windows\\x", "is not a path relative to the workspace"),
        ("write:workspace", "notes//today.txt", "empty or '.' path segment"),
        ("write:workspace", "./notes.txt", "empty or '.' path segment"),
        ("write:workspace/../../etc/cron.d/x", None, "path in the action"),
        ("write:workspace//etc/passwd", None, "is not a path relative to the workspace"),
        ("write:system", "/etc/../etc/passwd", "contains a '..' path segment"),
        ("readworkspace", None, "is not 'verb:object'"),
        (":workspace", None, "is not 'verb:object'"),
        ("read:", None, "is not 'verb:object'"),
        ("", None, "the action is missing"),
    ],
)
def test_engine_refuses_non_canonical_requests(action: str, resource: str | None, why: str) -> None:
    e = engine(rules_policy('- effect: allow\n  actions: ["*:*"]'))
    d = decide(e, action, resource)
    assert d.effect is Effect.DENY
    assert d.reason.startswith("denied: ")
    assert why in d.reason
    assert d.policy is None


@pytest.mark.parametrize("resource", ["a..b", "...", "notes..txt", "x/..y/z", "docs/a..b/c"])
def test_engine_accepts_dots_that_are_not_a_parent_segment(resource: str) -> None:
    e = engine(rules_policy('- effect: allow\n  actions: ["*:*"]'))
    assert decide(e, "read:workspace", resource).allowed


@pytest.mark.parametrize(
    ("action", "resource"),
    [
        ("write:workspace", "notes/today.txt"),
        ("write:workspace", "."),
        ("write:system", "/etc/hosts"),
        ("search:web", "C:\\ drive letters explained"),
        ("browse:web", "https://example.com//double//slashes"),
        ("write:workspace/notes/today.txt", None),
    ],
)
def test_engine_accepts_canonical_resources(action: str, resource: str | None) -> None:
    e = engine(rules_policy('- effect: allow\n  actions: ["*:*"]'))
    assert decide(e, action, resource).allowed


# --------------------------------------------------------------------------- the seed policies

@pytest.fixture
def seed() -> Engine:
    return Engine(load_policies(ROOT / "policies"))


def test_engine_seed_policies_load_cleanly() -> None:
    ps = load_policies(ROOT / "policies")
    assert sorted(ps.names) == ["autogpt-policy", "autogpt-production"]
    assert ps.warnings == ()


@pytest.mark.parametrize(
    ("agent", "action", "resource", "context", "effect", "reason"),
    [
        (AGENT, "browse:web", "https://example.com", None, Effect.ALLOW, "allowed"),
        (AGENT, "search:web", "python tutorials", None, Effect.ALLOW, "allowed"),
        (AGENT, "execute:shell", "rm -rf /", None, Effect.DENY, "denied by rule #4 (execute:shell)"),
        (AGENT, "write:workspace", "notes.txt", None, Effect.ALLOW, "write:workspace/*"),
        (AGENT, "read:workspace", "notes.txt", None, Effect.ALLOW, "allowed"),
        (AGENT, "delete:workspace", "notes.txt", None, Effect.DENY, "denied by rule #4 (delete:*)"),
        (AGENT, "delete:anything", None, None, Effect.DENY, "denied"),
        (AGENT, "write:system", "/etc/passwd", None, Effect.DENY, "denied by rule #4 (write:system/*)"),
        (AGENT, "pay:invoice", None, None, Effect.DENY, "denied"),
        (AGENT, "execute:python", None, None, Effect.ALLOW, "allowed"),
        (AGENT, "execute:unknown_plugin", None, None, Effect.DENY, "default effect of policy 'autogpt-policy'"),
        (OTHER, "browse:web", None, None, Effect.DENY, "no policy applies"),
        # production agents are governed by both policies
        (PROD, "send:email", "bob@example.com", None, Effect.DENY, "denied by rule #4 (send:*)"),
        (PROD, "pay:invoice", None, None, Effect.DENY, "denied by rule #4 (pay:*)"),
        (PROD, "post:social", None, None, Effect.DENY, "default effect of policy 'autogpt-policy' is deny"),
        (PROD, "execute:python", None, {"sandbox": True}, Effect.ALLOW, "allowed"),
        (PROD, "execute:python", None, {"sandbox": False}, Effect.DENY, "condition sandbox: true"),
        (PROD, "write:workspace", "notes.txt", None, Effect.ALLOW, "allowed"),
        (PROD, "write:system", "/etc/passwd", None, Effect.DENY, "denied"),
        (PROD, "admin:anything", None, None, Effect.DENY, "denied by rule #4 (admin:*)"),
    ],
)
def test_engine_seed_expected_answers(
    seed: Engine, agent: Agent, action: str, resource: str | None, context: dict[str, object] | None,
    effect: Effect, reason: str,
) -> None:
    d = decide(seed, action, resource, agent=agent, context=context)
    assert d.effect is effect, d.reason
    assert reason in d.reason
    if effect is Effect.DENY and "no policy" not in reason:
        assert "denied" in d.reason.lower() or "default effect" in d.reason


def test_engine_seed_31st_request_in_a_minute_is_rate_limited(seed: Engine) -> None:
    for i in range(30):
        assert decide(seed, "browse:web", f"https://example.com/{i}", now=100.0 + i).allowed
    d = decide(seed, "browse:web", "https://example.com/final", now=129.5)
    assert d.effect is Effect.RATE_LIMITED
    assert "rate" in d.reason.lower()
    assert d.reason == "rate limit exceeded: 30 requests per minute (policy 'autogpt-policy')"
    assert d.limit == "30 requests per minute"
    assert d.retry_after == pytest.approx(30.5)  # the first hit (t=100) leaves the window at t=160
    assert decide(seed, "browse:web", "u", now=160.0).allowed


def test_engine_seed_production_web_rule_limit_is_ten_per_minute(seed: Engine) -> None:
    for i in range(10):
        assert decide(seed, "search:web", f"q{i}", agent=PROD, now=float(i)).allowed
    d = decide(seed, "browse:web", "https://example.com", agent=PROD, now=10.0)
    assert d.effect is Effect.RATE_LIMITED
    assert d.reason == (
        "rate limit exceeded: 10 requests per minute (rule #1 (browse:web) in policy 'autogpt-production')"
    )
    assert d.policy == "autogpt-production" and d.rule == "#1 (browse:web)"
    assert d.retry_after == pytest.approx(50.0)
    # other actions of the same agent are not held back by the rule's limit
    assert decide(seed, "read:workspace", "notes.txt", agent=PROD, now=10.0).allowed


# --------------------------------------------------------------------------- explain, reload, output

def test_engine_explain_consumes_no_budget_and_lists_matches(seed: Engine) -> None:
    for i in range(29):
        decide(seed, "browse:web", now=float(i))
    for _ in range(5):
        assert seed.explain(Request(AGENT, "browse:web"), 30.0).allowed
    assert decide(seed, "browse:web", now=30.0).allowed  # the 30th
    assert decide(seed, "browse:web", now=30.0).effect is Effect.RATE_LIMITED
    d = seed.explain(Request(PROD, "execute:python", None, {"sandbox": False}), 30.0)
    details = {o.policy: o for o in d.details}
    assert set(details) == {"autogpt-policy", "autogpt-production"}
    prod = details["autogpt-production"]
    assert prod.effect is Effect.DENY
    assert [(m.rule, m.applied) for m in prod.matched] == [("#3 (execute:python)", False)]
    assert "sandbox" in (prod.matched[0].note or "")
    assert details["autogpt-policy"].effect is Effect.ALLOW
    assert [(m.rule, m.effect) for m in details["autogpt-policy"].matched] == [("#3 (execute:python)", "allow")]


def test_engine_decide_has_no_details(seed: Engine) -> None:
    assert decide(seed, "browse:web").details == ()


def test_engine_with_policies_keeps_counters(seed: Engine) -> None:
    for i in range(30):
        assert decide(seed, "browse:web", now=float(i)).allowed
    reloaded = seed.with_policies(load_policies(ROOT / "policies"))
    assert reloaded.limiter is seed.limiter
    assert decide(reloaded, "browse:web", now=31.0).effect is Effect.RATE_LIMITED


def test_engine_with_policies_uses_the_new_rules(seed: Engine) -> None:
    new = seed.with_policies(parse_policies([("x.yaml", "name: x\nrules: [{effect: allow, actions: ['execute:shell']}]")]))
    assert decide(new, "execute:shell").allowed
    assert not decide(seed, "execute:shell").allowed


def test_engine_decision_to_dict_is_json(seed: Engine) -> None:
    for i in range(30):
        decide(seed, "browse:web", now=0.0)
    d = decide(seed, "browse:web", now=1.0)
    body = json.loads(json.dumps(d.to_dict()))
    assert body == {
        "decision": "rate_limited",
        "allowed": False,
        "reason": "rate limit exceeded: 30 requests per minute (policy 'autogpt-policy')",
        "policy": "autogpt-policy",
        "rule": None,
        "retry_after": 59.0,
        "limit": "30 requests per minute",
    }
    explained = json.loads(json.dumps(seed.explain(Request(PROD, "send:email"), 1.0).to_dict()))
    assert explained["decision"] == "deny"
    assert {d["policy"] for d in explained["details"]} == {"autogpt-policy", "autogpt-production"}
    assert Effect("allow") is Effect.ALLOW and str(Effect.RATE_LIMITED) == "rate_limited"
    assert json.dumps({"d": Effect.DENY}) == '{"d": "deny"}'  # a str enum serialises as its value


def test_engine_agent_tags_may_be_any_iterable() -> None:
    agent = Agent("a", tags=["autogpt"])  # type: ignore[arg-type]
    assert agent.tags == frozenset({"autogpt"})
    e = engine(rules_policy('- effect: allow\n  actions: ["read:*"]', "appliesTo: {tags: [autogpt]}"))
    assert decide(e, "read:x", agent=agent).allowed


def test_engine_many_rules_only_matching_ones_decide() -> None:
    rules = "\n".join(f'- effect: allow\n  actions: ["verb{i}:object{i}", "verb{i}:dir{i}/*"]' for i in range(500))
    rules += '\n- effect: deny\n  actions: ["verb7:*"]\n- effect: deny\n  actions: ["*:object9"]'
    e = engine(rules_policy(rules))
    assert decide(e, "verb3:object3").allowed
    assert decide(e, "verb3:dir3", "a/b").allowed
    assert not decide(e, "verb3:dir4", "a/b").allowed
    assert decide(e, "verb7:object7").rule == "#501 (verb7:*)"
    assert decide(e, "verb9:object9").rule == "#502 (*:object9)"
    assert not decide(e, "verb3:object4").allowed


def test_engine_accepts_a_plain_list_of_policies() -> None:
    p = parse_policy("name: x\nrules: [{effect: allow, actions: ['read:*']}]")
    e = Engine([p], limiter=SlidingWindowLimiter())
    assert decide(e, "read:a").allowed


def test_engine_failed_deny_condition_is_not_given_as_the_reason() -> None:
    e = engine(rules_policy('- effect: deny\n  actions: ["execute:python"]\n  conditions: {sandbox: false}'))
    d = decide(e, "execute:python", context={"sandbox": True})
    assert d.reason == "no rule matches 'execute:python'; default effect of policy 'p' is deny"


def _doc_yaml_blocks() -> list[str]:
    import re

    text = (ROOT / "docs" / "policies.md").read_text(encoding="utf-8")
    return re.findall(r"```yaml\n(.*?)```", text, flags=re.S)


def test_engine_docs_policy_examples_load_and_mean_what_the_docs_say() -> None:
    blocks = _doc_yaml_blocks()
    assert len(blocks) >= 4
    for block in blocks:
        if block.startswith("name:"):
            parse_policy(block, "docs/policies.md")
        elif block.startswith("rules:"):
            parse_policy("name: doc\n" + block, "docs/policies.md")
        else:
            parse_policy("name: doc\nrules: []\n" + block, "docs/policies.md")
    full = next(b for b in blocks if b.startswith("name: autogpt-policy"))
    assert parse_policy(full).to_dict() == load_policies(ROOT / "policies" / "autogpt.yaml").policies[0].to_dict() | {
        "source": "<string>"
    }
    sandbox = engine("name: doc\n" + next(b for b in blocks if "sandbox: false" in b))
    assert decide(sandbox, "execute:python", context={"sandbox": True}).allowed
    assert "run code in a container" in decide(sandbox, "execute:python").reason
    first_match = engine("name: p\n" + next(b for b in blocks if "allow-execute" in b))
    d = decide(first_match, "execute:shell")
    assert d.reason == "denied by rule 'deny-shell' (execute:shell) in policy 'p'"
