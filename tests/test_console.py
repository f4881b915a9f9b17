"""The web console over HTTP: sign-in, sessions, CSRF and origin checks, security headers, the live
feed's stream and its subscription, what the pages show. A real gateway process (the `gateway`
fixtures); the browser-driven tests are in test_console_browser.py."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from meshguard_gateway.config import Settings, load_settings, prepare_state
from meshguard_gateway.console import MAX_STREAMS_PER_SESSION, SESSION_SECONDS, SessionStore, feed_messages, sse_message
from meshguard_gateway.engine import Agent, Engine, Request
from meshguard_gateway.errors import ConfigError
from meshguard_gateway.gateway import Gateway
from meshguard_gateway.policy import PolicySet, parse_policy
from meshguard_gateway.store import SQLiteStore
from tests.conftest import ADMIN_TOKEN, JWT_SECRET, POLICIES, LiveGateway

APPROVAL_POLICY = """\
name: careful
appliesTo:
  tags: [ops]
rules:
  - effect: allow
    actions: ["read:*", "execute:deploy"]
defaultEffect: deny
humanInTheLoop:
  requireApproval: ["execute:deploy"]
"""


def sign_in(gw: LiveGateway, operator: str = "alice", token: str = ADMIN_TOKEN, **headers: str) -> httpx.Client:
    """A client holding a console session (asserts the sign-in worked)."""
    client = httpx.Client(base_url=gw.url, timeout=30)
    resp = client.post("/console/login", data={"operator": operator, "token": token},
                       headers={"Origin": gw.url, **headers})  # fmt: skip
    assert resp.status_code == 303, resp.text
    assert resp.headers["location"] == "/console/feed"
    return client


def csrf_of(client: httpx.Client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def agent_status(gw: LiveGateway, name: str) -> str:
    return str(gw.admin("GET", f"/admin/agents/{name}").json()["status"])


def test_console_shows_nothing_before_sign_in(gateway: LiveGateway) -> None:
    _, token = gateway.create_agent("quiet-bot")
    assert gateway.check(token, "read:web", "https://example.com").status_code == 200
    for path in ("/console/feed", "/console/agents", "/console/approvals", "/console/stats",
                 "/console/traces/anything", "/console/agents/quiet-bot/revoke", "/console/approvals/list"):  # fmt: skip
        resp = httpx.get(gateway.url + path)
        assert resp.status_code == 303, path
        assert resp.headers["location"].startswith("/console/login?next="), path
        assert "quiet-bot" not in resp.text and "read:web" not in resp.text
    stream = httpx.get(gateway.url + "/console/feed/events")
    assert stream.status_code == 401
    # a forged or stale cookie is no session either
    forged = httpx.get(gateway.url + "/console/feed", cookies={"meshguard_console": "abc.def"})
    assert forged.status_code == 303
    # the admin token header is not a console session, and a console session is not the admin API
    assert httpx.get(gateway.url + "/console/feed", headers={"X-Admin-Token": ADMIN_TOKEN}).status_code == 303
    client = sign_in(gateway)
    assert client.get("/admin/agents").status_code == 401


def test_console_sign_in_sets_a_strict_session_cookie_and_a_wrong_token_gets_none(gateway: LiveGateway) -> None:
    wrong = httpx.post(gateway.url + "/console/login", data={"operator": "mallory", "token": "guess"},
                       headers={"Origin": gateway.url})  # fmt: skip
    assert wrong.status_code == 401
    assert "set-cookie" not in wrong.headers
    assert "not the admin token of this gateway" in wrong.text

    right = httpx.post(gateway.url + "/console/login", data={"operator": "alice", "token": ADMIN_TOKEN},
                       headers={"Origin": gateway.url})  # fmt: skip
    assert right.status_code == 303
    cookie = right.headers["set-cookie"]
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
    assert {"httponly", "max-age", "path"} <= attributes
    assert "samesite=strict" in cookie.lower() and "path=/console" in cookie.lower()
    assert "secure" not in attributes  # plain http on loopback: a Secure cookie would never come back
    assert ADMIN_TOKEN not in cookie


def test_console_cookie_is_secure_when_served_over_https(start_gateway: Callable[..., LiveGateway]) -> None:
    """Behind a TLS-terminating proxy on the same host (X-Forwarded-Proto from 127.0.0.1, trusted
    because FORWARDED_ALLOW_IPS says so)."""
    gateway = start_gateway(env={"FORWARDED_ALLOW_IPS": "127.0.0.1"})
    https_origin = gateway.url.replace("http://", "https://")
    resp = httpx.post(gateway.url + "/console/login", data={"operator": "alice", "token": ADMIN_TOKEN},
                      headers={"Origin": https_origin, "X-Forwarded-Proto": "https"})  # fmt: skip
    assert resp.status_code == 303, resp.text
    attributes = {a.strip().lower() for a in resp.headers["set-cookie"].split(";")}
    assert "secure" in attributes


def test_console_pages_send_a_strict_content_security_policy(gateway: LiveGateway) -> None:
    client = sign_in(gateway)
    for path in ("/console/login", "/console/feed", "/console/agents", "/console/approvals", "/console/stats"):
        resp = client.get(path, follow_redirects=True)
        assert resp.status_code == 200, path
        csp = resp.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert resp.headers["x-frame-options"] == "DENY"
        assert resp.headers["cache-control"] == "no-store"
        # no inline script: every <script> has a src, or is a JSON data block
        for tag in re.findall(r"<script\b[^>]*>", resp.text):
            assert "src=" in tag or 'type="application/json"' in tag, (path, tag)
    assert client.get("/console/static/htmx.min.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/console/static/../console.py").status_code == 404


def test_console_change_without_csrf_token_or_from_another_origin_is_refused(gateway: LiveGateway) -> None:
    gateway.create_agent("target-bot")
    client = sign_in(gateway)
    token = csrf_of(client, "/console/agents/target-bot/revoke")
    form = {"confirm": "target-bot"}

    no_token = client.post("/console/agents/target-bot/revoke", data=form, headers={"Origin": gateway.url})
    assert no_token.status_code == 403 and "CSRF" in no_token.text
    stale = client.post("/console/agents/target-bot/revoke", data={**form, "csrf_token": token + "x"},
                        headers={"Origin": gateway.url})  # fmt: skip
    assert stale.status_code == 403
    elsewhere = client.post("/console/agents/target-bot/revoke", data={**form, "csrf_token": token},
                            headers={"Origin": "https://evil.example"})  # fmt: skip
    assert elsewhere.status_code == 403 and "evil.example" in elsewhere.text
    odd = client.post("/console/agents/target-bot/revoke", data={**form, "csrf_token": "é" + token},
                      headers={"Origin": gateway.url})  # fmt: skip
    assert odd.status_code == 403
    odd_cookie = httpx.get(gateway.url + "/console/feed", headers={"Cookie": "meshguard_console=é.é".encode()})
    assert odd_cookie.status_code == 303
    silent = client.post("/console/agents/target-bot/revoke", data={**form, "csrf_token": token})
    assert silent.status_code == 403  # neither Origin nor Referer: fail closed
    assert agent_status(gateway, "target-bot") == "active"

    done = client.post("/console/agents/target-bot/revoke", data={**form, "csrf_token": token},
                       headers={"Origin": gateway.url})  # fmt: skip
    assert done.status_code == 303
    assert agent_status(gateway, "target-bot") == "revoked"
    # the audit names the operator who revoked it, as for approvals
    admin_rows = gateway.admin("GET", "/admin/audit", params={"kind": "admin", "agent": "target-bot"}).json()["entries"]
    revoked = [e for e in admin_rows if e["decision"] == "agent_revoked"]
    assert [e["actor"] for e in revoked] == ["console:alice"], revoked


def test_console_sign_in_from_another_origin_is_refused(gateway: LiveGateway) -> None:
    resp = httpx.post(gateway.url + "/console/login", data={"operator": "alice", "token": ADMIN_TOKEN},
                      headers={"Origin": "http://evil.example"})  # fmt: skip
    assert resp.status_code == 403
    assert "set-cookie" not in resp.headers


def test_console_failed_sign_ins_are_rate_limited(gateway: LiveGateway) -> None:
    url = gateway.url + "/console/login"
    for _ in range(5):
        resp = httpx.post(url, data={"operator": "mallory", "token": "guess"}, headers={"Origin": gateway.url})
        assert resp.status_code == 401
    limited = httpx.post(url, data={"operator": "mallory", "token": "guess"}, headers={"Origin": gateway.url})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    # while limited, even the right token is refused (a guesser cannot tell when it hit)
    right = httpx.post(url, data={"operator": "alice", "token": ADMIN_TOKEN}, headers={"Origin": gateway.url})
    assert right.status_code == 429 and "set-cookie" not in right.headers


def test_console_sign_out_ends_the_session_on_the_server(gateway: LiveGateway) -> None:
    client = sign_in(gateway)
    cookie = client.cookies["meshguard_console"]
    token = csrf_of(client, "/console/feed")
    out = client.post("/console/logout", data={"csrf_token": token}, headers={"Origin": gateway.url})
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    # the old cookie, replayed, is worth nothing now
    replay = httpx.get(gateway.url + "/console/feed", cookies={"meshguard_console": cookie})
    assert replay.status_code == 303 and replay.headers["location"].startswith("/console/login")


def test_console_approval_is_recorded_as_the_signed_in_operator(start_gateway: Callable[..., LiveGateway],
                                                                tmp_path: Path) -> None:  # fmt: skip
    policy = tmp_path / "careful.yaml"
    policy.write_text(APPROVAL_POLICY)
    gw = start_gateway(policy)
    _, token = gw.create_agent("deployer", tags=["ops"])
    asked = httpx.post(gw.url + "/proxy/governance/check", headers={"Authorization": f"Bearer {token}",
                       "X-Trace-Id": "trace_deploy_1"}, json={"action": "execute:deploy", "resource": "prod",
                       "context": {"sandbox": False, "ticket": "OPS-7"}})  # fmt: skip
    assert asked.status_code == 403
    approval_id = asked.json()["approval_id"]

    client = sign_in(gw, operator="Alice Ops")
    page = client.get("/console/approvals")
    assert approval_id in page.text and "execute:deploy" in page.text and "OPS-7" in page.text
    assert "trace_deploy_1" in page.text
    token_ = csrf_of(client, "/console/approvals")
    resp = client.post(f"/console/approvals/{approval_id}/decide", headers={"Origin": gw.url},
                       data={"csrf_token": token_, "verdict": "approve", "reason": "release window"})  # fmt: skip
    assert resp.status_code == 303

    approval = gw.admin("GET", f"/admin/approvals/{approval_id}").json()
    assert approval["status"] == "approved"
    assert approval["decided_by"] == "console:Alice Ops" and approval["decision_reason"] == "release window"
    # deciding it again is refused with the gateway's reason, as a page, not a crash
    again = client.post(f"/console/approvals/{approval_id}/decide", headers={"Origin": gw.url},
                        data={"csrf_token": token_, "verdict": "deny"})  # fmt: skip
    assert again.status_code == 409 and "already approved" in again.text


def test_console_agents_page_shows_rate_limit_usage_against_each_limit(gateway: LiveGateway) -> None:
    _, token = gateway.create_agent("busy-bot")
    for i in range(3):
        assert gateway.check(token, "read:workspace", f"f{i}.txt").status_code == 200
    client = sign_in(gateway)
    page = client.get("/console/agents").text
    assert "busy-bot" in page
    assert "3 / 30 requests per minute" in page and "3 / 500 requests per hour" in page  # policies/autogpt.yaml


def _read_events(stream: httpx.Response, want: Callable[[str], bool], timeout: float = 30) -> str:
    """Read SSE text until `want(text so far)`; the read runs in a thread so a stuck stream fails the test."""
    seen: list[str] = []
    done = threading.Event()

    def read() -> None:
        for chunk in stream.iter_text():
            seen.append(chunk)
            if want("".join(seen)):
                break
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(timeout), "".join(seen)
    return "".join(seen)


def _listeners(client: httpx.Client) -> int:
    found = re.search(r'id="listeners">(\d+)<', client.get("/console/stats").text)
    assert found
    return int(found.group(1))


def test_console_feed_streams_matching_decisions_and_lets_go_of_a_closed_browser(gateway: LiveGateway) -> None:
    _, token = gateway.create_agent("streamer")
    _, other = gateway.create_agent("other-bot")
    client = sign_in(gateway)
    assert _listeners(client) == 0
    with client.stream("GET", "/console/feed/events", params={"agent": "streamer", "decision": "deny"}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        deadline = time.monotonic() + 30
        while _listeners(client) != 1:
            assert time.monotonic() < deadline, "the stream never subscribed"
            time.sleep(0.05)
        assert gateway.check(other, "execute:shell", "rm -rf /tmp/other").status_code == 403  # other agent
        assert gateway.check(token, "read:web", "https://example.com").status_code == 200  # not a deny
        assert gateway.check(token, "execute:shell", "ls /secret").status_code == 403
        text = _read_events(stream, lambda t: "ls /secret" in t)
    assert "event: decision" in text
    assert "rm -rf /tmp/other" not in text and "example.com" not in text
    # the browser went away: its subscription is closed
    deadline = time.monotonic() + 30
    while _listeners(client) != 0:
        assert time.monotonic() < deadline, "the closed stream still holds its subscription"
        time.sleep(0.05)


def _core_settings(tmp_path: Path) -> Settings:
    """Settings for a gateway core run inside the test (no HTTP server)."""
    return prepare_state(Settings(state_dir=tmp_path / "s", policies_dir=POLICIES, jwt_secret=JWT_SECRET,
                                  admin_token=ADMIN_TOKEN, db_path=tmp_path / "m.db"))  # fmt: skip


def test_console_feed_tells_a_browser_that_fell_behind_how_many_events_it_missed(tmp_path: Path) -> None:
    """The gap message, on a real gateway core: a listener whose queue overflowed hears how many
    events it missed, then the live events again."""
    settings = _core_settings(tmp_path)

    async def go() -> list[bytes]:
        gw = Gateway(settings, SQLiteStore(settings.database))
        await gw.start()
        sub = gw.events.subscribe("slow browser", maxsize=3)
        try:
            agent, _, _ = await gw.create_agent("flood", "verified", ["autogpt"])
            for i in range(10):  # nobody reads while these happen
                await gw.check(agent, "read:workspace", f"f{i}.txt")
            messages = feed_messages(sub, lambda e: [sse_message("decision", e.kind)],
                                     lambda n: sse_message("gap", str(n)), keepalive=0.05)  # fmt: skip
            out = [await messages.__anext__() for _ in range(4)]
            await gw.check(agent, "read:workspace", "after.txt")
            out.append(await messages.__anext__())
            await messages.aclose()
            return out
        finally:
            sub.close()
            await gw.close()

    out = asyncio.run(go())
    # 11 events (agent_created + 10 checks), 3 kept: the first read tells of the 8 missed
    assert out[0] == sse_message("gap", "8")
    assert out[1:] == [sse_message("decision", "agent_created"), sse_message("decision", "audit"),
                       sse_message("decision", "audit"), sse_message("decision", "audit")]  # fmt: skip


def test_engine_rate_limit_usage_reads_counters_without_counting() -> None:
    policy = parse_policy(
        "name: p\nappliesTo: {tags: [a]}\nrules:\n  - id: web\n    effect: allow\n    actions: ['read:*']\n"
        "    conditions: {rateLimit: {requestsPerMinute: 2}}\nrateLimits: {requestsPerMinute: 5, requestsPerHour: 9}\n",
        source="p.yaml",
    )
    engine = Engine(PolicySet((policy,)))
    agent = Agent("agent_1", "one", "verified", frozenset({"a"}))
    for t in (0.0, 1.0, 2.0):
        engine.decide(Request(agent, "read:web", None, None), t)
    first = [(u.policy, u.rule, u.seconds, u.maximum, u.used) for u in engine.rate_limit_usage(agent, 10.0)]
    again = [(u.policy, u.rule, u.seconds, u.maximum, u.used) for u in engine.rate_limit_usage(agent, 10.0)]
    assert first == again == [
        ("p", None, 60.0, 5, 2), ("p", None, 3600.0, 9, 2), ("p", "web", 60.0, 2, 2),
    ]  # the third read was rate limited by the rule: not counted anywhere
    later = [(u.seconds, u.used) for u in engine.rate_limit_usage(agent, 70.0)]
    assert later == [(60.0, 0), (3600.0, 2), (60.0, 0)]
    assert engine.rate_limit_usage(Agent("x", "x", "verified", frozenset()), 10.0) == []


def test_console_open_feed_does_not_hold_the_gateway_up_when_it_stops(gateway: LiveGateway) -> None:
    client = sign_in(gateway)
    opened, ended = threading.Event(), threading.Event()
    with client.stream("GET", "/console/feed/events") as stream:

        def read() -> None:
            for chunk in stream.iter_text():
                if "retry:" in chunk:
                    opened.set()
            ended.set()

        threading.Thread(target=read, daemon=True).start()
        assert opened.wait(30)
        gateway.stop()
        assert ended.wait(60), "the feed kept streaming after the gateway stopped"
    assert gateway.proc.returncode == 0
    assert "graceful shutdown exceeded" not in gateway.log()  # the feed ended; nothing had to be cancelled


def test_console_feed_filter_trace_view_and_statistics_show_what_the_audit_trail_holds(gateway: LiveGateway) -> None:
    _, alpha = gateway.create_agent("alpha-bot")
    _, beta = gateway.create_agent("beta-bot")

    def ask(token: str, action: str, resource: str, trace: str) -> int:
        return httpx.post(gateway.url + "/proxy/governance/check", json={"action": action, "resource": resource},
                          headers={"Authorization": f"Bearer {token}", "X-Trace-Id": trace}).status_code  # fmt: skip

    assert ask(alpha, "read:web", "https://example.com/a", "trace_alpha") == 200
    assert ask(alpha, "execute:shell", "uname -a", "trace_alpha") == 403
    assert ask(beta, "execute:shell", "id <b>", "trace_beta") == 403
    assert ask(beta, "send:email", "boss@example.com", "trace_beta") == 403
    client = sign_in(gateway)

    only_alpha = client.get("/console/feed", params={"agent": "alpha-bot"}).text
    assert "uname -a" in only_alpha and "example.com/a" in only_alpha and "boss@example.com" not in only_alpha
    denied = client.get("/console/feed", params={"decision": "deny"}).text
    assert "uname -a" in denied and "boss@example.com" in denied and "example.com/a" not in denied
    assert "id &lt;b&gt;" in denied and "id <b>" not in denied  # what agents send is escaped

    trace = client.get("/console/traces/trace_beta").text
    assert "boss@example.com" in trace and "id &lt;b&gt;" in trace and "uname -a" not in trace
    assert "2 entries by beta-bot" in trace

    stats = client.get("/console/stats").text
    assert re.search(r'id="total">4<', stats) and re.search(r'id="denied">3<', stats)
    data = re.search(r'<script type="application/json" id="stats-data">(.*?)</script>', stats, re.S)
    assert data is not None
    chart = json.loads(data.group(1))
    assert chart["top_denied"][0] == {"action": "execute:shell", "count": 2}
    assert sum(h["allowed"] for h in chart["hourly"]) == 1 and sum(h["denied"] for h in chart["hourly"]) == 3


# --------------------------------------------------------------------------------------------
# Review findings (F2-F4 and the trace link): each test below failed before its fix
# --------------------------------------------------------------------------------------------


def _from(address: str, gw: LiveGateway) -> httpx.Client:
    """A client whose connections come from ``address`` (any 127.x.y.z is this machine's loopback):
    distinct real client addresses, the only kind the gateway may trust."""
    return httpx.Client(base_url=gw.url, timeout=30, transport=httpx.HTTPTransport(local_address=address))


def _attempt(client: httpx.Client, gw: LiveGateway, token: str, **headers: str) -> httpx.Response:
    return client.post("/console/login", data={"operator": "mallory", "token": token},
                       headers={"Origin": gw.url, **headers})  # fmt: skip


def test_console_sign_in_limit_counts_the_real_address_not_a_forwarded_one(gateway: LiveGateway) -> None:
    """Without FORWARDED_ALLOW_IPS, X-Forwarded-For/-Proto are ignored: a local process cannot pick
    a fresh "address" for every guess, nor make the gateway think it is served over https."""
    client = httpx.Client(base_url=gateway.url, timeout=30)
    for i in range(5):
        assert _attempt(client, gateway, "guess", **{"X-Forwarded-For": f"10.0.0.{i}"}).status_code == 401
    limited = _attempt(client, gateway, "guess", **{"X-Forwarded-For": "10.0.0.99"})
    assert limited.status_code == 429
    https = httpx.post(gateway.url + "/console/login", data={"operator": "alice", "token": ADMIN_TOKEN},
                       headers={"Origin": gateway.url, "X-Forwarded-Proto": "https"})  # fmt: skip
    assert https.status_code == 429  # the same (real) address, still limited
    other = _from("127.0.0.2", gateway)
    plain = other.post("/console/login", data={"operator": "alice", "token": ADMIN_TOKEN},
                       headers={"Origin": gateway.url, "X-Forwarded-Proto": "https"})  # fmt: skip
    assert plain.status_code == 303
    assert "secure" not in {a.strip().lower() for a in plain.headers["set-cookie"].split(";")}


def test_console_overall_sign_in_limit_refuses_failures_but_lets_the_right_token_in(gateway: LiveGateway) -> None:
    """30 failures a minute from many addresses shut out further guesses, not the operator."""
    for n in range(2, 8):  # 6 addresses x 5 failures = the overall 30 a minute
        guesser = _from(f"127.0.0.{n}", gateway)
        for _ in range(5):
            assert _attempt(guesser, gateway, "guess").status_code == 401
    fresh = _from("127.0.0.20", gateway)
    wrong = _attempt(fresh, gateway, "another guess")
    assert wrong.status_code == 429 and int(wrong.headers["retry-after"]) >= 1 and "set-cookie" not in wrong.headers
    right = fresh.post("/console/login", data={"operator": "alice", "token": ADMIN_TOKEN},
                       headers={"Origin": gateway.url})  # fmt: skip
    assert right.status_code == 303 and "meshguard_console=" in right.headers["set-cookie"]
    assert fresh.get("/console/feed").status_code == 200
    # an address over its own limit stays shut, right token or not
    shut = _from("127.0.0.2", gateway)
    assert shut.post("/console/login", data={"operator": "alice", "token": ADMIN_TOKEN},
                     headers={"Origin": gateway.url}).status_code == 429  # fmt: skip


def test_console_refuses_a_host_it_is_not_served_at(gateway: LiveGateway) -> None:
    """DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 sends Host and
    Origin both evil.example. Refused before anything is counted or shown."""
    port = gateway.url.rsplit(":", 1)[1]
    evil = f"rebind.evil.example:{port}"
    for _ in range(6):
        resp = httpx.post(gateway.url + "/console/login", data={"operator": "m", "token": "guess"},
                          headers={"Origin": f"http://{evil}", "Host": evil})  # fmt: skip
        assert resp.status_code == 421 and "rebind.evil.example" in resp.text
    assert httpx.get(gateway.url + "/console/login", headers={"Host": evil}).status_code == 421
    # nothing was counted: this address may still fail normally
    assert _attempt(httpx.Client(base_url=gateway.url), gateway, "guess").status_code == 401
    # the gateway's own names are fine
    local = f"http://localhost:{port}"
    ok = httpx.post(gateway.url + "/console/login", data={"operator": "alice", "token": ADMIN_TOKEN},
                    headers={"Origin": local, "Host": f"localhost:{port}"})  # fmt: skip
    assert ok.status_code == 303


def test_console_behind_a_trusted_proxy_uses_its_headers_and_public_name(
        start_gateway: Callable[..., LiveGateway]) -> None:  # fmt: skip
    """FORWARDED_ALLOW_IPS names the proxy (here on this host); ALERT_GATEWAY_URL the public address."""
    gw = start_gateway(env={"FORWARDED_ALLOW_IPS": "127.0.0.1", "ALERT_GATEWAY_URL": "https://guard.example.test"})
    resp = httpx.post(gw.url + "/console/login", data={"operator": "alice", "token": ADMIN_TOKEN},
                      headers={"Origin": "https://guard.example.test", "Host": "guard.example.test",
                               "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"})  # fmt: skip
    assert resp.status_code == 303, resp.text
    assert "secure" in {a.strip().lower() for a in resp.headers["set-cookie"].split(";")}
    assert "signed in from 203.0.113.7" in gw.log()
    other = httpx.get(gw.url + "/console/login", headers={"Host": "other.example.test"})
    assert other.status_code == 421


@pytest.mark.parametrize("target", ["/console/\u0100", "/console/x\r\nSet-Cookie: a=b", "/console/a b",
                                    "/console/\x7f"])  # fmt: skip
def test_console_odd_next_target_never_breaks_sign_in(gateway: LiveGateway, target: str) -> None:
    resp = httpx.post(gateway.url + "/console/login", data={"operator": "bob", "token": ADMIN_TOKEN, "next": target},
                      headers={"Origin": gateway.url})  # fmt: skip
    assert resp.status_code == 303 and resp.headers["location"] == "/console/feed"
    client = sign_in(gateway)
    again = client.get("/console/login", params={"next": target})
    assert again.status_code == 303 and again.headers["location"] == "/console/feed"
    page = httpx.get(gateway.url + "/console/login", params={"next": target})
    assert page.status_code == 200 and "\r" not in page.text.split('name="next"')[1].split(">")[0]


def test_console_a_page_address_with_odd_characters_round_trips_through_sign_in(gateway: LiveGateway) -> None:
    """A signed-out browser at a console address with non-ASCII in it is sent to sign in and back."""
    first = httpx.get(gateway.url + "/console/traces/caf\u00e9")
    assert first.status_code == 303
    nxt = httpx.URL(first.headers["location"]).params["next"]
    resp = httpx.post(gateway.url + "/console/login", data={"operator": "bob", "token": ADMIN_TOKEN, "next": nxt},
                      headers={"Origin": gateway.url})  # fmt: skip
    assert resp.status_code == 303
    assert resp.headers["location"] in ("/console/traces/caf%C3%A9", "/console/feed")


def _wait_listeners(client: httpx.Client, n: int) -> None:
    deadline = time.monotonic() + 30
    while _listeners(client) != n:
        assert time.monotonic() < deadline, f"live feeds never reached {n}"
        time.sleep(0.05)


def _ends(stream: httpx.Response, timeout: float = 30) -> str:
    """Everything the stream sends until it ends; fails the test if it does not end in time."""
    seen: list[str] = []
    ended = threading.Event()

    def read() -> None:
        try:
            for chunk in stream.iter_text():
                seen.append(chunk)
        except httpx.HTTPError:
            pass
        ended.set()

    threading.Thread(target=read, daemon=True).start()
    assert ended.wait(timeout), "the stream kept going: " + "".join(seen)[-500:]
    return "".join(seen)


def test_console_open_live_feeds_end_when_the_session_is_signed_out(gateway: LiveGateway) -> None:
    """A copied cookie stops working, open streams included (feed and approvals)."""
    _, token = gateway.create_agent("streamer")
    client = sign_in(gateway)
    watcher = sign_in(gateway, operator="watcher")
    csrf = csrf_of(client, "/console/feed")
    copied = httpx.Client(base_url=gateway.url, timeout=30, cookies={"meshguard_console": client.cookies["meshguard_console"]})
    with copied.stream("GET", "/console/feed/events") as feed, copied.stream("GET", "/console/approvals/events") as appr:
        _wait_listeners(watcher, 1)
        out = client.post("/console/logout", data={"csrf_token": csrf}, headers={"Origin": gateway.url})
        assert out.status_code == 303
        assert gateway.check(token, "execute:shell", "cat /etc/secret-after-logout").status_code == 403
        assert "secret-after-logout" not in _ends(feed)
        _ends(appr)
    _wait_listeners(watcher, 0)


def test_console_feed_messages_stop_once_the_session_is_no_longer_valid(tmp_path: Path) -> None:
    """Expiry, on the real gateway core with a clock the test moves: the stream ends at the first
    message or keep-alive after the session expired, and delivers nothing after it."""
    settings = _core_settings(tmp_path)
    now = [1_000_000.0]
    sessions = SessionStore(lambda: now[0])
    session, cookie = sessions.create("console:alice")

    async def go() -> list[bytes]:
        gw = Gateway(settings, SQLiteStore(settings.database))
        await gw.start()
        sub = gw.events.subscribe("browser", maxsize=10)
        try:
            agent, _, _ = await gw.create_agent("bot", "verified", ["autogpt"])
            messages = feed_messages(sub, lambda e: [sse_message("decision", e.kind)], lambda n: b"",
                                     keepalive=0.05, still_valid=lambda: sessions.valid(session))  # fmt: skip
            out = [await messages.__anext__(), await messages.__anext__()]  # the agent, then a keep-alive
            now[0] += SESSION_SECONDS + 1
            await gw.check(agent, "read:workspace", "after-expiry.txt")
            out.extend([m async for m in messages])
            return out
        finally:
            sub.close()
            await gw.close()

    out = asyncio.run(go())
    assert out == [sse_message("decision", "agent_created"), b": keep-alive\n\n"]
    assert sessions.get(cookie) is None


def test_console_trace_id_with_a_slash_links_to_its_trace(gateway: LiveGateway) -> None:
    _, token = gateway.create_agent("tracer")
    trace_id = "run/42?x#y%2F"
    resp = httpx.post(gateway.url + "/proxy/governance/check", json={"action": "read:web", "resource": "https://a.example"},
                      headers={"Authorization": f"Bearer {token}", "X-Trace-Id": trace_id})  # fmt: skip
    assert resp.status_code == 200
    client = sign_in(gateway)
    feed = client.get("/console/feed").text
    link = re.search(r'<a href="(/console/traces/[^"]+)">run/42', feed)
    assert link is not None, feed
    assert link.group(1) == "/console/traces/run%2F42%3Fx%23y%252F"
    page = client.get(link.group(1))
    assert page.status_code == 200 and "https://a.example" in page.text and "1 entr" in page.text


def test_forwarded_allow_ips_setting_is_checked_and_off_by_default() -> None:
    assert load_settings({}).forwarded_allow_ips is None
    assert load_settings({"FORWARDED_ALLOW_IPS": " 127.0.0.1, 10.0.0.0/8 ,::1"}).forwarded_allow_ips == \
        "127.0.0.1,10.0.0.0/8,::1"  # fmt: skip
    assert load_settings({"FORWARDED_ALLOW_IPS": "*"}).forwarded_allow_ips == "*"
    with pytest.raises(ConfigError, match="FORWARDED_ALLOW_IPS.*proxy.lan"):
        load_settings({"FORWARDED_ALLOW_IPS": "127.0.0.1,proxy.lan"})


def test_console_caps_the_live_streams_one_session_holds_open(gateway: LiveGateway) -> None:
    client = sign_in(gateway)
    watcher = sign_in(gateway, operator="watcher")
    cookie = {"meshguard_console": client.cookies["meshguard_console"]}
    browsers = [httpx.Client(base_url=gateway.url, timeout=30, cookies=cookie) for _ in range(MAX_STREAMS_PER_SESSION)]
    streams = [b.stream("GET", "/console/feed/events") for b in browsers]
    try:
        for s in streams:
            assert s.__enter__().status_code == 200
        _wait_listeners(watcher, MAX_STREAMS_PER_SESSION)
        refused = client.get("/console/feed/events")
        assert refused.status_code == 429 and "close some tabs" in refused.text
        with watcher.stream("GET", "/console/approvals/events") as other_session:
            assert other_session.status_code == 200  # the cap is per session
    finally:
        for s in streams:
            s.__exit__(None, None, None)
    _wait_listeners(watcher, 0)
    with client.stream("GET", "/console/feed/events") as again:
        assert again.status_code == 200
