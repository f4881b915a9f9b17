"""The pure parts of the Platform integration: block -> (action, resource, context), the block map
file, and rate-limit counters split per context key (`per: [user_id]`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import meshguard_autogpt as mg
from meshguard_gateway.engine import Agent, Effect, Engine, Request
from meshguard_gateway.errors import PolicyError
from meshguard_gateway.policy import parse_policy


class _Schema:
    @staticmethod
    def get_credentials_fields() -> dict[str, Any]:
        return {"credentials": dict}

    @staticmethod
    def get_auto_credentials_fields() -> dict[str, Any]:
        return {"google_credentials": {"field_name": "spreadsheet"}}


class _Block:
    """Shaped like backend.data.block.Block (name = class name, id, categories, input_schema)."""

    input_schema = _Schema
    is_sensitive_action = False

    def __init__(self, name: str, block_id: str = "id-1") -> None:
        self.name, self.id, self.categories = name, block_id, {"OUTPUT"}


GRAPH_KWARGS = {"user_id": "u-1", "graph_id": "g-1", "graph_version": 2, "graph_exec_id": "ge-1", "node_id": "n-1",
                "node_exec_id": "ne-1", "execution_context": object(), "credentials": {"password": "pw"}}  # fmt: skip


@pytest.mark.parametrize(
    ("block", "inputs", "action", "resource"),
    [
        ("SendWebRequestBlock", {"url": "https://x.example/a", "method": "POST"}, "request:http", "https://x.example/a"),
        ("SendEmailBlock", {"to_email": "a@b.c", "subject": "s"}, "send:email", "a@b.c"),
        ("ExecuteCodeBlock", {"code": "print(1)", "language": "python"}, "execute:code", "print(1)"),
        ("GithubCreateFileBlock", {"repo_url": "https://github.com/o/r", "file_path": "x"}, "write:github",
         "https://github.com/o/r"),
        ("PostToXBlock", {"post": "hello"}, "post:social", "hello"),
        ("Slant3DCreateOrderBlock", {"order_number": "42"}, "pay:order", "42"),
        ("AgentExecutorBlock", {"graph_id": "g-9", "inputs": {}}, "start:agent", "g-9"),
        ("FileStoreBlock", {"file_in": "data:..."}, "write:files", "data:..."),
        ("CalculatorBlock", {"a": 1}, "execute:block:CalculatorBlock", None),
        ("MyOwnBlock", {}, "execute:block:MyOwnBlock", None),
    ],
)  # fmt: skip
def test_map_block_actions(block: str, inputs: dict[str, Any], action: str, resource: str | None) -> None:
    call = mg.map_block(_Block(block), inputs, GRAPH_KWARGS)
    assert (call.action, call.resource) == (action, resource)


def test_map_block_context_has_the_ids_and_never_a_credential() -> None:
    inputs = {"to_email": "a@b.c", "credentials": {"id": "cred-1", "provider": "smtp"}, "spreadsheet": {"id": "s"},
              "api_key": "sk-123", "nested": {"password": "p", "ok": 1}}  # fmt: skip
    call = mg.map_block(_Block("SendEmailBlock", "4335878a"), inputs, GRAPH_KWARGS)
    ctx = call.context
    assert {k: ctx[k] for k in ("user_id", "graph_id", "graph_version", "graph_exec_id", "node_id", "node_exec_id")} == \
        {"user_id": "u-1", "graph_id": "g-1", "graph_version": 2, "graph_exec_id": "ge-1", "node_id": "n-1",
         "node_exec_id": "ne-1"}  # fmt: skip
    assert (ctx["block_id"], ctx["block_name"], ctx["caller"], ctx["categories"]) == \
        ("4335878a", "SendEmailBlock", "graph", ["OUTPUT"])  # fmt: skip
    assert ctx["input"] == {"to_email": "a@b.c", "nested": {"ok": 1}}
    text = json.dumps(ctx, default=str)
    assert "cred-1" not in text and "sk-123" not in text and "pw" not in text


def test_map_block_direct_calls_and_long_inputs() -> None:
    call = mg.map_block(_Block("CalculatorBlock"), {"text": "x" * 5000}, {})
    assert call.context["caller"] == "direct" and "user_id" not in call.context
    assert isinstance(call.context["input"], str) and len(call.context["input"]) <= 2000


def test_block_map_file_overrides_by_name_and_id(tmp_path: Path) -> None:
    path = tmp_path / "blocks.json"
    path.write_text(json.dumps({"CalculatorBlock": "compute:math", "id-7": {"action": "send:fax", "resource": "number"}}))
    table = mg.load_block_map(path)
    assert mg.map_block(_Block("CalculatorBlock"), {}, {}, table).action == "compute:math"
    call = mg.map_block(_Block("Whatever", "id-7"), {"number": "555"}, {}, table)
    assert (call.action, call.resource) == ("send:fax", "555")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1]", "expected an object"),
        ("{nope", "not valid JSON"),
        ('{"X": {"action": "nocolon"}}', "'verb:object'"),
        ('{"X": {"action": "a:b", "resource": "path:file"}}', "not workspace paths"),
    ],
)
def test_block_map_file_errors_name_the_entry(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "blocks.json"
    path.write_text(content)
    with pytest.raises(mg.ConfigError, match=message):
        mg.load_block_map(path)


PER_USER = """\
name: p
rules: [{effect: allow, actions: ["execute:*"]}]
rateLimits: {requestsPerMinute: 2, per: [user_id, graph_id]}
"""


def test_rate_limit_per_context_keys_counts_each_user_and_graph_apart() -> None:
    engine = Engine([parse_policy(PER_USER)])
    agent = Agent("a1", "platform")

    def decide(user: str | None, graph: str, now: float) -> Effect:
        context = {"graph_id": graph} if user is None else {"user_id": user, "graph_id": graph}
        return engine.decide(Request(agent, "execute:block:X", None, context), now=now).effect

    assert [decide("u1", "g1", t) for t in (0, 1, 2)] == [Effect.ALLOW, Effect.ALLOW, Effect.RATE_LIMITED]
    assert [decide("u2", "g1", t) for t in (3, 4)] == [Effect.ALLOW, Effect.ALLOW]
    assert decide("u1", "g2", 5) is Effect.ALLOW
    assert [decide(None, "g1", t) for t in (6, 7, 8)] == [Effect.ALLOW, Effect.ALLOW, Effect.RATE_LIMITED]
    assert parse_policy(PER_USER).rate_limit is not None and parse_policy(PER_USER).to_dict()["rateLimits"]["per"] == \
        ["user_id", "graph_id"]  # fmt: skip


def test_rule_rate_limit_per_user() -> None:
    policy = parse_policy("name: p\nrules:\n  - effect: allow\n    actions: ['execute:*']\n"
                          "    conditions: {rateLimit: {requestsPerMinute: 1, per: [user_id]}}\n")  # fmt: skip
    engine = Engine([policy])
    agent = Agent("a1")
    effects = [engine.decide(Request(agent, "execute:x", None, {"user_id": u}), now=t).effect
               for t, u in enumerate(("u1", "u1", "u2"))]  # fmt: skip
    assert effects == [Effect.ALLOW, Effect.RATE_LIMITED, Effect.ALLOW]


@pytest.mark.parametrize("per", ["user_id", "[]", "[1-bad]", "[{a: 1}]"])
def test_rate_limit_per_must_be_a_list_of_context_keys(per: str) -> None:
    with pytest.raises(PolicyError, match="'per' must be a list of context keys"):
        parse_policy(f"name: p\nrules: [{{effect: allow, actions: ['x:y']}}]\nrateLimits: {{requestsPerMinute: 1, per: {per}}}\n")


def test_rate_limit_with_only_per_is_refused() -> None:
    with pytest.raises(PolicyError, match="has only 'per'"):
        parse_policy("name: p\nrules: [{effect: allow, actions: ['x:y']}]\nrateLimits: {per: [user_id]}\n")


def test_a_block_class_overriding_execute_is_governed_too() -> None:
    """No v0.6.44 block overrides Block.execute; one that did would bypass the patch, so it is wrapped."""

    class Base:
        async def execute(self, input_data: Any, **kwargs: Any) -> Any:
            yield "base", input_data

    class Own(Base):
        async def execute(self, input_data: Any, **kwargs: Any) -> Any:
            yield "own", input_data

    class Inherits(Base):
        pass

    mg._patch_block_class(Base, "test")
    mg._cover_overrides(Base)
    assert Own.execute.__meshguard_original__ is not None  # type: ignore[attr-defined]
    assert "execute" not in Inherits.__dict__
    with pytest.raises(mg.PatchError, match="not an async generator"):
        mg._patch_block_class(type("Sync", (), {"execute": lambda self, d: iter(())}), "old")
