"""Authentication: every forged, stale or misplaced credential is refused, with one error shape.

Agent tokens are HS256 JWTs signed with JWT_SECRET (tests/conftest.py gives the live gateway a known
secret, so the tests can mint exactly the token an attacker would need). Admin calls take
X-Admin-Token, compared in constant time.
"""

from __future__ import annotations

import ast
import base64
import inspect
import json
import textwrap
import time
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest

from meshguard_gateway import app as app_module
from meshguard_gateway import identity
from tests.conftest import ADMIN_TOKEN, JWT_SECRET, LiveGateway
from tests.reliability.figures import record

CHECK = {"action": "read:workspace", "resource": "notes.txt"}
REFUSED: list[str] = []  # names of the attacks refused, for the figures


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    head, body, sig = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return json.loads(base64.urlsafe_b64decode(pad(head))), json.loads(base64.urlsafe_b64decode(pad(body))), sig


def mint(claims: dict[str, Any], secret: str = JWT_SECRET, algorithm: str = "HS256", **headers: Any) -> str:
    return jwt.encode(claims, secret, algorithm=algorithm, headers=headers or None)


def assert_unauthorized(resp: httpx.Response, *reason_words: str) -> dict[str, Any]:
    assert resp.status_code == 401, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.headers.get("www-authenticate", "").lower().startswith("bearer")
    body: dict[str, Any] = resp.json()
    assert body["error"] == "unauthorized" and body["status"] == 401 and body["message"]
    assert "allowed" not in body or body["allowed"] is False
    for word in reason_words:
        assert word in (body.get("reason", "") + body["message"]), body
    return body


@pytest.fixture
def agent(gateway: LiveGateway) -> tuple[str, str, dict[str, Any]]:
    agent_id, token = gateway.create_agent("auth-bot", tags=["autogpt"])
    _, claims, _ = parts(token)
    return agent_id, token, claims


def agent_check(gw: LiveGateway, token: str | None, path: str = "/proxy/governance/check",
                **headers: str) -> httpx.Response:  # fmt: skip
    h = dict(headers)
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    if path == "/proxy/check":
        h["X-MeshGuard-Action"] = "read:workspace"
        return httpx.get(gw.url + path, headers=h, timeout=10)
    return httpx.post(gw.url + path, json=CHECK, headers=h, timeout=10)


def test_the_genuine_token_is_accepted(gateway: LiveGateway, agent: tuple[str, str, dict[str, Any]]) -> None:
    """The control: the same request with the real token is decided (so 401s below mean something)."""
    resp = agent_check(gateway, agent[1])
    assert resp.status_code == 200, resp.text


