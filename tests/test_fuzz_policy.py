"""Fuzzing the policy loader: any input loads, or raises PolicyError that says where.

--soak (or MESHGUARD_SOAK=1) runs ten times the examples.

"Where" is the source name plus a line (and column) for every problem, except for a document with
no content at all (then the file itself is the location) and undecodable bytes (then the byte
offset). Nothing else may escape: no YAML exception, no TypeError, no RecursionError, no crash.
A policy that loads must also be usable: serialisable and able to decide a request.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import assume
from hypothesis import strategies as st

from meshguard_gateway.engine import Agent, Engine, Request
from meshguard_gateway.errors import PolicyError
from meshguard_gateway.policy import Policy, PolicySet, load_policies, parse_policies, parse_policy
from tests.reliability.figures import record
from tests.reliability.soak import run_examples

ROOT = Path(__file__).resolve().parent.parent
SEEDS = {p.name: p.read_text(encoding="utf-8") for p in sorted((ROOT / "policies").glob("*.yaml"))}
COUNTS = {"cases": 0, "loaded": 0, "refused_with_location": 0}
AGENT = Agent("agent_0123456789abcdef", "fuzz-bot", "verified", frozenset({"autogpt", "production", "x"}))


@pytest.fixture(scope="module", autouse=True)
def _figures() -> Iterator[None]:
    yield
    record("policy_fuzz", fuzz_cases=COUNTS["cases"], loaded=COUNTS["loaded"],
           refused_with_location=COUNTS["refused_with_location"], other_exceptions=0)  # fmt: skip


def content_free(text: str) -> bool:
    """No YAML content: empty, blank, comments, a bare document marker, or a null."""
    try:
        return all(node is None for node in yaml.compose_all(text, Loader=yaml.SafeLoader)) or not text.strip()
    except yaml.YAMLError:
        return False


def check_text(text: str, source: str = "fuzz.yaml") -> None:
    """parse_policy(text): a Policy (usable) or a PolicyError whose problems are all located."""
    COUNTS["cases"] += 1
    try:
        policy = parse_policy(text, source=source)
    except PolicyError as exc:
        assert_located(exc, {source: text})
        COUNTS["refused_with_location"] += 1
        return
    assert isinstance(policy, Policy)
    assert_usable(PolicySet((policy,)))
    COUNTS["loaded"] += 1


def assert_located(exc: PolicyError, texts: dict[str, str]) -> None:
    assert exc.problems, "a PolicyError without problems"
    for problem in exc.problems:
        assert problem.source in texts, (problem.source, list(texts))
        assert problem.message and str(problem).startswith(problem.source)
        text = texts[problem.source]
        if problem.line is None:
            assert content_free(text) or re.search(r"at byte \d+", problem.message), (
                f"problem without a line: {problem} (text {text!r:.200})")
            continue
        assert 1 <= problem.line <= text.count("\n") + text.count("\r") + 2, (problem, text.count("\n"))
        assert problem.column is None or problem.column >= 1, problem
    assert exc.problems[0].source in str(exc)


def assert_usable(policies: PolicySet) -> None:
    for p in policies:
        json.dumps(p.to_dict())
    engine = Engine(policies)
    for action, resource in (("read:workspace", "a.txt"), ("execute:shell", "ls"), ("send:email", None),
                             ("write:workspace", "x/y"), ("weird:thing", "*"), ("browse:web", "https://a.example/x"),
                             ("execute:shell", "ls; rm $(x) > y"), ("write:refund", "1")):  # fmt: skip
        d = engine.decide(Request(AGENT, action, resource, {"sandbox": True}), time.time())
        assert d.effect.value in ("allow", "deny", "rate_limited", "approval_required")
        engine.explain(Request(AGENT, action, resource, None), time.time())


# ---- strategies -----------------------------------------------------------------------------

KEYS = ["name", "version", "description", "appliesTo", "rules", "defaultEffect", "rateLimits", "humanInTheLoop",
        "effect", "actions", "conditions", "resourcePattern", "sandbox", "rateLimit", "requestsPerMinute",
        "requestsPerHour", "requireApproval", "tags", "trustTiers", "agentIds", "id", "reason", "agents", "x",
        "resource", "contains", "matches", "not_matches", "startsWith", "time_range", "amount_max", "amount_min",
        "commands", "anyCommand", "hosts", "schemes", "publicAddress", "context", "in", "not_in", "audit"]  # fmt: skip
WORDS = ["allow", "deny", "read:*", "*:*", "write:workspace/*", "execute:shell", "a", "", "*", "**", "read",
         ":", "verb:", ":obj", "a:b/../c", "a:b\x00", "verified", "autogpt", "workspace/*", "1.0", "x" * 300,
         "[", "{", "é", "\u2025", "read:[a-z]", "read:{a,b}", "read:?", "-1", "0", "true", "null",
         "09:00-18:00", "22:00-06:00 Europe/Paris", "9-5", "git status", "ls *", "* x", "*.example.com", "https",
         "https://", "handoff:Billing Specialist"]  # fmt: skip
scalars = st.one_of(st.sampled_from(WORDS), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                    st.booleans(), st.none(), st.text(max_size=20))  # fmt: skip
trees = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.integers()), children, max_size=6),
    ),
    max_leaves=30,
)
policy_like = st.fixed_dictionaries(
    {"name": scalars, "rules": st.lists(st.dictionaries(st.sampled_from(KEYS), trees, max_size=5), max_size=4)},
    optional={k: trees for k in ("version", "appliesTo", "defaultEffect", "rateLimits", "humanInTheLoop", "description")},
)


@st.composite
def mutated_seed(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(sorted(SEEDS.values())))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 40)))
        op = draw(st.sampled_from(["delete", "insert", "replace", "dup_line", "indent"]))
        piece = draw(st.one_of(st.sampled_from(["\n", "  ", "- ", ": ", "'", "\"", "*", "&a", "*a", "!!python/object:x",
                                                 "\t", "\x00", "\ufeff", "---\n", "[", "{", "#", "|", ">",
                                                 "requestsPerMinute: -5", "effect: maybe"]),
                               st.text(max_size=6)))  # fmt: skip
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + piece + text[i:]
        elif op == "replace":
            text = text[:i] + piece + text[j:]
        elif op == "dup_line":
            lines = text.split("\n")
            k = draw(st.integers(0, max(0, len(lines) - 1)))
            lines.insert(k, lines[k] if lines else "")
            text = "\n".join(lines)
        else:
            lines = text.split("\n")
            k = draw(st.integers(0, max(0, len(lines) - 1)))
            lines[k] = " " * draw(st.integers(1, 5)) + lines[k]
            text = "\n".join(lines)
    return text


# ---- properties -----------------------------------------------------------------------------


def test_seed_policies_load_and_are_usable() -> None:
    """The control: the corpus the mutations start from is valid."""
    for name, text in SEEDS.items():
        check_text(text, name)
    assert COUNTS["loaded"] >= len(SEEDS)


def test_any_text(request: pytest.FixtureRequest) -> None:
    run_examples(request.config, 400, lambda text: check_text(text), st.text(max_size=400))


def test_policy_shaped_yaml(request: pytest.FixtureRequest) -> None:
    def one(tree: dict[Any, Any]) -> None:
        try:
            text = yaml.safe_dump(tree, allow_unicode=True, sort_keys=False)
        except (yaml.YAMLError, ValueError):
            assume(False)
        check_text(text)

    run_examples(request.config, 400, one, policy_like)


def test_mutated_seed_policies(request: pytest.FixtureRequest) -> None:
    run_examples(request.config, 600, lambda text: check_text(text), mutated_seed())


def test_deep_nesting(request: pytest.FixtureRequest) -> None:
    def one(depth: int, opener: str) -> None:
        if opener in "[{":
            text = "name: deep\nrules: " + opener * depth
        else:
            text = "name: deep\nrules:\n" + "".join("  " * i + opener + "\n" for i in range(min(depth, 300)))
        check_text(text)

    run_examples(request.config, 100, one, st.integers(1, 5000), st.sampled_from(["[", "{", "- ", "a: "]))


def test_load_policies_from_a_folder(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> None:
    def one(items: list[Any]) -> None:
        folder = tmp_path_factory.mktemp("fuzzdir")
        texts: dict[str, str] = {}
        for n, item in enumerate(items):
            path = folder / f"p{n}.yaml"
            if isinstance(item, bytes):
                path.write_bytes(item)
                try:
                    texts[str(path)] = item.decode("utf-8")
                except UnicodeDecodeError:
                    texts[str(path)] = ""
            else:
                path.write_text(item, encoding="utf-8", newline="")
                texts[str(path)] = item
        COUNTS["cases"] += 1
        try:
            policies = load_policies(folder)
        except PolicyError as exc:
            assert_located(exc, texts)
            COUNTS["refused_with_location"] += 1
            return
        assert_usable(policies)
        COUNTS["loaded"] += 1

    run_examples(request.config, 150, one, st.lists(st.one_of(mutated_seed(), st.binary(max_size=200)), min_size=1,
                                                    max_size=4))  # fmt: skip


def test_duplicate_names_across_files_are_located(request: pytest.FixtureRequest) -> None:
    def one(names: list[str]) -> None:
        sources = [(f"{i}-{n}", SEEDS[n]) for i, n in enumerate(names)]
        COUNTS["cases"] += 1
        try:
            parse_policies(sources)
        except PolicyError as exc:
            assert_located(exc, dict(sources))
            assert len(set(names)) < len(names)
            COUNTS["refused_with_location"] += 1
            return
        assert len(set(names)) == len(names)
        COUNTS["loaded"] += 1

    run_examples(request.config, 100, one, st.lists(st.sampled_from(sorted(SEEDS)), min_size=2, max_size=4))
