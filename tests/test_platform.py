"""The AutoGPT Platform governed: `meshguard_autogpt.py platform executor|rest|app` over the stand-in
backend (tests/standins/platform, which mirrors v0.6.44's Block.execute, executor and REST paths) with
a real gateway process. What a user relies on: a refused block never acts (its side effect never
happens), the node FAILS with the reason and the graph goes on, nothing is redelivered, approvals
and rate limits hold per user, revocation stops running graphs without killing the service, and the
REST server that `app` starts as a forkserver child is governed too."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from platform_run import (
    CALCULATOR, PRINT, SEND_EMAIL, SMTP_PASSWORD, TIMER, WEB_REQUEST, graph, start_platform, stop_all, wait_until,
)  # fmt: skip

POLICY = """\
name: platform
appliesTo:
  tags: [platform]
rules:
  - effect: allow
    actions: ["execute:block:*", "write:*"]
  - effect: allow
    actions: ["request:http"]
    conditions:
      resourcePattern: "https://api.example.com/*"
  - effect: allow
    actions: ["send:email"]
  - effect: deny
    actions: ["execute:block:PrintToConsoleBlock"]
defaultEffect: deny
"""

APPROVAL = POLICY + """\
humanInTheLoop:
  requireApproval: ["send:email"]
"""

PER_USER = POLICY + """\
rateLimits:
  requestsPerMinute: 2
  per: [user_id]
