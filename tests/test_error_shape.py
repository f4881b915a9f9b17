"""One error shape for every refusal, never a 500 for client input, nothing half-written."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import LiveGateway


def assert_error_shape(resp: httpx.Response, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body: dict = resp.json()
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["message"], str) and len(body["message"]) > 10
    assert body["status"] == status
    if code is not None:
        assert body["error"] == code
    return body


def _count_rows(gw: LiveGateway) -> int:
    return len(gw.admin("GET", "/admin/audit", params={"limit": 10000}).json()["entries"])


@pytest.fixture
def agent_token(gateway: LiveGateway) -> str:
    return gateway.create_agent("shape-bot")[1]


BAD_CHECK_BODIES: list[tuple[bytes, str]] = [
    (b"{not json", "not valid JSON"),
    (b"", "empty"),
    (b"[1, 2]", "JSON object"),
    (b'"read:web"', "JSON object"),
    (b"{}", "'action' is required"),
    (b'{"action": 5}', "'action' is required"),
    (b'{"action": ""}', "'action' is required"),
    (b'{"action": "read:web", "resource": 7}', "'resource' must be a string"),
    (b'{"action": "read:web", "resource": ["a"]}', "'resource' must be a string"),
    (b'{"action": "read:web", "context": "sandbox"}', "'context' must be an object"),
    (b'{"action": "read:web", "approval_id": 3}', "approval_id"),
    (b'{"action": "' + b"a" * 300 + b':b"}', "limit is 256"),
    (b'{"action": "\xc3\x28"}', "UTF-8"),
]


@pytest.mark.parametrize(("raw", "words"), BAD_CHECK_BODIES)
def test_check_bad_bodies_get_400_and_write_nothing(
    gateway: LiveGateway, agent_token: str, raw: bytes, words: str
) -> None:
    before = _count_rows(gateway)
    resp = httpx.post(
        gateway.url + "/proxy/governance/check",
        content=raw,
        headers={"Authorization": f"Bearer {agent_token}", "Content-Type": "application/json"},
    )
    body = assert_error_shape(resp, 400, "invalid_request")
    assert words in body["message"], body
    assert _count_rows(gateway) == before


def test_oversized_bodies_get_413(gateway: LiveGateway, agent_token: str) -> None:
    before = _count_rows(gateway)
    big = b'{"action": "read:web", "context": {"x": "' + b"y" * (64 * 1024) + b'"}}'
    auth = {"Authorization": f"Bearer {agent_token}", "Content-Type": "application/json"}
    for path in ("/proxy/governance/check", "/proxy/governance/record"):
        body = assert_error_shape(httpx.post(gateway.url + path, content=big, headers=auth), 413, "payload_too_large")
        assert "64 KiB" in body["message"]

    def chunks():  # no Content-Length: streamed, counted as it arrives
        yield b'{"action": "read:web", "context": {"x": "'
        for _ in range(80):
            yield b"y" * 1024
        yield b'"}}'

    assert_error_shape(httpx.post(gateway.url + "/proxy/governance/check", content=chunks(), headers=auth), 413)
    admin_big = gateway.admin("POST", "/admin/policies", content=b"name: x\n" + b"#" * 70000,
                              headers={"Content-Type": "application/yaml"})  # fmt: skip
    assert_error_shape(admin_big, 413)
    assert _count_rows(gateway) == before
    just_under = b'{"action": "read:web", "context": {"x": "' + b"y" * (60 * 1024) + b'"}}'
    assert httpx.post(gateway.url + "/proxy/governance/check", content=just_under, headers=auth).status_code == 200


@pytest.mark.parametrize(
    "resource",
    ["../etc/passwd", "workspace/../../etc/passwd", "a/..", "..\\windows", "notes\x00.txt", "line\nbreak", "bell\x07"],
)
def test_unsafe_resources_are_denied_with_a_reason(gateway: LiveGateway, agent_token: str, resource: str) -> None:
    resp = gateway.check(agent_token, "read:workspace", resource)
    assert resp.status_code == 403
    body = resp.json()
    assert body["decision"] == "deny" and body["error"] == "forbidden"
    assert ".." in body["reason"] or "control characters" in body["reason"]
    row = gateway.admin("GET", "/admin/audit", params={"limit": 1}).json()["entries"][0]
    assert row["decision_id"] == body["decision_id"] and row["decision"] == "deny"  # refusals are audited too


def test_dotted_names_that_are_not_parent_segments_are_fine(gateway: LiveGateway, agent_token: str) -> None:
    assert gateway.check(agent_token, "read:workspace", "notes..txt").status_code == 200
    assert gateway.check(agent_token, "read:workspace", "a/...b/c").status_code == 200


def test_bad_action_shape_is_a_4xx_with_a_reason(gateway: LiveGateway, agent_token: str) -> None:
    for action in ("readweb", ":web", "read:", "read/x:y"):
        resp = gateway.check(agent_token, action)
        assert resp.status_code == 403, action
        assert "verb:object" in resp.json()["reason"]


def test_framework_errors_use_the_same_shape(gateway: LiveGateway, agent_token: str) -> None:
    assert_error_shape(httpx.get(gateway.url + "/nope"), 404, "not_found")
    assert_error_shape(httpx.delete(gateway.url + "/health"), 405, "method_not_allowed")
    assert_error_shape(httpx.get(gateway.url + "/proxy/governance/check"), 405)
    body = assert_error_shape(gateway.admin("GET", "/admin/audit", params={"limit": "many"}), 400, "invalid_request")
    assert "limit" in body["message"] and body["errors"]
    assert_error_shape(gateway.admin("GET", "/admin/audit", params={"order": "sideways"}), 400)
    assert_error_shape(gateway.admin("GET", "/admin/audit", params={"after": -1}), 400)
    wait = httpx.get(gateway.url + "/proxy/approvals/apr_x", params={"wait": 600},
                     headers={"Authorization": f"Bearer {agent_token}"})  # fmt: skip
    assert_error_shape(wait, 400)
    assert_error_shape(gateway.admin("GET", "/admin/agents/ghost"), 404, "not_found")
    assert_error_shape(gateway.admin("GET", "/admin/approvals/apr_ghost"), 404, "not_found")
    assert_error_shape(httpx.get(gateway.url + "/admin/agents"), 401, "unauthorized")
    bad_trace = httpx.post(gateway.url + "/proxy/governance/check", json={"action": "read:web"},
                           headers={"Authorization": f"Bearer {agent_token}", "X-Trace-ID": "has space"})  # fmt: skip
    assert_error_shape(bad_trace, 400)


def test_401_has_the_shape_plus_reason(gateway: LiveGateway) -> None:
    resp = httpx.post(gateway.url + "/proxy/governance/check", json={"action": "read:web"})
    body = assert_error_shape(resp, 401, "unauthorized")
    assert body["message"] == "Invalid or expired token" and body["reason"].startswith("missing")
    assert resp.headers["WWW-Authenticate"] == "Bearer"


def test_admin_bad_bodies(gateway: LiveGateway) -> None:
    for raw in (b"{", b"[]", b"null"):
        assert_error_shape(
            gateway.admin("POST", "/admin/agents", content=raw, headers={"Content-Type": "application/json"}), 400
        )
    assert_error_shape(gateway.admin("POST", "/admin/policies", json={"yaml": 5}), 400)
    assert_error_shape(gateway.admin("POST", "/admin/policies/test", json={"agent": 5, "action": "read:x"}), 400)
    assert gateway.admin("GET", "/admin/agents").json()["agents"] == []


def test_hostile_inputs_never_reach_a_500(gateway: LiveGateway, agent_token: str) -> None:
    auth = {"Authorization": f"Bearer {agent_token}", "Content-Type": "application/json"}
    check = gateway.url + "/proxy/governance/check"
    record = gateway.url + "/proxy/governance/record"
    cases: list[tuple[str, bytes, int]] = [
        (check, b'{"action": "read:web", "context": {"x": NaN}}', 400),
        (check, b'{"action": "read:web", "context": {"x": Infinity}}', 400),
        (check, b'{"action": "read:web", "context": ' + b"[" * 20000 + b"]" * 20000 + b"}", 400),
        (check, b'{"action": "read:web", "context": {"n": ' + b"9" * 5000 + b"}}", 400),
        (record, b'{"action": "read:web", "duration_ms": ' + b"9" * 400 + b"}", 400),
        (record, b'{"action": "read:web", "duration_ms": 1e400}', 400),
        (record, b'{"action": "read:web", "result": {"nested": [1, 2, {"a": null}]}}', 201),
        (check, '{"action": "lire:donn\u00e9es", "resource": "\u00e9t\u00e9/\u2603.txt"}'.encode(), 403),
    ]
    for url, raw, status in cases:
        resp = httpx.post(url, content=raw, headers=auth)
        assert resp.status_code == status, (raw[:60], resp.text)
    for params in ({"after": 2**70}, {"before": -5}, {"from": "0001-01-01T00:00:00+14:00"}, {"to": "nan"},
                   {"from": "99999999999d"}, {"action": "[*"}, {"decision": ","}, {"agent": "\u2603"}):  # fmt: skip
        resp = gateway.admin("GET", "/admin/audit", params=params)
        assert resp.status_code in (200, 400), (params, resp.text)
    entries = gateway.admin("GET", "/admin/audit", params={"limit": 100}).json()["entries"]
    assert any(e["action"] == "lire:donn\u00e9es" for e in entries)  # unicode survives the round trip
    assert "Traceback" not in gateway.log() and "unexpected error" not in gateway.log()


def test_deeply_nested_policies_are_refused(gateway: LiveGateway) -> None:
    deep_yaml = b"name: x\nrules: " + b"[" * 30000 + b"]" * 30000 + b"\n"
    resp = gateway.admin("POST", "/admin/policies", content=deep_yaml, headers={"Content-Type": "application/yaml"})
    assert resp.status_code in (400, 413) and resp.json()["error"] in ("invalid_policy", "payload_too_large")
    deep = {"name": "x", "rules": []}
    node: dict = deep
    for _ in range(900):
        node["x"] = {}
        node = node["x"]
    resp = gateway.admin("POST", "/admin/policies", json=deep)
    assert resp.status_code == 400, resp.text
    assert httpx.get(gateway.url + "/health").status_code == 200  # still up
    assert "Traceback" not in gateway.log()


def test_lone_surrogates_are_a_400_and_spare_their_neighbours(gateway: LiveGateway, agent_token: str) -> None:
    import asyncio

    auth = {"Authorization": f"Bearer {agent_token}", "Content-Type": "application/json"}
    bad_bodies = [
        b'{"action": "write:workspace", "resource": "a\\ud800"}',
        b'{"action": "write:workspace", "context": {"\\udfff": 1}}',
        b'{"action": "read:\\uD800x"}',
    ]
    for raw in bad_bodies:
        resp = httpx.post(gateway.url + "/proxy/governance/check", content=raw, headers=auth)
        body = assert_error_shape(resp, 400, "invalid_request")
        assert "surrogate" in body["message"]
    paired = httpx.post(gateway.url + "/proxy/governance/check", headers=auth,
                        content=b'{"action": "read:web", "resource": "smile-\\ud83d\\ude00"}')  # fmt: skip
    assert paired.status_code == 200 and paired.json()["resource"] == "smile-\U0001f600"
    policy = gateway.admin("POST", "/admin/policies", content=b'{"yaml": "name: x\\ud800"}',
                           headers={"Content-Type": "application/json"})  # fmt: skip
    assert_error_shape(policy, 400)
    rec = httpx.post(gateway.url + "/proxy/governance/record", headers=auth,
                     content=b'{"action": "read:web", "result": "\\ud800"}')  # fmt: skip
    assert_error_shape(rec, 400)

    async def mixed() -> list[int]:  # good and bad checks at once: the good ones all commit
        async with httpx.AsyncClient(base_url=gateway.url, headers=auth, timeout=60) as c:
            calls = [c.post("/proxy/governance/check",
                            content=bad_bodies[0] if i % 3 == 0 else b'{"action": "read:web"}')
                     for i in range(90)]  # fmt: skip
            return [r.status_code for r in await asyncio.gather(*calls)]

    statuses = asyncio.run(mixed())
    assert statuses.count(400) == 30 and statuses.count(200) + statuses.count(429) == 60
    assert "Traceback" not in gateway.log()


def test_policy_names_in_any_script_reach_the_header_safely(start_gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "uni"
    folder.mkdir()
    (folder / "p.yaml").write_text(
        "name: 策略\nappliesTo:\n  tags: [autogpt]\nrules:\n  - effect: allow\n    actions: ['read:*']\n",
        encoding="utf-8",
    )
    gw = start_gateway(folder)
    _, token = gw.create_agent("unicode-bot")
    resp = gw.check(token, "read:web")
    assert resp.status_code == 200 and resp.json()["policy"] == "策略"
    assert resp.headers["X-MeshGuard-Policy"] == "%E7%AD%96%E7%95%A5"
    denied = gw.check(token, "write:x")
    assert denied.status_code == 403 and denied.json()["policy"] == "策略"