def forged_tokens(agent_id: str, token: str, claims: dict[str, Any]) -> list[tuple[str, str, tuple[str, ...]]]:
    now = int(time.time())
    head, _, sig = token.split(".")
    other = {**claims, "sub": "agent_" + "0" * 16}
    privileged = {**claims, "tier": "privileged", "tags": ["autogpt", "admin"]}
    return [
        ("payload changed, signature kept", f"{head}.{b64(json.dumps(privileged).encode())}.{sig}", ("bad signature",)),
        ("sub changed, signature kept", f"{head}.{b64(json.dumps(other).encode())}.{sig}", ("bad signature",)),
        ("signature of another token", token.rsplit(".", 1)[0] + "." + mint({**claims, "jti": "x"}).rsplit(".", 1)[1],
         ("bad signature",)),
        ("signature flipped", token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), ()),
        ("signature removed", token.rsplit(".", 1)[0] + ".", ()),
        ("alg none", f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}."
                     f"{b64(json.dumps(claims).encode())}.", ("malformed",)),
        ("alg None capitalised", f"{b64(json.dumps({'alg': 'None', 'typ': 'JWT'}).encode())}."
                                 f"{b64(json.dumps(claims).encode())}.", ("malformed",)),
        ("alg HS512 with the right secret", mint(claims, algorithm="HS512"), ()),
        ("wrong secret", mint(claims, secret="another-secret-0123456789abcdef0123456789"), ("bad signature",)),
        ("another 32-character secret", mint(claims, secret="x" * 32), ("bad signature",)),
        ("expired", mint({**claims, "iat": now - 7200, "exp": now - 3600}), ("expired",)),
        ("expired a second ago", mint({**claims, "iat": now - 60, "exp": now - 1}), ("expired",)),
        ("not yet valid (nbf in the future)", mint({**claims, "nbf": now + 3600}), ()),
        ("issued in the future (iat)", mint({**claims, "iat": now + 3600, "exp": now + 7200}), ()),
        ("no exp", mint({k: v for k, v in claims.items() if k != "exp"}), ("malformed",)),
        ("no iat", mint({k: v for k, v in claims.items() if k != "iat"}), ("malformed",)),
        ("no sub", mint({k: v for k, v in claims.items() if k != "sub"}), ("malformed",)),
        ("wrong issuer", mint({**claims, "iss": "evil"}), ("malformed",)),
        ("no issuer", mint({k: v for k, v in claims.items() if k != "iss"}), ("malformed",)),
        ("sub not a string", mint({**claims, "sub": 12345}), ()),
        ("exp not a number", mint({**claims, "exp": "tomorrow"}), ()),
        ("unknown agent, right secret", mint({**claims, "sub": "agent_" + "f" * 16}), ("unknown agent",)),
        ("agent name as sub", mint({**claims, "sub": "auth-bot"}), ("unknown agent",)),
        ("not a jwt", "not-a-token", ("malformed",)),
        ("two parts", ".".join(token.split(".")[:2]), ("malformed",)),
        ("the admin token as agent token", ADMIN_TOKEN, ("malformed",)),
        ("the jwt secret as agent token", JWT_SECRET, ("malformed",)),
    ]


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_forged_and_stale_agent_tokens_are_refused(gateway: LiveGateway, agent: tuple[str, str, dict[str, Any]]) -> None:
    agent_id, token, claims = agent
    cases = forged_tokens(agent_id, token, claims)
    accepted = []
    for name, forged, words in cases:
        for path in ("/proxy/governance/check", "/proxy/check", "/proxy/governance/record"):
            if path == "/proxy/governance/record":
                resp = httpx.post(gateway.url + path, json={"action": "read:workspace", "status": "success"},
                                  headers={"Authorization": f"Bearer {forged}"}, timeout=10)  # fmt: skip
            else:
                resp = agent_check(gateway, forged, path)
            if resp.status_code != 401:
                accepted.append((name, path, resp.status_code, resp.text[:200]))
                continue
            assert_unauthorized(resp, *words)
        REFUSED.append(name)
    assert not accepted, accepted
    # nothing of these attempts reached the decision log as a decision for this agent
    rows = gateway.admin("GET", "/admin/audit", params={"agent": agent_id, "kind": "check,record"}).json()["entries"]
    assert rows == []


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Basic dXNlcjpwYXNz", "bearer", "Token abc", "Bearer a b c",
    "Bearer " + "A" * 60000,
])  # fmt: skip
def test_missing_or_malformed_authorization_is_refused(gateway: LiveGateway, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    resp = httpx.post(gateway.url + "/proxy/governance/check", json=CHECK, headers=headers, timeout=10)
    assert resp.status_code in (401, 431), resp.text  # 431: a header too large for the server at all
    if resp.status_code == 401:
        assert_unauthorized(resp)


def test_revoked_agents_old_token_is_refused_everywhere(gateway: LiveGateway, agent: tuple[str, str, dict[str, Any]]) -> None:
    agent_id, token, _ = agent
    assert agent_check(gateway, token).status_code == 200  # cached as valid before the revoke
    second = gateway.admin("POST", f"/admin/agents/{agent_id}/token").json()["token"]
    assert gateway.admin("DELETE", f"/admin/agents/{agent_id}").status_code == 200
    for t in (token, second):
        assert_unauthorized(agent_check(gateway, t), "revoked")
        assert_unauthorized(agent_check(gateway, t, "/proxy/check"), "revoked")
        assert_unauthorized(httpx.post(gateway.url + "/proxy/governance/record", json={"action": "a:b"},
                                       headers={"Authorization": f"Bearer {t}"}, timeout=10), "revoked")  # fmt: skip
    # no new token for a revoked agent, and revocation is not undone by an update
    assert gateway.admin("POST", f"/admin/agents/{agent_id}/token").status_code == 409
    assert gateway.admin("PATCH", f"/admin/agents/{agent_id}", json={"trustTier": "privileged"}).status_code == 409
    assert_unauthorized(agent_check(gateway, token), "revoked")
    REFUSED.extend(["revoked agent's old token", "revoked agent's newest token"])


def test_revocation_survives_a_restart(start_gateway: Callable[..., LiveGateway], tmp_path: Any) -> None:
    db = tmp_path / "auth.db"
    gw = start_gateway(db_path=db)
    agent_id, token = gw.create_agent("auth-bot", tags=["autogpt"])
    assert gw.admin("DELETE", f"/admin/agents/{agent_id}").status_code == 200
    gw.stop()
    gw = start_gateway(db_path=db)
    assert_unauthorized(agent_check(gw, token), "revoked")
    REFUSED.append("revoked agent's token after a restart")


def test_token_of_a_deleted_or_foreign_agent_is_refused(start_gateway: Callable[..., LiveGateway]) -> None:
    """A token from another gateway with the same secret names an agent this one does not know."""
    one, two = start_gateway(), start_gateway()
    _, foreign = one.create_agent("elsewhere-bot", tags=["autogpt"])
    assert agent_check(one, foreign).status_code == 200
    assert_unauthorized(agent_check(two, foreign), "unknown agent")
    REFUSED.append("token of an agent unknown to this gateway")


ADMIN_GUESSES = [
    ("missing", None),
    ("empty", ""),
    ("wrong", "admin"),
    ("prefix", ADMIN_TOKEN[:-1]),
    ("one more character", ADMIN_TOKEN + "0"),
    ("upper case", ADMIN_TOKEN.upper()),
    ("with a space inside", ADMIN_TOKEN[:5] + " " + ADMIN_TOKEN[5:]),
    ("the jwt secret", JWT_SECRET),
    ("unicode look-alike", ADMIN_TOKEN.replace("a", "\u0430")),
]


def test_admin_token_guessed_or_missing_is_refused(gateway: LiveGateway) -> None:
    _, agent_token = gateway.create_agent("admin-probe", tags=["autogpt"])
    calls = [("GET", "/admin/agents", None), ("POST", "/admin/agents", {"name": "intruder"}),
             ("DELETE", "/admin/agents/admin-probe", None), ("GET", "/admin/audit", None),
             ("POST", "/admin/policies", {"yaml": "name: x\nrules: []\n"}), ("GET", "/admin/approvals", None),
             ("POST", "/admin/policies/reload", None)]  # fmt: skip
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        for name, guess in ADMIN_GUESSES:
            for headers in ({} if guess is None else {"X-Admin-Token": guess.encode("utf-8")},
                            {"Authorization": f"Bearer {agent_token}"}):  # fmt: skip
                for method, path, body in calls:
                    resp = client.request(method, path, json=body, headers=headers)
                    assert resp.status_code == 401, (name, method, path, resp.text)
                    assert resp.json()["error"] == "unauthorized" and resp.json()["status"] == 401
            REFUSED.append(f"admin token {name}")
    # nothing changed: the probe agent is still active, no intruder exists
    agents = {a["name"]: a["status"] for a in gateway.admin("GET", "/admin/agents").json()["agents"]}
    assert agents == {"admin-probe": "active"}


def _calls_in(func: Callable[..., Any]) -> tuple[set[str], list[ast.Compare]]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    names = set()
    compares = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            names.add(f"{f.value.id}.{f.attr}" if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)
                      else getattr(f, "id", ""))  # fmt: skip
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
            compares.append(node)
    return names, compares


