"""Policy parsing and validation: every problem at once, located by file, line, column, rule and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshguard_gateway.errors import PolicyError, Problem
from meshguard_gateway.policy import (
    AppliesTo,
    PolicySet,
    RateLimit,
    compile_pattern,
    load_policies,
    parse_policies,
    parse_policy,
)

ROOT = Path(__file__).resolve().parent.parent

GOOD = """\
name: good
version: "1.0"
description: A policy
appliesTo:
  tags: [autogpt]
  trustTiers: [verified]
  agentIds: [agent_1, bot]
rules:
  - id: web
    effect: allow
    actions: ["browse:*", "search:web"]
    reason: research
    conditions:
      rateLimit: {requestsPerMinute: 10}
  - effect: allow
    actions: ["write:workspace/*"]
    conditions: {resourcePattern: "workspace/*", sandbox: false}
  - effect: deny
    actions: ["execute:shell"]
defaultEffect: deny
rateLimits:
  requestsPerMinute: 30
  requestsPerHour: 500
humanInTheLoop:
  requireApproval: ["send:email"]
"""


def problems(text: str, source: str = "p.yaml") -> list[str]:
    with pytest.raises(PolicyError) as info:
        parse_policy(textwrap.dedent(text), source)
    return [str(p) for p in info.value.problems]


def test_policy_parses_every_field() -> None:
    p = parse_policy(GOOD, "good.yaml")
    assert p.name == "good" and p.version == "1.0" and p.description == "A policy"
    assert p.applies_to == AppliesTo(frozenset({"agent_1", "bot"}), frozenset({"verified"}), frozenset({"autogpt"}))
    assert p.default_effect == "deny"
    assert p.rate_limit == RateLimit(30, 500)
    assert [a.text for a in p.require_approval] == ["send:email"]
    web, files, shell = p.rules
    assert (web.index, web.id, web.effect, web.reason, web.line) == (1, "web", "allow", "research", 9)
    assert [a.text for a in web.actions] == ["browse:*", "search:web"]
    assert web.rate_limit == RateLimit(10, None)
    assert files.resource_pattern is not None and files.resource_pattern.text == "workspace/*"
    assert files.sandbox is False
    assert shell.effect == "deny" and shell.id is None
    assert p.source == "good.yaml" and p.text == GOOD
    assert p.warnings == ()


def test_policy_to_dict_round_trips() -> None:
    import yaml

    p = parse_policy(GOOD, "good.yaml")
    d = p.to_dict()
    assert d["source"] == "good.yaml"
    assert d["rules"][0] == {
        "id": "web", "effect": "allow", "actions": ["browse:*", "search:web"],
        "conditions": {"rateLimit": {"requestsPerMinute": 10}}, "reason": "research",
    }
    del d["source"]
    again = parse_policy(yaml.safe_dump(d), "again.yaml")
    assert again.to_dict() == {**d, "source": "again.yaml"}


def test_policy_minimal_defaults() -> None:
    p = parse_policy("name: tiny\nrules: []\n")
    assert p.default_effect == "deny" and p.rules == () and p.rate_limit is None
    assert p.applies_to == AppliesTo()
    assert p.source == "<string>"


def test_policy_version_may_be_a_number() -> None:
    assert parse_policy("name: v\nversion: 1.0\nrules: []").version == "1.0"


# --------------------------------------------------------------------------- exact messages

VALIDATION_CASES = [
    pytest.param("", ["p.yaml: the file is empty; a policy needs at least 'name' and 'rules'"], id="empty-file"),
    pytest.param("- a\n", ["p.yaml:1:1: the policy must be a mapping (key: value), got a list"], id="top-level-list"),
    pytest.param(
        "name: p\nrules: []\n---\nname: q\nrules: []\n",
        ["p.yaml:4: one policy per file: found more than one YAML document ('---')"], id="two-documents",
    ),
    pytest.param(
        "rules: []\n", ["p.yaml:1:1: missing required key 'name'"], id="missing-name",
    ),
    pytest.param(
        "name: p\n", ["p.yaml:1:1: missing required key 'rules' (a list; it may be empty: rules: [])"],
        id="missing-rules",
    ),
    pytest.param(
        "name: p\nrule: []\nrules: []\n",
        ["p.yaml:2:1: unknown key 'rule' in the policy (known: appliesTo, audit, defaultEffect, delegation, "
         "description, humanInTheLoop, name, rateLimits, rules, version)"],
        id="unknown-top-level-key",
    ),
    pytest.param(
        "name: p\nname: q\nrules: []\n", ["p.yaml:2:1: duplicate key 'name' (first given on line 1)"],
        id="duplicate-key",
    ),
    pytest.param(
        "name: [p]\nrules: []\n", ["p.yaml:1:7: 'name' must be text, got a list"], id="name-wrong-type",
    ),
    pytest.param(
        "name: p\nrules: {effect: allow}\n", ["p.yaml:2:8: 'rules' must be a list of rules, got a mapping"],
        id="rules-wrong-type",
    ),
    pytest.param(
        "name: p\nrules: []\ndefaultEffect: block\n",
        ["p.yaml:3:16: 'defaultEffect' must be 'allow' or 'deny', got text 'block'"], id="bad-default-effect",
    ),
    pytest.param(
        "name: p\nrules:\n  - effect: permit\n    actions: [\"a:b\"]\n",
        ["p.yaml:3:13: rule 1: 'effect' must be 'allow' or 'deny', got text 'permit'"], id="bad-rule-effect",
    ),
    pytest.param(
        "name: p\nrules:\n  - effect: allow\n    actions: []\n",
        ["p.yaml:4:14: rule 1: 'actions' is empty; list at least one 'verb:object' pattern"],
        id="empty-actions",
    ),
    pytest.param(
        "name: p\nrules:\n  - effect: allow\n",
        ["p.yaml:3:5: rule 1: missing required key 'actions' (a list of 'verb:object' patterns)"],
        id="missing-actions",
    ),
    pytest.param(
        "name: p\nrules:\n  - actions: [\"a:b\"]\n",
        ["p.yaml:3:5: rule 1: missing required key 'effect' ('allow' or 'deny')"], id="missing-effect",
    ),
    pytest.param(
        "name: p\nrules:\n  - effect: allow\n    actions: \"read:*\"\n",
        ["p.yaml:4:14: rule 1: 'actions' must be a list of patterns, got text 'read:*'; "
         "write it as a list: ['read:*']"],
        id="actions-as-text",
    ),
    pytest.param(
        "name: p\nrules:\n  - id: no-rm\n    effect: allow\n    actions: [\"read\", \"*\", \"r:[ab]\", \"r: x\", 5, \"web/x:y\"]\n",
        [
            "p.yaml:5:15: rule 1 ('no-rm'): pattern 'read' is not 'verb:object' or 'verb:object/path'",
            "p.yaml:5:23: rule 1 ('no-rm'): pattern '*' is not 'verb:object' or 'verb:object/path' "
            "(to match everything write '*:*')",
            "p.yaml:5:28: rule 1 ('no-rm'): pattern 'r:[ab]' contains one of '[]{}'; only '*' and '?' are wildcards",
            "p.yaml:5:38: rule 1 ('no-rm'): pattern 'r: x' contains whitespace or control characters",
            "p.yaml:5:46: rule 1 ('no-rm'): pattern must be text, got int 5",
            "p.yaml:5:49: rule 1 ('no-rm'): pattern 'web/x:y' is not 'verb:object' or 'verb:object/path'",
        ],
        id="malformed-patterns",
    ),
    pytest.param(
        "name: p\nrules:\n  - effect: allow\n    actions: [\"a:b\"]\n    conditions:\n      sandbx: true\n",
        ["p.yaml:6:7: rule 1: unknown condition 'sandbx' in 'conditions' (known: amount_max, amount_min, anyCommand, commands, context, hosts, publicAddress, rateLimit, resource, resourcePattern, sandbox, schemes, tags, time_range)"],
        id="unknown-condition",
    ),
    pytest.param(
        "name: p\nrules:\n  - effect: allow\n    actions: [\"a:b\"]\n    when: x\n",
        ["p.yaml:5:5: rule 1: unknown key 'when' in a rule (known: actions, conditions, description, effect, id, reason)"],
        id="unknown-rule-key",
    ),
    pytest.param(
        "name: p\nrules:\n  - effect: allow\n    actions: [\"a:b\"]\n    conditions: {sandbox: \"yes\"}\n",
        ["p.yaml:5:27: rule 1: 'sandbox' must be true or false, got text 'yes'"], id="sandbox-wrong-type",
    ),
    pytest.param(
        "name: p\nrules:\n  - effect: allow\n    actions: [\"a:b\"]\n    conditions:\n      rateLimit:\n"
        "        requestsPerMinute: 0\n        requestsPerHour: -5\n",
        ["p.yaml:7:28: rule 1: 'requestsPerMinute' must be a positive whole number, got 0",
         "p.yaml:8:26: rule 1: 'requestsPerHour' must be a positive whole number, got -5"],
        id="zero-and-negative-rule-limits",
    ),
    pytest.param(
        "name: p\nrules: []\nrateLimits:\n  requestsPerMinute: 1.5\n  perDay: 3\n",
        ["p.yaml:4:22: 'requestsPerMinute' must be a positive whole number, got float 1.5",
         "p.yaml:5:3: unknown key 'perDay' in 'rateLimits' (known: per, requestsPerHour, requestsPerMinute)"],
        id="bad-policy-limits",
    ),
    pytest.param(
        "name: p\nrules: []\nrateLimits: {requestsPerHour: 1000001}\n",
        ["p.yaml:3:31: 'requestsPerHour' must be at most 1,000,000, got 1,000,001 (leave it out for no limit)"],
        id="limit-too-large",
    ),
    pytest.param(
        "name: p\nrules: []\nrateLimits: {}\n",
        ["p.yaml:3:13: 'rateLimits' is empty; give requestsPerMinute and/or requestsPerHour"], id="empty-limits",
    ),
    pytest.param(
        "name: p\nrules: []\nrateLimits: {requestsPerMinute: true}\n",
        ["p.yaml:3:33: 'requestsPerMinute' must be a positive whole number, got the boolean true"], id="limit-is-bool",
    ),
    pytest.param(
        "name: p\nrules:\n  - effect: deny\n    actions: [\"a:b\"]\n    conditions: {rateLimit: {requestsPerMinute: 3}}\n",
        ["p.yaml:5:18: rule 1: 'rateLimit' only applies to allow rules (a deny rule always denies)"],
        id="rate-limit-on-deny-rule",
    ),
    pytest.param(
        "name: p\nrules:\n  - {id: x, effect: allow, actions: [\"a:b\"]}\n  - {id: x, effect: deny, actions: [\"c:d\"]}\n",
        ["p.yaml:4:10: rule 2 ('x'): duplicate rule id 'x' (also rule 1)"], id="duplicate-rule-id",
    ),
    pytest.param(
        "name: p\nrules:\n  - just text\n", ["p.yaml:3:5: rule 1: a rule must be a mapping (key: value), got text 'just text'"],
        id="rule-not-a-mapping",
    ),
    pytest.param(
        "name: p\nrules: []\nappliesTo:\n  tags: []\n  trustTiers: [gold]\n  groups: [a]\n",
        ["p.yaml:4:9: 'appliesTo.tags' is empty; remove it to select every agent",
         "p.yaml:5:16: unknown trust tier 'gold' (known: unverified, verified, trusted, privileged)",
         "p.yaml:6:3: unknown key 'groups' in 'appliesTo' (known: agentIds, tags, trustTiers)"],
        id="bad-applies-to",
    ),
    pytest.param(
        "name: p\nrules: []\nappliesTo:\n  tags: autogpt\n",
        ["p.yaml:4:9: 'appliesTo.tags' must be a list of text, got text 'autogpt'"], id="tags-not-a-list",
    ),
    pytest.param(
        "name: p\nrules: []\nhumanInTheLoop:\n  requireApproval: [\"pay\"]\n  approvers: [x]\n",
        ["p.yaml:4:21: pattern 'pay' is not 'verb:object' or 'verb:object/path'",
         "p.yaml:5:3: unknown key 'approvers' in 'humanInTheLoop' (known: requireApproval)"],
        id="bad-human-in-the-loop",
    ),
    pytest.param(
        "base: &b {effect: allow}\nname: p\nrules:\n  - <<: *b\n    actions: [\"a:b\"]\n",
        ["p.yaml:1:1: unknown key 'base' in the policy (known: appliesTo, audit, defaultEffect, delegation, "
         "description, humanInTheLoop, name, rateLimits, rules, version)",
         "p.yaml:4:5: rule 1: YAML merge keys ('<<') are not supported; write the keys out",
         "p.yaml:4:5: rule 1: missing required key 'effect' ('allow' or 'deny')"],
        id="merge-keys",
    ),
    pytest.param(
        "name: \"a\\nb\"\nrules: []\n",
        ["p.yaml:1:7: 'name' must not contain control characters (line breaks, tabs, ...)"], id="name-control-chars",
    ),
    pytest.param(
        "name: p\nrules: []\ndefaultEffect: no\n",
        ["p.yaml:3:16: 'defaultEffect' must be 'allow' or 'deny', got the boolean no"], id="yaml-boolean-no",
    ),
    pytest.param(
        "name: p\nrules: []\ndescription:\n", ["p.yaml:3:13: 'description' must be text, got nothing (null)"],
        id="null-value",
    ),
    pytest.param(
        "name: p\nrules: []\n5: x\n", ["p.yaml:3:1: the policy has a key that is not text: int 5"],
        id="non-text-key",
    ),
    pytest.param(
        "name: p\nrules:\n  - effect: allow\n    actions: [\"a:b\"]\n    conditions: {resourcePattern: \"\"}\n",
        ["p.yaml:5:35: rule 1: pattern must not be empty"], id="empty-resource-pattern",
    ),
]


# Problems whose reason is PyYAML's (libyaml's) own words: those words change between PyYAML
# builds, so only what we add is asserted: file, line and column, and what kind of problem it is.
LIBRARY_WORDED_CASES = [
    pytest.param("name: p\nrules:\n  - effect: allow\n    actions: [\"read:*\"\n",
                 "p.yaml:5:1: YAML syntax error: ", id="yaml-syntax-line-and-column"),
    pytest.param("name: p\nrules:\n - effect: allow\n  actions: [a:b]\n",
                 "p.yaml:4:3: YAML syntax error: ", id="yaml-bad-indentation"),
    pytest.param("name: p\nrules: []\nx: \x00\n",
                 "p.yaml:3:4: YAML syntax error: character #x0000 is not allowed in YAML", id="nul-character"),
    pytest.param("name: p\nrules: []\ndelegation: !custom x\n",
                 "p.yaml:3:13: cannot read this value: ", id="unknown-yaml-tag"),
    pytest.param("name: p\nrules: []\ndelegation: &a [*a]\n",
                 "p.yaml:3:13: cannot read this value: ", id="recursive-alias"),
]


@pytest.mark.parametrize(("text", "prefix"), LIBRARY_WORDED_CASES)
def test_policy_yaml_problems_name_file_line_and_column(text: str, prefix: str) -> None:
    [problem] = problems(text)
    assert problem.startswith(prefix) and len(problem) > len(prefix) + 5, problem


@pytest.mark.parametrize(("text", "expected"), VALIDATION_CASES)
def test_policy_validation_messages(text: str, expected: list[str]) -> None:
    assert problems(text) == expected


def test_policy_reports_every_problem_at_once_with_rule_and_key() -> None:
    text = """\
    name: p
    rules:
      - effect: allow
        actions: ["read:*"]
      - id: deny-shell
        effect: deny
        actions: ["execute:shell"]
        conditions:
          sandbx: true
      - effect: maybe
        actions: []
    defaultEffect: block
    """
    with pytest.raises(PolicyError) as info:
        parse_policy(textwrap.dedent(text), "policies/autogpt.yaml")
    got = [(p.source, p.line, p.column, p.rule, p.key) for p in info.value.problems]
    assert got == [
        ("policies/autogpt.yaml", 9, 7, "2 ('deny-shell')", "conditions.sandbx"),
        ("policies/autogpt.yaml", 10, 13, "3", "effect"),
        ("policies/autogpt.yaml", 11, 14, "3", "actions"),
        ("policies/autogpt.yaml", 12, 16, None, "defaultEffect"),
    ]
    assert str(info.value).splitlines() == [
        "policies/autogpt.yaml:9:7: rule 2 ('deny-shell'): unknown condition 'sandbx' in 'conditions' "
        "(known: amount_max, amount_min, anyCommand, commands, context, hosts, publicAddress, rateLimit, resource, resourcePattern, sandbox, schemes, tags, time_range)",
        "policies/autogpt.yaml:10:13: rule 3: 'effect' must be 'allow' or 'deny', got text 'maybe'",
        "policies/autogpt.yaml:11:14: rule 3: 'actions' is empty; list at least one 'verb:object' pattern",
        "policies/autogpt.yaml:12:16: 'defaultEffect' must be 'allow' or 'deny', got text 'block'",
        "4 errors in policies/autogpt.yaml; nothing was loaded.",
    ]
    assert info.value.code == "invalid_policy" and info.value.status == 400
    assert info.value.to_json()["errors"] == str(info.value).splitlines()[:-1]


def test_policy_delegation_is_accepted_with_a_warning() -> None:
    p = parse_policy("name: p\nrules: []\ndelegation:\n  maxDepth: 2\n  permissionCeiling: [\"read:*\"]\n", "d.yaml")
    assert p.delegation == {"maxDepth": 2, "permissionCeiling": ["read:*"]}
    assert [str(w) for w in p.warnings] == [
        "d.yaml:3:1: warning: 'delegation' is accepted but not enforced by this gateway"
    ]
    assert PolicySet((p,)).warnings == p.warnings


# --------------------------------------------------------------------------- sets and files

def test_policy_duplicate_names_across_a_set() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policies([("a.yaml", "name: same\nrules: []\n"), ("b.yaml", "# x\nname: same\nrules: []\n")])
    assert [str(p) for p in info.value.problems] == [
        "b.yaml:2: policy name 'same' is already used by a.yaml; policy names must be unique"
    ]


def test_policy_set_rejects_duplicate_names_built_in_code() -> None:
    p = parse_policy("name: same\nrules: []\n")
    with pytest.raises(PolicyError, match="policy name 'same' is already used"):
        PolicySet((p, p))


def test_policy_set_with_policy_and_without() -> None:
    a = parse_policy("name: a\nrules: []\n")
    b = parse_policy("name: b\nrules: []\n")
    a2 = parse_policy("name: a\nrules: []\ndefaultEffect: allow\n")
    s = PolicySet((a,)).with_policy(b).with_policy(a2)
    assert s.names == ("a", "b") and s.get("a") is a2 and "b" in s and len(s) == 2
    assert s.without("a").names == ("b",)
    assert s.get("zzz") is None


def test_policy_parse_policies_collects_problems_from_every_source() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policies({"a.yaml": "name: a\nrules: x\n", "b.yaml": "name: b\nrules: []\ndefaultEffect: no\n"})
    assert [str(p) for p in info.value.problems] == [
        "a.yaml:2:8: 'rules' must be a list of rules, got text 'x'",
        "b.yaml:3:16: 'defaultEffect' must be 'allow' or 'deny', got the boolean no",
    ]
    assert str(info.value).endswith("2 errors in a.yaml, b.yaml; nothing was loaded.")


def test_policy_load_directory_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("name: second\nrules: []\n")
    (tmp_path / "a.yml").write_text("name: first\nrules: []\n")
    (tmp_path / ".hidden.yaml").write_text("not: a policy\n")
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("name: nested\nrules: []\n")
    s = load_policies(tmp_path)
    assert s.names == ("first", "second")
    assert s.get("first").source == str(tmp_path / "a.yml")  # type: ignore[union-attr]


def test_policy_load_single_file(tmp_path: Path) -> None:
    f = tmp_path / "one.yaml"
    f.write_text("name: one\nrules: []\n")
    assert load_policies(str(f)).names == ("one",)


def test_policy_load_directory_is_all_or_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: good\nrules: []\n")
    before = load_policies(tmp_path)
    (tmp_path / "b.yaml").write_text("name: bad\nrules:\n  - effect: allow\n    actions: [\"read\"]\n")
    with pytest.raises(PolicyError) as info:
        load_policies(tmp_path)
    assert str(info.value).splitlines() == [
        f"{tmp_path / 'b.yaml'}:4:15: rule 1: pattern 'read' is not 'verb:object' or 'verb:object/path'",
        f"1 error in {tmp_path / 'b.yaml'}; nothing was loaded.",
    ]
    assert before.names == ("good",)  # the caller's previous set is untouched


def test_policy_load_missing_path(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_policies(tmp_path / "nope")
    assert info.value.problems == [
        Problem(str(tmp_path / "nope"), "no such file or directory; give a policy file or a directory of them")
    ]


def test_policy_load_non_utf8_file(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_bytes(b"name: \xff\nrules: []\n")
    with pytest.raises(PolicyError, match=r"bad.yaml: not UTF-8 text \(invalid start byte at byte 6\)"):
        load_policies(tmp_path)


def test_policy_load_empty_directory_gives_empty_set(tmp_path: Path) -> None:
    assert len(load_policies(tmp_path)) == 0


def test_policy_repository_policies_load() -> None:
    s = load_policies(ROOT / "policies")
    assert set(s.names) == {"autogpt-policy", "autogpt-production"}
    prod = s.get("autogpt-production")
    assert prod is not None
    assert prod.applies_to.tags == frozenset({"autogpt", "production"})
    assert [p.text for p in prod.require_approval] == ["send:email", "post:social", "pay:*"]
    assert prod.rules[0].rate_limit == RateLimit(10, None)
    assert prod.rate_limit == RateLimit(30, 300)


# --------------------------------------------------------------------------- compiled patterns

@pytest.mark.parametrize(
    ("pattern", "prefix", "literal"),
    [("read:*", "read:", False), ("execute:shell", "execute:shell", True), ("*:email", "", False),
     ("wr?te:x", "wr", False), ("write:workspace/*", "write:workspace/", False)],
)
def test_policy_compiled_pattern_prefix(pattern: str, prefix: str, literal: bool) -> None:
    p = compile_pattern(pattern)
    assert p.prefix == prefix
    assert (p.regex is None) is literal
    assert p.matches(pattern.replace("*", "").replace("?", "i"))


def test_policy_pattern_star_runs_are_linear() -> None:
    p = compile_pattern("a:" + "*a" * 30 + "*b")
    assert not p.matches("a:" + "a" * 5000)  # no catastrophic backtracking blow-up in practice


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_policy_parser_never_fails_with_anything_but_policy_error(data: st.DataObject) -> None:
    """Random edits of a valid policy either load or raise PolicyError with located problems."""
    text = GOOD
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        j = data.draw(st.integers(i, min(len(text), i + 12)))
        text = text[:i] + data.draw(st.text(alphabet=" :-[]{}\"'*?#&!|>\n\tab01", max_size=6)) + text[j:]
    try:
        parse_policy(text, "fuzz.yaml")
    except PolicyError as exc:
        assert exc.problems
        assert all(p.source == "fuzz.yaml" for p in exc.problems)
        assert str(exc).endswith("nothing was loaded.")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("name: p\nrules: " + "[" * 100_000 + "]" * 100_000, "p.yaml:2:71"),
        ("name: p\nrules: " + "{a: " * 30_000 + "1" + "}" * 30_000, "p.yaml:2:260"),
        ("name: p\nrules: " + "- " * 30_000 + "x", None),
    ],
    ids=["flow-lists", "flow-mappings", "block-lists"],
)
def test_policy_deep_nesting_is_an_error_not_a_crash(text: str, where: str | None) -> None:
    """PyYAML's C composer recurses; 30,000 '[' (60 KB) used to kill the process."""
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.yaml")
    if where is not None:
        assert str(info.value).startswith(f"{where}: nested more than 64 levels deep")


def test_policy_lines_are_counted_by_newline_only() -> None:
    """YAML also breaks lines at NEL (U+0085); editors and grep do not, so neither do we."""
    text = "name: p\ndescription: \"a\x85b\"\nrules:\n  - effect: block\n    actions: [\"a:b\"]\n"
    assert problems(text) == ["p.yaml:4:13: rule 1: 'effect' must be 'allow' or 'deny', got text 'block'"]


def test_policy_messages_shorten_and_escape_user_text() -> None:
    long = "x" * 500
    assert problems(f"name: p\nrules: []\ndefaultEffect: {long}\n") == [
        f"p.yaml:3:16: 'defaultEffect' must be 'allow' or 'deny', got text '{'x' * 57}...'"
    ]
    assert problems('name: p\nrules:\n  - effect: allow\n    actions: ["a:\\tb"]\n') == [
        "p.yaml:4:15: rule 1: pattern 'a:\\x09b' contains whitespace or control characters"
    ]
