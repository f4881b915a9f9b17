"""The launcher's gateway client against misbehaving servers on real sockets (fail closed).

A live gateway cannot be made to answer 500, garbage or contradictions on demand, so a tiny
scripted HTTP server on 127.0.0.1 plays those answers; the real gateway is used in
test_launcher_gateway.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from meshguard_autogpt import EXIT_REVOKED, AgentRevokedError, MeshGuardGateway, governed

ALLOW = {"allowed": True, "decision": "allow", "enforced": True, "policy": "p", "rule": "r", "decision_id": "dec_1"}
DENY = {"allowed": False, "error": "forbidden", "decision": "deny", "reason": "shell is off limits", "policy": "p",
        "rule": "no-shell", "decision_id": "dec_2"}  # fmt: skip


class Scripted:
    """Answers requests from a list of (status, body, headers, delay); remembers what it got."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, Any, dict[str, str], float]] = []
        self.requests: list[tuple[str, str, Any]] = []
        self.default: tuple[int, Any, dict[str, str], float] = (200, ALLOW, {}, 0.0)

    def add(self, status: int, body: Any, headers: dict[str, str] | None = None, delay: float = 0.0) -> None:
        self.answers.append((status, body, headers or {}, delay))


@pytest.fixture
def server() -> Iterator[tuple[str, Scripted]]:
    script = Scripted()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw
            script.requests.append((self.command, self.path, body))
            status, answer, headers, delay = script.answers.pop(0) if script.answers else script.default
            if delay:
                time.sleep(delay)
            data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def client(url: str, **kwargs: Any) -> MeshGuardGateway:
    kwargs.setdefault("timeout", 2.0)
    kwargs.setdefault("verbose", False)
    return MeshGuardGateway(url, "tok-secret-123", trace_id="trace-1", **kwargs)


@pytest.mark.parametrize(
    ("status", "body", "allowed", "decision"),
    [
        (200, ALLOW, True, "allow"),
        (200, {"allowed": True, "decision": "deny", "enforced": False, "reason": "audit"}, True, "deny"),
        (200, {"allowed": True, "decision": "deny", "enforced": True}, False, "error"),
        (200, {"allowed": "true", "decision": "allow"}, False, "error"),
        (200, {"decision": "allow"}, False, "error"),
        (200, ["allowed"], False, "error"),
        (200, b"<html>ok</html>", False, "error"),
        (200, b"", False, "error"),
        (500, {"allowed": True, "decision": "allow"}, False, "error"),
        (502, b"Bad Gateway", False, "error"),
        (404, {"error": "not_found"}, False, "error"),
        (403, DENY, False, "deny"),
        (403, b"forbidden", False, "deny"),
    ],
)
def test_client_runs_only_on_an_explicit_allow(server: tuple[str, Scripted], status: int, body: Any,
                                               allowed: bool, decision: str) -> None:  # fmt: skip
    url, script = server
    script.add(status, body)
    result = client(url).check_permission("execute:shell", "ls")
    assert (result["allowed"], result["decision"]) == (allowed, decision)
    assert result["reason"]


def test_client_sends_action_resource_context_trace_and_token(server: tuple[str, Scripted]) -> None:
    url, script = server
    gw = client(url)
    gw.check_permission("write:workspace", "notes.txt", {"sandbox": False})
    method, path, body = script.requests[0]
    assert (method, path) == ("POST", "/proxy/governance/check")
    assert body == {"action": "write:workspace", "resource": "notes.txt", "context": {"sandbox": False}}
    assert gw.session.headers["X-Trace-ID"] == "trace-1"
    assert "tok-secret-123" not in repr(gw)


