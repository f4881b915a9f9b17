"""The kill switch ends work already running: `meshguard agent revoke` (the real CLI) while a governed
command of real AutoGPT 0.2.2 loops writing heartbeats, in a child process and in-process.

The one bound the issue states: the heartbeats stop within 2 s of the revoke returning. Measured as
(last heartbeat) - (the moment `meshguard agent revoke` returned), printed and kept in the figures file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from meshguard_autogpt import EXIT_REVOKED, MeshGuardGateway
from tests.autogpt_run import (AutoGPTRun, autogpt_available, install_plugin_source, is_running, plugin_source,
                               prepare_run, step)
from tests.conftest import ROOT, LiveGateway
from tests.test_generations import CLASSIC_COMPONENTS, GENS, LAUNCHER, _run_env
from tests.reliability.figures import record

pytestmark = [
    pytest.mark.autogpt,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not autogpt_available(), reason="needs .venv-autogpt with AutoGPT 0.2.2 (scripts/setup.sh)"),
]

BOUND = 2.0  # seconds, stated by the issue ("stops writing within 2 s of meshguard agent revoke")

ALLOW_ALL = """\
name: lenient
appliesTo:
  tags: [autogpt]
rules:
  - effect: allow
    actions: ["execute:*", "write:*", "read:*"]
defaultEffect: deny
"""

BEAT_LOOP = """\
    out.write(f"pid {os.getpid()}\\n")
    end = time.time() + 120
    while time.time() < end:
        out.write(f"{time.time():.6f}\\n")
        out.flush()
        time.sleep(0.05)
"""

HEARTBEAT = "import os, sys, time\nwith open(sys.argv[1], 'a') as out:\n" + BEAT_LOOP

# An AutoGPT 0.2.2 plugin whose commands run inside the AutoGPT process itself.
PLUGIN = plugin_source("MeshGuardHeartbeatPlugin", "meshguard-heartbeat", helpers=f"""
import time


def heartbeat_here(path, *rest):
  with open(path, "a") as out:
{BEAT_LOOP}
  return "done"
""", commands="""\
        prompt.add_command("Heartbeat", "heartbeat_here", {"path": "<path>"}, heartbeat_here)
        prompt.add_command("Sleep", "sleep_here", {"seconds": "<s>"}, lambda seconds: time.sleep(float(seconds)))""")


@pytest.fixture
def lenient(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> tuple[LiveGateway, str]:
    """A gateway that allows what the heartbeat commands do, and the agent's token."""
    policy = tmp_path / "lenient.yaml"
    policy.write_text(ALLOW_ALL)
    gw = start_gateway(policy)
    return gw, gw.create_agent("autogpt-agent", tags=["autogpt"])[1]


def install_heartbeat_plugin(run: AutoGPTRun) -> None:
    install_plugin_source(run, "MeshGuardHeartbeatPlugin", PLUGIN)


def beats(path: Path) -> tuple[int | None, list[float]]:
    """(pid that wrote them, heartbeat times)."""
    if not path.exists():
        return None, []
    pid, times = None, []
    for line in path.read_text().splitlines():
        if line.startswith("pid "):
            pid = int(line.split()[1])
        elif line.strip():
            try:
                times.append(float(line))
            except ValueError:  # a line being written
                pass
    return pid, times


def revoke_with_cli(gw: LiveGateway, cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MESHGUARD_")}
    env = {**base, "PYTHONPATH": str(ROOT), "HOME": str(cwd), "MESHGUARD_URL": gw.url,
           "MESHGUARD_ADMIN_TOKEN": gw.admin_token}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "meshguard_gateway", "agent", "revoke", "autogpt-agent"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip


def revoke_while_beating(gw: LiveGateway, run: AutoGPTRun | Callable[[], subprocess.Popen[str]], heartbeat: Path,
                         where: str) -> None:  # fmt: skip
    cwd = run.dir if isinstance(run, AutoGPTRun) else heartbeat.parent
    proc = run.start() if isinstance(run, AutoGPTRun) else run()
    try:
        deadline = time.monotonic() + 150
        while len(beats(heartbeat)[1]) < 10:
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"launcher exited with {proc.returncode} before the heartbeats began:\n{out}\n{err}")
            assert time.monotonic() < deadline, "the heartbeat command never started"
            time.sleep(0.05)
        revoked = revoke_with_cli(gw, cwd)
        revoked_at = time.time()
        assert revoked.returncode == 0, revoked.stdout + revoked.stderr
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # still running: the assertions below say what went on
            proc.kill()
            out, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(1.0)  # anything still alive would go on writing meanwhile
    pid, times = beats(heartbeat)
    gap = times[-1] - revoked_at
    print(f"\n{where}: last heartbeat {gap:+.3f} s after `meshguard agent revoke` returned "
          f"(bound {BOUND:g} s); launcher exit {proc.returncode}")  # fmt: skip
    record("kill_switch", where=where, last_heartbeat_after_revoke_s=round(gap, 3), bound_s=BOUND)
    assert proc.returncode == EXIT_REVOKED, out + err
    assert "STOPPED" in err and "rejected this agent's token" in err, err
    assert gap < BOUND, f"{where}: heartbeats went on {gap:.3f} s after the revoke returned"
    assert pid is not None and not is_running(pid)