def test_admin_token_comparison_is_constant_time() -> None:
    """Read the source: the admin check goes through hmac/secrets.compare_digest and never `==`."""
    names, compares = _calls_in(identity.admin_token_matches)
    assert names & {"hmac.compare_digest", "secrets.compare_digest"}, names
    assert not compares, [ast.unparse(c) for c in compares]
    # the app's admin check uses that function, and nothing in the gateway compares an admin token otherwise
    tree = ast.parse(inspect.getsource(app_module))
    require = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
               and n.name == "require_admin"]  # fmt: skip
    assert require, "no require_admin in meshguard_gateway/app.py"
    called = {getattr(c.func, "id", getattr(c.func, "attr", "")) for c in ast.walk(require[0]) if isinstance(c, ast.Call)}
    assert "admin_token_matches" in called
    package = Path(identity.__file__).parent
    for path in sorted(package.rglob("*.py")):
        module_tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(module_tree):
            if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
                text = ast.unparse(node)
                assert "admin_token" not in text or "None" in text, f"{path.name}: `{text}` compares an admin token"
    # and it behaves: equal only for the exact token
    assert identity.admin_token_matches(ADMIN_TOKEN, ADMIN_TOKEN)
    for _, guess in ADMIN_GUESSES:
        assert not identity.admin_token_matches(guess, ADMIN_TOKEN)
    assert not identity.admin_token_matches("", "")