def test_client_deny_carries_reason_policy_rule_decision_id(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.add(403, DENY)
    result = client(url).check_permission("execute:shell", "rm -rf /")
    assert result["reason"] == "shell is off limits"
    assert (result["policy"], result["rule"], result["decision_id"]) == ("p", "no-shell", "dec_2")


def test_client_timeout_refuses(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.add(200, ALLOW, delay=1.5)
    result = client(url, timeout=0.3).check_permission("browse:web", "https://example.com")
    assert not result["allowed"]
    assert "did not answer within 0.3s" in result["reason"] and "fail closed" in result["reason"]


def test_client_closed_port_refuses() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = client(f"http://127.0.0.1:{port}").check_permission("browse:web")
    assert not result["allowed"] and "could not be reached" in result["reason"]


def test_client_garbage_bytes_refuse() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve() -> None:
        for _ in range(3):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(b"\x00\x01garbage that is not HTTP\r\n\r\n")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        result = client(f"http://127.0.0.1:{listener.getsockname()[1]}").check_permission("browse:web")
    finally:
        listener.close()
    assert not result["allowed"] and result["decision"] == "error"


def test_client_rate_limited_waits_retry_after_then_asks_again(server: tuple[str, Scripted],
                                                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    url, script = server
    script.add(429, {"allowed": False, "error": "rate_limited", "decision": "rate_limited", "reason": "too fast",
                     "retry_after": 7, "limit": "30 requests per minute", "policy": "p"})  # fmt: skip
    script.add(200, ALLOW)
    pauses: list[float] = []
    gw = client(url, sleep=pauses.append, verbose=True)
    result = gw.decide("browse:web", "https://example.com", label="browse_website")
    assert result["allowed"]
    assert pauses == [7]
    assert len(script.requests) == 2
    assert "waiting 7s" in capsys.readouterr().out


def test_client_rate_limited_uses_the_retry_after_header(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.add(429, {"error": "rate_limited"}, headers={"Retry-After": "3"})
    pauses: list[float] = []
    assert client(url, sleep=pauses.append).decide("browse:web")["allowed"]
    assert pauses == [3]


def test_client_rate_limited_deny_mode_refuses_at_once(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.add(429, {"error": "rate_limited", "decision": "rate_limited", "reason": "too fast", "retry_after": 7})
    pauses: list[float] = []
    result = client(url, sleep=pauses.append, on_rate_limit="deny").decide("browse:web")
    assert not result["allowed"] and result["decision"] == "rate_limited"
    assert pauses == [] and len(script.requests) == 1


def test_client_rate_limit_wait_is_capped(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.default = (429, {"error": "rate_limited", "decision": "rate_limited", "reason": "too fast", "retry_after": 5}, {}, 0.0)
    pauses: list[float] = []
    result = client(url, sleep=pauses.append, rate_limit_max_wait=12).decide("browse:web")
    assert not result["allowed"] and "MESHGUARD_RATE_LIMIT_MAX_WAIT" in result["reason"]
    assert sum(pauses) <= 12 and pauses == [5, 5]


def test_client_401_stops_and_stays_stopped(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.add(401, {"error": "unauthorized", "message": "Invalid or expired token", "reason": "revoked"})
    gw = client(url)
    with pytest.raises(AgentRevokedError) as info:
        gw.decide("write:workspace", "a.txt", label="write_to_file")
    assert info.value.code == EXIT_REVOKED
    assert "revoked" in str(info.value) and "write_to_file" in str(info.value)
    assert not isinstance(info.value, Exception)  # AutoGPT's `except Exception` cannot swallow it
    with pytest.raises(AgentRevokedError):
        gw.decide("read:workspace", "b.txt")
    assert len(script.requests) == 1  # nothing asked (or run) after the revocation


def approval_answer(approval_id: str = "apr_1") -> dict[str, Any]:
    return {"allowed": False, "error": "approval_required", "decision": "approval_required", "reason": "needs a human",
            "approval_id": approval_id, "approve_command": f"meshguard approval approve {approval_id}"}  # fmt: skip


def test_client_approval_granted_rechecks_with_the_approval_id(server: tuple[str, Scripted],
                                                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    url, script = server
    script.add(403, approval_answer())
    script.add(200, {"id": "apr_1", "status": "approved"})
    script.add(200, ALLOW)
    result = client(url, verbose=True).decide("send:email", "boss@example.com", label="send_email")
    assert result["allowed"]
    assert [(m, p.split("?")[0]) for m, p, _ in script.requests] == [
        ("POST", "/proxy/governance/check"), ("GET", "/proxy/approvals/apr_1"), ("POST", "/proxy/governance/check")]
    assert script.requests[2][2]["approval_id"] == "apr_1"
    out = capsys.readouterr().out
    assert "apr_1" in out and "meshguard approval approve apr_1" in out


def test_client_approval_denied_refuses(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.add(403, approval_answer())
    script.add(200, {"id": "apr_1", "status": "denied"})
    result = client(url).decide("send:email")
    assert not result["allowed"] and "not granted (denied)" in result["reason"]
    assert len(script.requests) == 2


def test_client_approval_timeout_refuses(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.add(403, approval_answer())
    script.default = (200, {"id": "apr_1", "status": "pending"}, {}, 0.0)
    result = client(url, approval_timeout=1).decide("send:email")
    assert not result["allowed"] and "timed out" in result["reason"]


def test_client_record_is_best_effort_and_truncated(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.add(201, {"recorded": True, "id": 1})
    gw = client(url)
    assert gw.record("write:workspace", "a.txt", "success", "x" * 5000, duration_ms=1.5, decision_id="dec_1")
    _, path, body = script.requests[0]
    assert path == "/proxy/governance/record"
    assert len(body["result"]) == 1000 and body["decision_id"] == "dec_1" and body["status"] == "success"
    assert not client("http://127.0.0.1:9").record("write:workspace")


def test_execute_refused_never_runs_and_returns_the_blocked_dict(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.add(403, DENY)
    ran: list[int] = []
    result = client(url).execute("execute:shell", "ls", lambda: ran.append(1))
    assert ran == []
    assert result["status"] == "blocked" and result["action"] == "execute:shell"
    assert result["reason"] == "shell is off limits"


def test_execute_allowed_runs_and_records_the_outcome(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.add(200, ALLOW)
    script.add(201, {"recorded": True})
    assert client(url).execute("browse:web", "https://e.org", lambda: "page text") == "page text"
    _, path, body = script.requests[1]
    assert path == "/proxy/governance/record"
    assert body["result"] == "page text" and body["decision_id"] == "dec_1" and body["status"] == "success"


def test_execute_records_then_reraises_errors(server: tuple[str, Scripted]) -> None:
    url, script = server

    def boom() -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        client(url).execute("write:workspace", "a", boom)
    assert script.requests[1][2]["status"] == "error" and "disk full" in script.requests[1][2]["result"]


def test_governed_takes_the_resource_from_a_positional_argument(server: tuple[str, Scripted],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import meshguard_autogpt

    url, script = server
    monkeypatch.setattr(meshguard_autogpt, "gateway", client(url), raising=False)

    @governed("send:email", resource_key="to")
    def send(to: str, body: str) -> str:
        return f"sent to {to}"

    assert send("a@b.c", "hi") == "sent to a@b.c"
    assert script.requests[0][2] == {"action": "send:email", "resource": "a@b.c"}


def test_no_token_refuses_without_asking() -> None:
    gw = MeshGuardGateway("http://127.0.0.1:9", "", verbose=False)
    result = gw.check_permission("read:workspace", "a")
    assert not result["allowed"] and "MESHGUARD_TOKEN" in result["reason"]


def test_client_reaches_a_local_gateway_despite_a_proxy_setting(server: tuple[str, Scripted],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    url, script = server
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    script.add(200, ALLOW)
    assert client(url).check_permission("browse:web")["allowed"] is True