def test_revoke_ends_a_running_shell_command_and_its_children(lenient: tuple[LiveGateway, str], tmp_path: Path) -> None:
    gw, token = lenient
    script, heartbeat = tmp_path / "hb.py", tmp_path / "child-beats.txt"
    script.write_text(HEARTBEAT)
    run = prepare_run(tmp_path / "run", [
        step("execute_shell", command_line=f"{sys.executable} {script} {heartbeat}"),
        step("write_to_file", filename="after.txt", text="never"),
    ], url=gw.url, token=token)  # fmt: skip

    revoke_while_beating(gw, run, heartbeat, "child process (execute_shell)")
    assert not (run.workspace / "after.txt").exists()


def test_revoke_ends_a_command_running_inside_the_autogpt_process(lenient: tuple[LiveGateway, str],
                                                                 tmp_path: Path) -> None:  # fmt: skip
    gw, token = lenient
    heartbeat = tmp_path / "inprocess-beats.txt"
    run = prepare_run(tmp_path / "run", [
        step("heartbeat_here", path=str(heartbeat)),
        step("write_to_file", filename="after.txt", text="never"),
    ], url=gw.url, token=token)  # fmt: skip
    install_heartbeat_plugin(run)

    revoke_while_beating(gw, run, heartbeat, "in-process (plugin command)")
    assert not (run.workspace / "after.txt").exists()


def test_revoke_ends_the_process_when_in_process_work_cannot_be_interrupted(lenient: tuple[LiveGateway, str],
                                                                           tmp_path: Path) -> None:  # fmt: skip
    """A command blocked inside C code (time.sleep) does not see the exception raised in its thread:
    the launcher then ends the AutoGPT process itself, with the revoked exit status."""
    gw, token = lenient
    run = prepare_run(tmp_path / "run", [
        step("sleep_here", seconds="100"),
        step("write_to_file", filename="after.txt", text="never"),
    ], url=gw.url, token=token)  # fmt: skip
    install_heartbeat_plugin(run)
    proc = run.start()
    try:
        deadline = time.monotonic() + 120
        while not any(e["action"] == "execute:sleep_here" and e["decision"] == "allow" for e in
                      gw.admin("GET", "/admin/audit", params={"limit": 50}).json()["entries"]):  # fmt: skip
            assert proc.poll() is None and time.monotonic() < deadline, "sleep_here was never allowed"
            time.sleep(0.1)
        time.sleep(0.5)  # allowed: now it sleeps (100 s)
        assert proc.poll() is None
        assert revoke_with_cli(gw, run.dir).returncode == 0
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == EXIT_REVOKED, out + err
    assert "did not stop, so the AutoGPT process was ended" in err
    assert not (run.workspace / "after.txt").exists()


def test_gateway_gone_during_a_command_lets_the_command_finish(lenient: tuple[LiveGateway, str]) -> None:
    """The documented choice: an allowed command is not ended because the gateway went away while it ran
    (a gateway restart would otherwise kill every running command); the next check fails closed."""
    gw, token = lenient
    client = MeshGuardGateway(gw.url, token, timeout=2, verbose=False)

    def long_command() -> str:
        gw.stop()
        time.sleep(2.5)  # the watcher meets a closed port meanwhile, more than once
        return "finished"

    assert client.execute("write:workspace", "a.txt", long_command) == "finished"
    assert client.revoked is None
    refused = client.execute("write:workspace", "b.txt", lambda: "ran")
    assert isinstance(refused, dict) and refused["status"] == "blocked" and refused["decision"] == "error"


@pytest.mark.parametrize("standin", ["v0_5_0", "classic"])
def test_revoke_ends_a_running_command_of_the_async_dispatchers(standin: str, lenient: tuple[LiveGateway, str],
                                                               tmp_path: Path) -> None:  # fmt: skip
    """v0.5.0 and classic run commands inside AutoGPT's event loop: the shell child is ended, the
    revocation raised in the loop's thread stops the run (stand-ins mirroring their dispatchers)."""
    gw, token = lenient
    gen = next(g for g in GENS if g.standin == standin)
    script, heartbeat = tmp_path / "hb.py", tmp_path / "beats.txt"
    script.write_text(HEARTBEAT)
    cmd_name, path_arg, text_arg = gen.write
    (tmp_path / "script.json").write_text(json.dumps([
        {"name": "execute_shell", "args": {"command_line": f"{sys.executable} {script} {heartbeat}"}},
        {"name": cmd_name, "args": {path_arg: "after.txt", text_arg: "never"}},
    ]))  # fmt: skip
    (tmp_path / "component_config.json").write_text(json.dumps(CLASSIC_COMPONENTS))
    env = _run_env(gen, tmp_path, token, gw.url)
    cmd = [sys.executable, str(LAUNCHER), "--continuous", "--continuous-limit", "20", "--skip-news", *gen.args]

    revoke_while_beating(gw, lambda: subprocess.Popen(cmd, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
                         heartbeat, f"child process ({standin} stand-in, async dispatcher)")  # fmt: skip
    assert not (tmp_path / gen.workspace / "after.txt").exists()
