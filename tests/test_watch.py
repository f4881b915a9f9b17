"""GET /proxy/governance/watch: the agent's long poll that ends at once when it is revoked.

The launcher holds one while a command runs, to end that command on revocation (the kill switch
for work already running). Real gateway process, real HTTP.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.conftest import LiveGateway


def _watch(gateway: LiveGateway, token: str, wait: str | None = None, timeout: float = 90) -> httpx.Response:
    params = {"wait": wait} if wait is not None else None
    return httpx.get(gateway.url + "/proxy/governance/watch", params=params,
                     headers={"Authorization": f"Bearer {token}"}, timeout=timeout)  # fmt: skip


def test_watch_active_agent_answers_200_when_the_wait_passes(gateway: LiveGateway) -> None:
    agent_id, token = gateway.create_agent("watched")
    resp = _watch(gateway, token, "0.2")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"status": "active", "agent_id": agent_id, "agent_name": "watched"}


def test_watch_answers_401_as_soon_as_the_agent_is_revoked(gateway: LiveGateway) -> None:
    _, token = gateway.create_agent("watched")
    answers: list[tuple[httpx.Response, float]] = []

    def hold() -> None:
        resp = _watch(gateway, token, "60")
        answers.append((resp, time.monotonic()))

    waiter = threading.Thread(target=hold)
    waiter.start()
    time.sleep(0.5)  # the watch is held (nothing answered yet)
    assert not answers
    assert gateway.admin("DELETE", "/admin/agents/watched").status_code == 200
    revoked_at = time.monotonic()
    waiter.join(30)
    assert answers, "the watch was still held 30 s after the revoke"
    resp, answered_at = answers[0]
    assert resp.status_code == 401
    body = resp.json()
    assert body["error"] == "unauthorized" and body["status"] == 401 and body["message"]
    assert "revoked" in body["reason"]
    # woken by the revoke, not by its 60 s wait (generous bound: the machine is shared)
    assert answered_at - revoked_at < 10


def test_watch_answers_401_at_once_for_a_revoked_or_bad_token(gateway: LiveGateway) -> None:
    _, token = gateway.create_agent("gone")
    gateway.admin("DELETE", "/admin/agents/gone")
    started = time.monotonic()
    resp = _watch(gateway, token, "60")
    assert resp.status_code == 401 and "revoked" in resp.json()["reason"]
    assert time.monotonic() - started < 30  # not held for the 60 s wait
    assert _watch(gateway, "not-a-token", "1").status_code == 401
    no_auth = httpx.get(gateway.url + "/proxy/governance/watch", timeout=30)
    assert no_auth.status_code == 401 and no_auth.json()["error"] == "unauthorized"


@pytest.mark.parametrize("wait", ["abc", "-1", "61", "nan", "inf", ""])
def test_watch_bad_wait_is_a_400_naming_the_parameter(gateway: LiveGateway, wait: str) -> None:
    _, token = gateway.create_agent("watched")
    resp = _watch(gateway, token, wait)
    assert resp.status_code == 400
    body = resp.json()
    assert body["error"] == "invalid_request" and body["status"] == 400 and "'wait'" in body["message"]


def test_watch_held_at_shutdown_answers_active_so_the_gateway_stops_promptly(gateway: LiveGateway) -> None:
    """A stopping gateway releases held watches (200, agent still active) instead of leaving
    uvicorn's graceful shutdown to wait for them and then drop them."""
    agent_id, token = gateway.create_agent("watched")
    answers: list[httpx.Response | Exception] = []

    def hold() -> None:
        try:
            answers.append(_watch(gateway, token, "60"))
        except httpx.HTTPError as exc:
            answers.append(exc)

    waiter = threading.Thread(target=hold)
    waiter.start()
    time.sleep(0.5)
    gateway.stop()
    waiter.join(30)
    assert gateway.proc.returncode == 0
    assert answers and isinstance(answers[0], httpx.Response), answers
    assert answers[0].status_code == 200 and answers[0].json()["agent_id"] == agent_id


def test_watches_are_capped_per_agent_with_429_and_retry_after(gateway: LiveGateway) -> None:
    """One token cannot hold watches without bound (each is an open connection, and a gateway out of
    file descriptors fails every check): beyond 8 per agent the answer is 429 with Retry-After."""
    import select
    import socket

    _, token = gateway.create_agent("greedy")
    _, other = gateway.create_agent("other")
    host, port = gateway.url.split("//")[1].split(":")
    request = (f"GET /proxy/governance/watch?wait=8 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n").encode()
    held = []
    try:
        for _ in range(20):
            s = socket.create_connection((host, int(port)))
            s.sendall(request)
            held.append(s)
        deadline = time.monotonic() + 7  # before the held watches (wait=8) end
        resp = _watch(gateway, token, "0")
        while resp.status_code != 429 and time.monotonic() < deadline:
            time.sleep(0.05)
            resp = _watch(gateway, token, "0")
        assert resp.status_code == 429, resp.text
        assert resp.json()["error"] == "too_many_watches" and "at most 8" in resp.json()["message"]
        assert int(resp.headers["Retry-After"]) >= 1
        assert _watch(gateway, other, "0").status_code == 200  # another agent is not affected
        assert gateway.check(token, "read:workspace", "notes.txt").status_code in (200, 403)  # checks still answer
        refused, waiting = 0, list(held)  # the watches beyond the cap are answered 429 at once, 8 are held
        while waiting and time.monotonic() < deadline:
            ready, _, _ = select.select(waiting, [], [], 0.2)
            for s in ready:
                answer = s.recv(200)
                if b" 429 " in answer:  # and the gateway closes the connection: it keeps no descriptor
                    s.settimeout(5)
                    while answer:
                        answer = s.recv(4096)
                    refused += 1
                waiting.remove(s)
        assert refused == 20 - 8 and len(waiting) == 8
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 20  # the held ones end with their wait: the agent can watch again
    while _watch(gateway, token, "0").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_gateway_start_raises_the_soft_open_file_limit() -> None:
    import subprocess
    import sys

    code = ("import resource; soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE); "
            "resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard)); "
            "from meshguard_gateway.server import raise_open_file_limit; raise_open_file_limit(); "
            "now = resource.getrlimit(resource.RLIMIT_NOFILE); "
            "print(now[0] == (hard if hard != resource.RLIM_INFINITY else max(256, 65536)), now)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("True"), out.stdout + out.stderr