APPROVAL_POLICY = """\
name: approval-policy
version: "1.0"
appliesTo:
  tags: [bound]
rules:
  - effect: allow
    actions: ["send:email", "read:*"]
defaultEffect: deny
humanInTheLoop:
  requireApproval: ["send:email"]
"""


def test_approvals_and_decisions_belong_to_their_agent(start_gateway: Callable[..., LiveGateway], tmp_path: Any) -> None:
    """A valid token proves who you are, not what you may borrow: another agent's approval, or one
    asked for a different resource or context, allows nothing; another agent's decision cannot get
    your outcome record; another agent's approval is not even visible."""
    policy = tmp_path / "approval.yaml"
    policy.write_text(APPROVAL_POLICY, encoding="utf-8")
    gw = start_gateway(policy)
    _, alice = gw.create_agent("alice-bot", tags=["bound"])
    _, mallory = gw.create_agent("mallory-bot", tags=["bound"])
    asked = gw.check(alice, "send:email", "boss@example.com", context={"sandbox": False})
    assert asked.status_code == 403 and asked.json()["decision"] == "approval_required"
    approval_id = asked.json()["approval_id"]
    assert gw.admin("POST", f"/admin/approvals/{approval_id}/approve", json={"by": "operator"}).status_code == 200

    borrowed = [
        gw.check(mallory, "send:email", "boss@example.com", context={"sandbox": False}, approval_id=approval_id),
        gw.check(alice, "send:email", "everyone@example.com", context={"sandbox": False}, approval_id=approval_id),
        gw.check(alice, "send:email", "boss@example.com", context={"sandbox": True}, approval_id=approval_id),
        gw.check(alice, "send:email", "boss@example.com", approval_id=approval_id),
    ]
    assert [r.status_code for r in borrowed] == [403, 403, 403, 403], [r.text for r in borrowed]
    assert all(r.json()["allowed"] is False for r in borrowed)
    seen = httpx.get(gw.url + f"/proxy/approvals/{approval_id}", headers={"Authorization": f"Bearer {mallory}"}, timeout=10)
    assert seen.status_code == 404 and seen.json()["error"] == "not_found"

    # the rightful use works once (so the refusals above were about the binding, not the approval)
    used = gw.check(alice, "send:email", "boss@example.com", context={"sandbox": False}, approval_id=approval_id)
    assert used.status_code == 200, used.text
    again = gw.check(alice, "send:email", "boss@example.com", context={"sandbox": False}, approval_id=approval_id)
    assert again.status_code == 403

    # mallory cannot attach an outcome to alice's decision
    forged = httpx.post(gw.url + "/proxy/governance/record", headers={"Authorization": f"Bearer {mallory}"},
                        json={"action": "send:email", "status": "error", "result": "it failed, honest",
                              "decision_id": used.json()["decision_id"]}, timeout=10)  # fmt: skip
    assert forged.status_code == 404 and forged.json()["error"] == "not_found", forged.text
    entry = [e for e in gw.admin("GET", "/admin/audit", params={"kind": "check", "limit": 100}).json()["entries"]
             if e["decision_id"] == used.json()["decision_id"]]  # fmt: skip
    assert entry and entry[0]["outcome"] is None
    REFUSED.extend(["another agent's approval", "an approval for another resource", "an approval for another context",
                    "another agent's decision for an outcome"])  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _figures() -> Iterator[None]:
    """After this file: how many attacks were tried and refused (for docs/reliability.md)."""
    yield
    record("auth", attacks_refused=len(REFUSED), accepted=0)
