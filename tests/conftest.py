"""Shared fixtures: a real gateway process on 127.0.0.1 with a temp database.

`gateway` is a running gateway with the repository's policies; `start_gateway(...)` starts
more (other policies, audit mode, a given database to test restarts). Every process is
stopped after the test, whatever happened.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
# The seed document's own tests need AutoGPT's Python: tests/test_seed_document.py runs them there.
collect_ignore = ["seed"]
JWT_SECRET = "test-jwt-secret-0123456789abcdef0123456789"
AUDIT_CHAIN_KEY = "test-audit-chain-key-0123456789abcdef0123"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak", action="store_true", default=False,
        help="long reliability mode: more crash/restart cycles, fuzz cases and processes",
    )  # fmt: skip


def pytest_sessionstart(session: pytest.Session) -> None:
    """Where AutoGPT 0.2.2 must be present (scripts/test.sh just installed it; CI runs that), its
    absence is an error, not a reason to skip the end-to-end tests quietly."""
    if not (os.environ.get("MESHGUARD_REQUIRE_AUTOGPT") or os.environ.get("CI")):
        return
    python = ROOT / ".venv-autogpt" / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import autogpt, requests"], capture_output=True, text=True) \
        if python.exists() else None  # fmt: skip
    if probe is None or probe.returncode != 0:
        detail = probe.stderr.strip().splitlines()[-1] if probe is not None and probe.stderr.strip() else "missing"
        raise pytest.UsageError(
            f"AutoGPT 0.2.2 is required here but {python} cannot import it ({detail}); run scripts/setup.sh"
        )


@dataclass
class LiveGateway:
    """A gateway process we started, with what a test needs to talk to it."""

    url: str
    state_dir: Path
    db_path: Path
    policies_dir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    admin_token: str = ADMIN_TOKEN
    env: dict[str, str] = field(default_factory=dict)

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-Admin-Token": self.admin_token, **kwargs.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def create_agent(
        self, name: str, tags: list[str] | None = None, trust: str = "verified"
    ) -> tuple[str, str]:
        """Create an agent; returns (agent id, token)."""
        resp = self.admin(
            "POST", "/admin/agents", json={"name": name, "trustTier": trust, "tags": tags or ["autogpt"]}
        )
        assert resp.status_code == 201, resp.text
        body = resp.json()
        return body["id"], body["token"]

    def check(self, token: str, action: str, resource: str | None = None, **extra: Any) -> httpx.Response:
        payload: dict[str, Any] = {"action": action, **extra}
        if resource is not None:
            payload["resource"] = resource
        return httpx.post(
            self.url + "/proxy/governance/check",
            json=payload,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _wait_until_up(proc: subprocess.Popen[bytes], state_dir: Path, log_path: Path, deadline: float) -> str:
    info = state_dir / "gateway.json"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
        if info.exists():
            try:
                url = json.loads(info.read_text())["url"]
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    return str(url)
            except (ValueError, KeyError, httpx.HTTPError):
                pass
        time.sleep(0.05)
    raise RuntimeError(f"gateway did not come up in time:\n{log_path.read_text(errors='replace')}")


@pytest.fixture
def start_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LiveGateway]]:
    started: list[LiveGateway] = []

    def start(
        policies: Path | str | None = None,
        *,
        mode: str = "enforce",
        db_path: Path | None = None,
        state_dir: Path | None = None,
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
    ) -> LiveGateway:
        base = tmp_path_factory.mktemp("gateway")
        state = state_dir or base / "state"
        db = db_path or base / "meshguard.db"
        pol = base / "policies"
        if policies is None:
            shutil.copytree(POLICIES, pol)
        elif Path(policies).is_dir():
            shutil.copytree(policies, pol)
        else:
            pol.mkdir()
            shutil.copy(policies, pol)
        log_path = base / "gateway.log"
        full_env = {
            **os.environ,
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "JWT_SECRET": JWT_SECRET,
            "AUDIT_CHAIN_KEY": AUDIT_CHAIN_KEY,  # restarts on the same database may use a new state folder
            "HOME": str(base / "home"),
            "LOG_LEVEL": "info",
            **(env or {}),
        }
        cmd = [
            sys.executable, "-m", "meshguard_gateway", "gateway", "start",
            "--host", "127.0.0.1", "--port", "0",
            "--state-dir", str(state), "--db", str(db), "--policies", str(pol), "--mode", mode,
            *(extra_args or []),
        ]  # fmt: skip
        if (state / "gateway.json").exists():
            (state / "gateway.json").unlink()  # a previous run's file must not be mistaken for this one
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=base)
        gw = LiveGateway(
            url="", state_dir=state, db_path=db, policies_dir=pol, proc=proc, log_path=log_path, env=full_env
        )
        started.append(gw)
        gw.url = _wait_until_up(proc, state, log_path, time.monotonic() + 30)
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture
def gateway(start_gateway: Callable[..., LiveGateway]) -> LiveGateway:
    return start_gateway()
