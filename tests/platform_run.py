"""Helpers for the AutoGPT Platform tests: run `meshguard_autogpt.py platform <entry>` over the
stand-in backend (tests/standins/platform) against a real gateway, and read what happened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = ROOT / "meshguard_autogpt.py"
STANDIN = ROOT / "tests" / "standins" / "platform"

CALCULATOR = "b1ab9b19-67a6-406d-abf5-2dba76d00c79"
WEB_REQUEST = "6595ae1f-b924-42cb-9a41-551a0611c4b4"
SEND_EMAIL = "4335878a-394e-4e67-adf2-919877ff49ae"
PRINT = "f3b1c1b2-4c4f-4f0d-8d2f-4c4f0d8d2f4c"
TIMER = "d67a9c52-5e4e-11e2-bcfd-0800200c9a71"
SMTP_PASSWORD = "s3cret-smtp-password"  # backend/executor/manager.py (stand-in credentials store)


def wait_until(predicate: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class PlatformRun:
    proc: subprocess.Popen[str]
    dir: Path

    @property
    def events(self) -> list[dict[str, Any]]:
        return read_lines(self.dir / "events.jsonl")

    @property
    def side_effects(self) -> list[dict[str, Any]]:
        return read_lines(self.dir / "side_effects.jsonl")

    def node(self, graph_exec_id: str, node_id: str) -> dict[str, Any] | None:
        """The node's last status event."""
        found = [e for e in self.events if e.get("graph_exec_id") == graph_exec_id and e.get("node_id") == node_id]
        return found[-1] if found else None

    def node_final(self, graph_exec_id: str, node_id: str, timeout: float = 60) -> dict[str, Any]:
        return wait_until(lambda: (n := self.node(graph_exec_id, node_id)) and n["status"] != "RUNNING" and n,
                          timeout, f"node {node_id} of {graph_exec_id} to finish")  # fmt: skip

    def graph_status(self, graph_exec_id: str, timeout: float = 60) -> str:
        found = wait_until(lambda: [e for e in self.events if e.get("graph_exec_id") == graph_exec_id
                                    and "graph_status" in e], timeout, f"graph {graph_exec_id} to end")  # fmt: skip
        return str(found[-1]["graph_status"])

    def acks(self, graph_exec_id: str) -> list[str]:
        return [e["ack"] for e in self.events if e.get("graph_exec_id") == graph_exec_id and "ack" in e]

    def stop(self, timeout: float = 60) -> tuple[int, str]:
        (self.dir / "stop").touch()
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return self.proc.returncode, out


def start_platform(entry: str, workdir: Path, url: str, token: str, runs: list[dict[str, Any]] | None = None,
                   env: dict[str, str] | None = None) -> PlatformRun:  # fmt: skip
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "runs.json").write_text(json.dumps(runs or []))
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MESHGUARD_")},
        "PYTHONPATH": str(STANDIN),
        "MESHGUARD_URL": url,
        "MESHGUARD_TOKEN": token,
        "STANDIN_PLATFORM_RUNS": str(workdir / "runs.json"),
        "STANDIN_PLATFORM_EVENTS": str(workdir / "events.jsonl"),
        "STANDIN_SIDE_EFFECTS": str(workdir / "side_effects.jsonl"),
        "STANDIN_REST_PORT_FILE": str(workdir / "rest_port"),
        "STANDIN_STOP_FILE": str(workdir / "stop"),
        **(env or {}),
    }
    proc = subprocess.Popen([sys.executable, str(LAUNCHER), "platform", entry], cwd=workdir, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    STARTED.append(proc)
    return PlatformRun(proc, workdir)


STARTED: list[subprocess.Popen[str]] = []


def stop_all() -> None:
    """After a test, whatever happened: SIGTERM (the services stop their forkserver children), then kill."""
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def graph(graph_exec_id: str, nodes: list[tuple[str, str, dict[str, Any]]], *, user_id: str = "user-1",
          graph_id: str = "graph-1", start_after_file: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """A graph run for the stand-in executor: nodes are (node_id, block_id, input)."""
    run: dict[str, Any] = {"graph_exec_id": graph_exec_id, "graph_id": graph_id, "user_id": user_id, "graph_version": 3,
                           "nodes": [{"node_id": n, "block_id": b, "input": i} for n, b, i in nodes]}  # fmt: skip
    if start_after_file is not None:
        run["start_after_file"] = str(start_after_file)
    return run
