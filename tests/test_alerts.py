"""Webhook alerts end to end: a real gateway process posts to a real HTTP receiver on 127.0.0.1.

What a user relies on: each of the four events arrives, in the generic JSON body and in Slack's,
with the ids that lead back to the audit trail; a receiver that is down, failing or hanging is
retried, never slows a check, and every attempt is listed by `meshguard alert list`; a hammering
agent produces a few summary alerts, not one per request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.alert_receiver import Receiver, closed_port_url, wait_until
from tests.conftest import ROOT, LiveGateway

pytestmark = pytest.mark.timeout(240)

SECRET = "alert-signing-secret-0123456789"
POLICY = textwrap.dedent(
    """\
    name: alerting
    appliesTo:
      tags: [alerting]
    rules:
      - effect: allow
        actions: ["read:*"]
        conditions:
          rateLimit: {requestsPerHour: 3}  # an hour: a slow machine cannot outlast the window
      - effect: allow
        actions: ["send:email"]
      - effect: deny
        actions: ["execute:shell"]
    humanInTheLoop:
      requireApproval: ["send:email"]
    defaultEffect: deny
    """
)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def alerting(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> Callable[..., LiveGateway]:
    """Start a gateway with the test policy and these alert destinations (and ALERT_* settings)."""
    (tmp_path / "alerting.yaml").write_text(POLICY)

    def start(destinations: list[dict[str, Any]], mode: str = "enforce", **settings: Any) -> LiveGateway:
        env = {"ALERT_WEBHOOKS": json.dumps(destinations), "ALERT_RETRY_BASE_SECONDS": "0.05",
               **{f"ALERT_{k.upper()}": str(v) for k, v in settings.items()}}  # fmt: skip
        return start_gateway(tmp_path / "alerting.yaml", mode=mode, env=env)

    return start


def cli(gw: LiveGateway, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHGUARD_") and k != "COLUMNS"}
    env.update(PYTHONPATH=str(ROOT), MESHGUARD_URL=gw.url, MESHGUARD_ADMIN_TOKEN=gw.admin_token,
               HOME=str(gw.state_dir.parent / "home"))  # fmt: skip
    return subprocess.run([sys.executable, "-m", "meshguard_gateway", *args], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def attempts(gw: LiveGateway, failed: bool = False) -> list[dict[str, Any]]:
    resp = gw.admin("GET", "/admin/alerts", params={"failed": str(failed).lower(), "limit": 1000})
    assert resp.status_code == 200, resp.text
    return list(reversed(resp.json()["deliveries"]))  # oldest first



def test_the_four_events_arrive_in_both_formats(alerting: Callable[..., LiveGateway], receiver: Receiver) -> None:
    gw = alerting([
        {"name": "ops", "url": receiver.url("/ops?key=s3cret"), "format": "json", "secret": SECRET},
        {"name": "chat", "url": receiver.url("/services/T0/B0/slacksecret"), "format": "slack"},
    ], coalesce_seconds=3600)  # fmt: skip
    agent_id, token = gw.create_agent("bot", tags=["alerting"])
    denied = gw.check(token, "execute:shell", "ls -la")
    assert denied.status_code == 403
    reads = [gw.check(token, "read:web", f"https://example.com/{i}") for i in range(4)]
    assert [r.status_code for r in reads] == [200, 200, 200, 429]
    asked = gw.check(token, "send:email", "boss@example.com")
    assert asked.status_code == 403 and asked.json()["decision"] == "approval_required"
    assert gw.admin("PATCH", "/admin/agents/bot", json={"tags": ["alerting", "x"]}).status_code == 200  # no alert
    assert gw.admin("DELETE", "/admin/agents/bot").status_code == 200

    json_path, slack_path = "/ops?key=s3cret", "/services/T0/B0/slacksecret"
    wait_until("4 alerts at each destination", lambda: len(receiver.at(json_path)) == 4 == len(receiver.at(slack_path)))

    generic = {r.json()["event"]: r for r in receiver.at(json_path)}
    assert set(generic) == {"deny", "rate_limited", "approval_requested", "agent_revoked"}
    deny = generic["deny"].json()
    answer = denied.json()
    assert deny["type"] == "meshguard.alert" and deny["version"] == 1
    assert (deny["agent_id"], deny["agent_name"], deny["action"], deny["resource"]) == (agent_id, "bot", "execute:shell", "ls -la")
    assert (deny["decision"], deny["enforced"], deny["policy"]) == ("deny", True, "alerting")
    assert deny["rule"] and deny["reason"] and deny["summary"].startswith("MeshGuard denied execute:shell")
    assert (deny["decision_id"], deny["trace_id"]) == (answer["decision_id"], answer["trace_id"])
    assert deny["gateway_url"] == gw.url and deny["timestamp"].endswith("Z") and deny["folded"] == 0
    limited = generic["rate_limited"].json()
    assert (limited["decision"], limited["resource"], limited["decision_id"]) == (
        "rate_limited", "https://example.com/3", reads[3].json()["decision_id"])
    approval = generic["approval_requested"].json()
    approval_id = asked.json()["approval_id"]
    assert approval["approval_id"] == approval_id and approval["decision"] == "approval_required"
    assert approval["approve_command"] == f"meshguard approval approve {approval_id}"
    assert approval["approval_expires_at"].endswith("Z")
    revoked = generic["agent_revoked"].json()
    assert (revoked["agent_id"], revoked["agent_name"], revoked["decision"]) == (agent_id, "bot", "agent_revoked")

    # the JSON destination has a secret: every body is signed with it, the Slack one is not
    for r in receiver.at(json_path):
        stamp, mac = (part.split("=", 1)[1] for part in r.headers["x-meshguard-signature"].split(","))
        assert hmac.compare_digest(mac, hmac.new(SECRET.encode(), f"{stamp}.".encode() + r.body, hashlib.sha256).hexdigest())
        assert r.headers["x-meshguard-event"] == r.json()["event"] and r.headers["content-type"] == "application/json"

    slack = {r.headers["x-meshguard-event"]: r.json() for r in receiver.at(slack_path)}
    assert set(slack) == set(generic)
    assert all("x-meshguard-signature" not in r.headers for r in receiver.at(slack_path))
    for event, body in slack.items():
        assert set(body) == {"text", "blocks"} and "bot" in body["text"], (event, body)
        assert body["blocks"][0]["type"] == "header" and body["blocks"][-1]["type"] == "context"
    assert "execute:shell" in slack["deny"]["text"] and answer["decision_id"] in json.dumps(slack["deny"]["blocks"])
    assert f"meshguard approval approve {approval_id}" in json.dumps(slack["approval_requested"]["blocks"])
    assert "revoked" in slack["agent_revoked"]["text"]

    # every delivery is listed, with the URL shown without its secret path and query
    rows = attempts(gw)
    assert len(rows) == 8 and {r["outcome"] for r in rows} == {"delivered"} and {r["http_status"] for r in rows} == {200}
    assert {r["url"] for r in rows} == {f"http://127.0.0.1:{receiver.port}/…"}
    listed = cli(gw, "alert", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("delivered") == 8 and "approval_requested" in listed.stdout
    assert "slacksecret" not in listed.stdout + listed.stderr and "s3cret" not in listed.stdout + listed.stderr
    metrics = httpx.get(gw.url + "/metrics", timeout=10).text
    assert 'meshguard_alerts_delivered_total{destination="ops"} 4.0' in metrics
    assert "slacksecret" not in gw.log() and "s3cret" not in gw.log() and SECRET not in gw.log()


def test_a_failing_receiver_is_retried_and_a_dead_one_given_up_every_attempt_listed(
    alerting: Callable[..., LiveGateway], receiver: Receiver
) -> None:
    receiver.answer("/flaky", 500, 200)
    gw = alerting([{"name": "flaky", "url": receiver.url("/flaky")}, {"name": "down", "url": closed_port_url()}],
                  max_attempts=3)  # fmt: skip
    _, token = gw.create_agent("bot", tags=["alerting"])
    assert gw.check(token, "execute:shell", "rm -rf /").status_code == 403

    def finished() -> list[dict[str, Any]] | None:
        rows = attempts(gw)
        return rows if sum(r["outcome"] in ("delivered", "failed") for r in rows) == 2 else None

    rows = wait_until("the flaky delivery and the dead one to finish", finished)
    flaky = [(r["attempt"], r["outcome"], r["http_status"], r["error"]) for r in rows if r["destination"] == "flaky"]
    assert flaky == [(1, "retrying", 500, "HTTP 500"), (2, "delivered", 200, None)]
    down = [(r["attempt"], r["outcome"], r["http_status"], r["error"]) for r in rows if r["destination"] == "down"]
    assert down == [(1, "retrying", None, "connection refused"), (2, "retrying", None, "connection refused"),
                    (3, "failed", None, "connection refused")]  # fmt: skip
    sent = receiver.at("/flaky")
    assert [r.headers["x-meshguard-delivery-attempt"] for r in sent] == ["1", "2"]
    assert sent[0].body == sent[1].body  # the same alert, retried

    failed = cli(gw, "alert", "list", "--failed")
    assert failed.returncode == 0, failed.stderr
    assert failed.stdout.count("connection refused") == 3 and "flaky" in failed.stdout  # its 500 attempt
    assert "delivered" not in failed.stdout
    as_json = json.loads(cli(gw, "alert", "list", "--json").stdout)
    assert len(as_json["deliveries"]) == 5 and [d["name"] for d in as_json["destinations"]] == ["flaky", "down"]

    tested = cli(gw, "alert", "test")
    assert tested.returncode == 1 and "1 of 2 destinations" in tested.stderr and "down" in tested.stderr
    assert "delivered" in tested.stdout and "connection refused" in tested.stdout
    assert receiver.at("/flaky")[-1].json()["event"] == "test"
    metrics = httpx.get(gw.url + "/metrics", timeout=10).text
    assert 'meshguard_alerts_failed_total{destination="down"} 2.0' in metrics  # the deny, then the test


def test_a_hanging_receiver_never_holds_a_check_back(alerting: Callable[..., LiveGateway], receiver: Receiver) -> None:
    receiver.hang("/slow")
    gw = alerting([{"name": "slow", "url": receiver.url("/slow")}], timeout_seconds=0.3, max_attempts=2,
                  coalesce_seconds=0, concurrency=2, shutdown_grace_seconds=1)  # fmt: skip
    _, token = gw.create_agent("bot", tags=["alerting"])
    with httpx.Client(timeout=30) as client:
        answers = [
            client.post(gw.url + "/proxy/governance/check", json={"action": "execute:shell", "resource": f"job {i}"},
                        headers={"Authorization": f"Bearer {token}"})  # fmt: skip
            for i in range(30)
        ]
    assert [a.json()["decision"] for a in answers] == ["deny"] * 30  # every check answered while alerts hang

    timed_out = wait_until("a delivery to give up on the hanging receiver", lambda: [
        r for r in attempts(gw, failed=True) if r["outcome"] == "failed"])  # fmt: skip
    assert timed_out[0]["error"] == "timeout: no answer within 0.3 s" and timed_out[0]["http_status"] is None
    assert len(receiver.at("/slow")) >= 2  # it was reached, and never answered

    gw.stop()  # 30 deliveries of 2 x 0.3 s, two at a time, cannot all finish within the 1 s grace
    assert gw.proc.returncode == 0
    with sqlite3.connect(gw.db_path) as db:
        outcomes = dict(db.execute("SELECT outcome, COUNT(*) FROM alert_deliveries GROUP BY outcome").fetchall())
        denied = db.execute("SELECT COUNT(*) FROM audit_log WHERE decision = 'deny'").fetchone()[0]
    assert denied == 30 and outcomes.get("dropped", 0) >= 1 and "delivered" not in outcomes
    assert f"{outcomes['dropped']} deliveries were not made before the gateway stopped" in gw.log()


def test_a_hammering_agent_is_folded_into_one_summary(alerting: Callable[..., LiveGateway], receiver: Receiver) -> None:
    gw = alerting([{"name": "ops", "url": receiver.url("/ops"), "events": ["rate_limited"]}], coalesce_seconds=3600)
    _, token = gw.create_agent("hammer", tags=["alerting"])
    with httpx.Client(timeout=30) as client:
        codes = [client.post(gw.url + "/proxy/governance/check", json={"action": "read:web", "resource": f"p{i}"},
                             headers={"Authorization": f"Bearer {token}"}).status_code for i in range(500)]  # fmt: skip
    limited = codes.count(429)
    assert codes[:3] == [200] * 3 and limited == 497
    wait_until("the first rate-limit alert", lambda: receiver.at("/ops"))
    gw.stop()  # the open window's summary is sent within the shutdown grace period
    bodies = [r.json() for r in receiver.at("/ops")]
    assert [b["event"] for b in bodies] == ["rate_limited", "rate_limited"]  # 497 refusals, 2 webhooks
    assert bodies[0]["folded"] == 0 and bodies[1]["folded"] == limited - 1
    assert bodies[1]["resource"] == "p499" and bodies[1]["folded_since"].endswith("Z")
    assert f"({limited - 1} like it since" in bodies[1]["summary"]


def test_the_flood_guard_sends_its_summary_when_the_window_closes(
    alerting: Callable[..., LiveGateway], receiver: Receiver
) -> None:
    gw = alerting([{"name": "ops", "url": receiver.url("/ops")}], coalesce_seconds=2)
    _, token = gw.create_agent("prober", tags=["alerting"])
    for i in range(30):
        assert gw.check(token, "execute:shell", f"probe {i}").status_code == 403

    def accounted() -> list[dict[str, Any]] | None:
        bodies = [r.json() for r in receiver.at("/ops")]
        # an alert about one event has folded 0; a summary stands for `folded` events
        return bodies if sum(max(1, b["folded"]) for b in bodies) == 30 else None

    bodies = wait_until("every denial to be accounted for, with the gateway still running", accounted)
    assert len(bodies) < 30 and bodies[0]["folded"] == 0 and bodies[-1]["folded"] > 0
    assert gw.proc.poll() is None


def test_audit_mode_alerts_say_what_would_have_happened(alerting: Callable[..., LiveGateway], receiver: Receiver) -> None:
    gw = alerting([{"name": "ops", "url": receiver.url("/ops")}], mode="audit")
    _, token = gw.create_agent("trial", tags=["alerting"])
    answer = gw.check(token, "execute:shell", "ls")
    assert answer.status_code == 200 and answer.json()["decision"] == "deny"  # audit mode refuses nothing
    body = wait_until("the would-deny alert", lambda: receiver.at("/ops"))[0].json()
    assert (body["event"], body["decision"], body["enforced"], body["mode"]) == ("deny", "deny", False, "audit")
    assert body["summary"].startswith("MeshGuard would have denied execute:shell")


def test_alert_routes_need_the_admin_token_and_say_when_nothing_is_configured(gateway: LiveGateway) -> None:
    for method, path in (("GET", "/admin/alerts"), ("POST", "/admin/alerts/test")):
        resp = httpx.request(method, gateway.url + path, timeout=10)
        assert resp.status_code == 401 and resp.json()["error"] == "unauthorized"
    resp = gateway.admin("POST", "/admin/alerts/test")
    assert resp.status_code == 409 and "ALERT_WEBHOOKS" in resp.json()["message"]
    assert gateway.admin("GET", "/admin/alerts").json() == {"deliveries": [], "destinations": []}
    tested = cli(gateway, "alert", "test")
    assert tested.returncode == 1 and tested.stderr.startswith("Error: no alert destinations are configured")


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('[{"url": "https://hooks.example.com/services/T/B/topsecret", "format": "teams"}]',
         "ALERT_WEBHOOKS: destination 1: 'format' is 'teams'"),
        ('[{"url": "ftp://files.example.com/topsecret"}]', "destination 1: 'url' must start with http"),
        ('[{"url": "https://a.example.com/topsecret", "events": ["deny", "explode"]}]', "unknown event(s) 'explode'"),
        ('[{"url": "https://a.example.com/topsecret", "secret": "short"}]', "at least 16 characters"),
        ("[{\"url\": \"https://a.example.com/topsecret\",}]", "ALERT_WEBHOOKS is not valid JSON (line 1"),
    ],
)  # fmt: skip
def test_bad_alert_settings_stop_the_start_naming_the_setting(tmp_path: Path, value: str, words: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESHGUARD_", "ALERT_"))}
    env.update(PYTHONPATH=str(ROOT), HOME=str(tmp_path), ALERT_WEBHOOKS=value)
    proc = subprocess.run([sys.executable, "-m", "meshguard_gateway", "gateway", "start", "--port", "0",
                           "--state-dir", str(tmp_path / "state"), "--policies", str(ROOT / "policies")],
                          env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 1 and words in proc.stderr, proc.stderr
    assert "topsecret" not in proc.stderr and "Traceback" not in proc.stderr