"""


@pytest.fixture(autouse=True)
def _stop_platform_processes() -> Any:
    yield
    stop_all()


@pytest.fixture
def platform_gateway(start_gateway: Any, tmp_path: Path) -> Any:
    def start(policy: str = POLICY) -> tuple[Any, str, str]:
        path = tmp_path / "platform.yaml"
        path.write_text(policy)
        gw = start_gateway(path)
        agent_id, token = gw.create_agent("autogpt-platform", tags=["platform"])
        return gw, agent_id, token

    return start


def audit(gw: Any, **query: Any) -> list[dict[str, Any]]:
    resp = gw.admin("GET", "/admin/audit", params={"limit": 500, **query})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["entries"])


def test_platform_executor_allows_denies_and_never_sends_secrets(platform_gateway: Any, tmp_path: Path) -> None:
    gw, _, token = platform_gateway()
    run = start_platform("executor", tmp_path / "run", gw.url, token, runs=[graph("exec-1", [
        ("calc", CALCULATOR, {"operation": "Add", "a": 2, "b": 3}),
        ("metadata", WEB_REQUEST, {"url": "http://169.254.169.254/latest/meta-data", "method": "GET"}),
        ("api", WEB_REQUEST, {"url": "https://api.example.com/v1/items", "method": "POST", "body": {"a": 1}}),
        ("mail", SEND_EMAIL, {"to_email": "bob@example.com", "subject": "hi", "body": "report",
                              "credentials": {"id": "cred-1", "provider": "smtp", "type": "user_password"}}),
        ("print", PRINT, {"text": "debug"}),
    ])])  # fmt: skip
    assert run.graph_status("exec-1") == "COMPLETED"  # a refused node does not fail the graph
    assert run.node_final("exec-1", "calc")["outputs"] == [["result", 5.0]]
    for refused in ("metadata", "print"):
        node = run.node_final("exec-1", refused)
        assert node["status"] == "FAILED" and node["error_type"] == "BlockExecutionError"
        assert node["outputs"][0][0] == "error" and "MeshGuard refused" in node["outputs"][0][1]
    assert run.node_final("exec-1", "api")["status"] == "COMPLETED"
    assert run.node_final("exec-1", "mail")["status"] == "COMPLETED"
    effects = run.side_effects
    assert [e["block"] for e in effects if e["block"] == "SendWebRequestBlock"] == ["SendWebRequestBlock"]
    assert all("169.254" not in str(e) for e in effects) and not any(e["block"] == "PrintToConsoleBlock" for e in effects)
    assert [e for e in effects if e["block"] == "SendEmailBlock"][0]["smtp_password_used"] is True
    run.stop()
    assert run.acks("exec-1") == ["ack"]  # never nacked (a graph-level error would be redelivered)

    rows = wait_until(lambda: (r := audit(gw, trace="exec-1")) and len(r) >= 5 and r, what="5 audit rows")
    by_action = {(r["action"], r["resource"]): r for r in rows}
    denied = by_action[("request:http", "http://169.254.169.254/latest/meta-data")]
    assert denied["decision"] == "deny"
    ctx = denied["context"]
    assert (ctx["user_id"], ctx["graph_id"], ctx["graph_exec_id"], ctx["node_id"], ctx["graph_version"]) == \
        ("user-1", "graph-1", "exec-1", "metadata", 3)  # fmt: skip
    assert ctx["block_name"] == "SendWebRequestBlock" and ctx["caller"] == "graph"
    assert by_action[("send:email", "bob@example.com")]["decision"] == "allow"
    assert by_action[("execute:block:CalculatorBlock", None)]["decision"] == "allow"
    everything = json.dumps(audit(gw))
    assert SMTP_PASSWORD not in everything and "cred-1" not in everything  # credentials never leave


def test_platform_approval_waits_without_holding_the_graph(platform_gateway: Any, tmp_path: Path) -> None:
    gw, _, token = platform_gateway(APPROVAL)
    run = start_platform("executor", tmp_path / "run", gw.url, token, runs=[
        graph("exec-a", [("mail", SEND_EMAIL, {"to_email": "ceo@example.com", "subject": "s", "body": "b",
                                               "credentials": {"id": "c"}}),
                         ("calc", CALCULATOR, {"operation": "Multiply", "a": 6, "b": 7})]),
        graph("exec-b", [("calc", CALCULATOR, {"operation": "Add", "a": 1, "b": 1})], user_id="user-2"),
    ])  # fmt: skip
    pending = wait_until(lambda: gw.admin("GET", "/admin/approvals", params={"status": "pending"}).json()["approvals"],
                         what="a pending approval")  # fmt: skip
    # While the email waits for a human: its sibling on the same event loop and another graph finish.
    assert run.node_final("exec-a", "calc")["outputs"] == [["result", 42.0]]
    assert run.graph_status("exec-b") == "COMPLETED"
    assert run.node("exec-a", "mail")["status"] == "RUNNING"
    assert not [e for e in run.side_effects if e["block"] == "SendEmailBlock"]
    assert pending[0]["resource"] == "ceo@example.com"
    assert gw.admin("POST", f"/admin/approvals/{pending[0]['id']}/approve", json={"by": "ops"}).status_code == 200
    assert run.node_final("exec-a", "mail")["status"] == "COMPLETED"
    assert [e["to"] for e in run.side_effects if e["block"] == "SendEmailBlock"] == ["ceo@example.com"]
    assert run.graph_status("exec-a") == "COMPLETED"
    run.stop()


def test_platform_rate_limit_counts_per_user(platform_gateway: Any, tmp_path: Path) -> None:
    gw, _, token = platform_gateway(PER_USER)
    calc = {"operation": "Add", "a": 1, "b": 2}
    run = start_platform("executor", tmp_path / "run", gw.url, token, env={"MESHGUARD_ON_RATE_LIMIT": "deny"}, runs=[
        graph("exec-u1", [(f"n{i}", CALCULATOR, calc) for i in range(3)], user_id="user-1"),
        graph("exec-u2", [(f"n{i}", CALCULATOR, calc) for i in range(2)], user_id="user-2"),
    ])  # fmt: skip
    u1 = [run.node_final("exec-u1", f"n{i}") for i in range(3)]
    u2 = [run.node_final("exec-u2", f"n{i}") for i in range(2)]
    assert sorted(n["status"] for n in u1) == ["COMPLETED", "COMPLETED", "FAILED"]
    limited = next(n for n in u1 if n["status"] == "FAILED")
    assert "rate limit" in limited["outputs"][0][1] and "2 requests per minute" in limited["outputs"][0][1]
    assert [n["status"] for n in u2] == ["COMPLETED", "COMPLETED"]  # user-1's budget is not user-2's
    run.stop()


def test_platform_revoke_terminates_running_graphs_and_refuses_new_ones(platform_gateway: Any, tmp_path: Path) -> None:
    """No other block runs after the revocation: the watch request (held by the gateway) notices it."""
    gw, agent_id, token = platform_gateway()
    later = tmp_path / "later"
    run = start_platform("executor", tmp_path / "run", gw.url, token, runs=[
        graph("exec-long", [("timer", TIMER, {"seconds": 60, "input_message": "done"})]),
        graph("exec-late", [("calc", CALCULATOR, {"operation": "Add", "a": 1, "b": 1})], start_after_file=later),
    ])  # fmt: skip
    wait_until(lambda: audit(gw, trace="exec-long"), what="the timer to be allowed")
    assert gw.admin("DELETE", f"/admin/agents/{agent_id}").status_code == 200
    assert run.graph_status("exec-long", timeout=30) == "TERMINATED"  # well before the timer's 60 s
    assert run.node_final("exec-long", "timer")["status"] == "TERMINATED"
    later.touch()
    assert run.graph_status("exec-late") == "TERMINATED"
    assert run.node("exec-late", "calc") is None  # no block of a later run even starts
    assert run.side_effects == []
    wait_until(lambda: [e for e in run.events if e.get("all_runs_done")], what="the executor to go on")
    assert run.proc.poll() is None  # the service keeps running (exiting would make RabbitMQ redeliver)
    status, out = run.stop()
    assert status == 0, out
    assert {a for g in ("exec-long", "exec-late") for a in run.acks(g)} == {"ack"}
    assert "REVOKED" in out


def test_platform_revoked_agent_is_refused_at_the_next_block(platform_gateway: Any, tmp_path: Path) -> None:
    """Where nothing watches (the REST server runs no graphs), the next check's 401 refuses the block,
    and every later one without asking the gateway again."""
    gw, agent_id, token = platform_gateway()
    run = start_platform("rest", tmp_path / "run", gw.url, token)
    port = wait_until(lambda: (tmp_path / "run" / "rest_port").exists() and
                      (tmp_path / "run" / "rest_port").read_text().split()[0], what="the REST server")  # fmt: skip
    url = f"http://127.0.0.1:{port}/api/blocks/{CALCULATOR}/execute"
    calc = {"operation": "Add", "a": 1, "b": 1}
    assert httpx.post(url, json=calc, headers={"X-User-Id": "u"}, timeout=30).status_code == 200
    assert gw.admin("DELETE", f"/admin/agents/{agent_id}").status_code == 200
    for _ in range(2):
        refused = httpx.post(url, json=calc, headers={"X-User-Id": "u"}, timeout=30)
        assert refused.status_code == 400 and "revoked" in refused.json()["detail"]
    assert len(audit(gw, action="execute:block:CalculatorBlock")) == 1  # the 401s wrote no decisions
    assert run.proc.poll() is None
    run.proc.terminate()
    run.proc.wait(30)


def test_platform_app_governs_the_forkserver_rest_child(platform_gateway: Any, tmp_path: Path) -> None:
    gw, _, token = platform_gateway()
    run = start_platform("app", tmp_path / "run", gw.url, token)
    port, child = wait_until(lambda: (tmp_path / "run" / "rest_port").exists() and
                             (tmp_path / "run" / "rest_port").read_text().split(), what="the REST child")  # fmt: skip
    # A real forkserver child: not the launcher, and not started by it (its parent is the forkserver).
    ppid = int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert int(child) != run.proc.pid and ppid != run.proc.pid
    assert int(Path(f"/proc/{ppid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == run.proc.pid
    base = f"http://127.0.0.1:{port}"
    user = {"X-User-Id": "user-9"}

    ok = httpx.post(f"{base}/api/blocks/{CALCULATOR}/execute", json={"operation": "Add", "a": 2, "b": 2},
                    headers=user, timeout=30)  # fmt: skip
    assert ok.status_code == 200 and ok.json() == {"result": [4.0]}
    metadata = {"url": "http://169.254.169.254/latest", "method": "GET"}
    refused = httpx.post(f"{base}/api/blocks/{WEB_REQUEST}/execute", json=metadata, headers=user, timeout=30)
    assert refused.status_code == 400 and "MeshGuard refused" in refused.json()["detail"]
    external = httpx.post(f"{base}/external-api/v1/blocks/{WEB_REQUEST}/execute", json=metadata, timeout=30)
    assert external.status_code == 400 and "MeshGuard refused" in external.json()["detail"]
    chat = httpx.post(f"{base}/api/chat/run_block/{WEB_REQUEST}", json=metadata, headers=user, timeout=30).json()
    assert chat["type"] == "error" and chat["message"].startswith("Block execution failed: ")
    assert "MeshGuard refused" in chat["message"]
    assert run.side_effects == []

    rows = audit(gw, action="request:http")
    assert len(rows) == 3 and {r["decision"] for r in rows} == {"deny"}
    assert sorted((r["context"]["caller"], r["context"].get("user_id", "")) for r in rows) == \
        [("direct", ""), ("direct", "user-9"), ("direct", "user-9")]  # the external API passes no user  # fmt: skip
    status, out = run.stop()
    assert status == 0, out


def test_platform_refuses_to_start_unusable(platform_gateway: Any, tmp_path: Path) -> None:
    gw, agent_id, token = platform_gateway()
    bad = start_platform("scheduler", tmp_path / "a", gw.url, token)
    assert bad.proc.wait(60) == 2
    down = start_platform("executor", tmp_path / "b", "http://127.0.0.1:9", token)
    assert down.proc.wait(60) == 1 and "not reachable" in (down.proc.stdout.read() if down.proc.stdout else "")
    gw.admin("DELETE", f"/admin/agents/{agent_id}")
    revoked = start_platform("executor", tmp_path / "c", gw.url, token)
    assert revoked.proc.wait(60) == 3
    nobackend = start_platform("rest", tmp_path / "d", gw.url, gw.create_agent("x", tags=["platform"])[1],
                               env={"PYTHONPATH": os.devnull})  # fmt: skip
    assert nobackend.proc.wait(60) == 1
    assert "Python of the AutoGPT Platform backend" in (nobackend.proc.stdout.read() if nobackend.proc.stdout else "")


def test_platform_child_is_ungoverned_when_patched_only_in_main(platform_gateway: Any, tmp_path: Path) -> None:
    """Negative control for the forkserver test: a patch installed at run time in the parent (the way
    the classic launcher patches, in main()) does not reach the REST child, whose refused request then
    acts. This is why the Platform patch is installed at import time, from the environment."""
    import subprocess
    import sys

    from platform_run import LAUNCHER, STANDIN

    gw, _, token = platform_gateway()
    work = tmp_path / "run"
    work.mkdir()
    script = (
        "import sys; sys.path.insert(0, %r)\n"
        "import meshguard_autogpt as mg\n"
        "if __name__ == '__main__':\n"
        "    mg.install_platform_hook()\n"
        "    import backend.app; backend.app.main()\n"
    ) % str(LAUNCHER.parent)  # fmt: skip
    (work / "main_only.py").write_text(script)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MESHGUARD_")}, "PYTHONPATH": str(STANDIN),
           "MESHGUARD_URL": gw.url, "MESHGUARD_TOKEN": token, "STANDIN_REST_PORT_FILE": str(work / "rest_port"),
           "STANDIN_STOP_FILE": str(work / "stop"), "STANDIN_SIDE_EFFECTS": str(work / "side_effects.jsonl")}  # fmt: skip
    proc = subprocess.Popen([sys.executable, str(work / "main_only.py")], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        port = wait_until(lambda: (work / "rest_port").exists() and (work / "rest_port").read_text().split()[0],
                          what="the REST child")  # fmt: skip
        resp = httpx.post(f"http://127.0.0.1:{port}/api/blocks/{WEB_REQUEST}/execute",
                          json={"url": "http://169.254.169.254/latest"}, headers={"X-User-Id": "u"}, timeout=30)  # fmt: skip
        assert resp.status_code == 200  # ungoverned: the request was sent
        assert "169.254.169.254" in (work / "side_effects.jsonl").read_text()
    finally:
        (work / "stop").touch()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
