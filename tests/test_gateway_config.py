"""Gateway configuration: MeshGuard's environment names, flags, the state folder, start-up refusals."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from meshguard_gateway.cli import main
from meshguard_gateway.config import Settings, load_settings, prepare_state
from meshguard_gateway.errors import ConfigError
from tests.conftest import ADMIN_TOKEN, JWT_SECRET, POLICIES, LiveGateway


def test_defaults_are_meshguards() -> None:
    s = load_settings({})
    assert (s.host, s.port, s.mode, s.audit_retention_days, s.log_level) == ("127.0.0.1", 3100, "enforce", 90, "info")
    assert s.policies_dir == Path("policies") and s.database == Path(".meshguard/meshguard.db")
    assert s.token_ttl_hours == 24 and s.approval_ttl_seconds == 300


def test_environment_then_flags() -> None:
    env = {"PORT": "4000", "HOST": "0.0.0.0", "MODE": "AUDIT", "DB_PATH": "/tmp/x.db", "POLICIES_DIR": "/p",
           "AUDIT_RETENTION_DAYS": "7", "LOG_LEVEL": "debug", "TOKEN_TTL_HOURS": "1.5", "APPROVAL_TTL_SECONDS": "60",
           "MESHGUARD_STATE_DIR": "/state", "JWT_SECRET": "j" * 32, "ADMIN_TOKEN": "a" * 20}  # fmt: skip
    s = load_settings(env)
    assert (s.port, s.host, s.mode, s.db_path, s.policies_dir) == (4000, "0.0.0.0", "audit", Path("/tmp/x.db"), Path("/p"))
    assert (s.audit_retention_days, s.log_level, s.token_ttl_hours, s.approval_ttl_seconds) == (7, "debug", 1.5, 60)
    assert s.state_dir == Path("/state") and s.jwt_secret == "j" * 32
    flagged = load_settings(env, port=0, mode="enforce", db_path=Path("/y.db"), host=None)
    assert (flagged.port, flagged.mode, flagged.db_path, flagged.host) == (0, "enforce", Path("/y.db"), "0.0.0.0")
    assert "j" * 32 not in json.dumps(s.public())


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"PORT": "http"}, "PORT='http' is not an integer"),
        ({"PORT": "70000"}, "out of range"),
        ({"MODE": "strict"}, "expected one of: enforce, audit"),
        ({"JWT_SECRET": "short"}, "at least 32"),
        ({"AUDIT_RETENTION_DAYS": "-1"}, "must be >= 0"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"METRICS_ENABLED": "perhaps"}, "boolean"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        load_settings(env)


def test_prepare_state_generates_private_secrets_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    s = prepare_state(Settings(state_dir=state, policies_dir=POLICIES))
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for name in ("admin_token", "jwt_secret"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600
    assert s.admin_token == (state / "admin_token").read_text().strip() and len(s.jwt_secret or "") >= 32
    again = prepare_state(Settings(state_dir=state, policies_dir=POLICIES))
    assert (again.admin_token, again.jwt_secret) == (s.admin_token, s.jwt_secret)
    given = prepare_state(Settings(state_dir=state, policies_dir=POLICIES, admin_token="mine-0123456789abcdef"))
    assert given.admin_token == "mine-0123456789abcdef"
    with pytest.raises(ConfigError, match="POLICIES_DIR .* does not exist"):
        prepare_state(Settings(state_dir=state, policies_dir=tmp_path / "nope"))
    with pytest.raises(ConfigError, match="DB_PATH"):
        prepare_state(Settings(state_dir=state, policies_dir=POLICIES, db_path=tmp_path / "no" / "dir.db"))


def test_first_start_without_secrets(start_gateway: Callable[..., LiveGateway]) -> None:
    gw = start_gateway(env={"ADMIN_TOKEN": "", "JWT_SECRET": ""})
    admin_token = (gw.state_dir / "admin_token").read_text().strip()
    jwt_secret = (gw.state_dir / "jwt_secret").read_text().strip()
    assert admin_token != ADMIN_TOKEN and jwt_secret != JWT_SECRET
    log = gw.log()
    assert str(gw.state_dir / "admin_token") in log and str(gw.state_dir / "jwt_secret") in log
    assert admin_token not in log and jwt_secret not in log
    assert httpx.get(gw.url + "/admin/agents", headers={"X-Admin-Token": ADMIN_TOKEN}).status_code == 401
    gw.admin_token = admin_token
    _, token = gw.create_agent("first")
    assert token not in gw.log()
    assert gw.check(token, "read:web").status_code == 200
    info = json.loads((gw.state_dir / "gateway.json").read_text())
    assert info["url"] == gw.url and info["pid"] == gw.proc.pid and info["mode"] == "enforce"
    assert stat.S_IMODE((gw.state_dir / "gateway.json").stat().st_mode) == 0o600
    last = Path(gw.env["HOME"]) / ".config" / "meshguard" / "last-gateway"
    assert last.read_text().strip() == str(gw.state_dir.resolve())


def _start_expecting_failure(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "ADMIN_TOKEN": ADMIN_TOKEN, "JWT_SECRET": JWT_SECRET, "HOME": str(tmp_path), **(env or {})}
    cmd = [sys.executable, "-m", "meshguard_gateway", "gateway", "start", "--port", "0",
           "--state-dir", str(tmp_path / "state"), *args]  # fmt: skip
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_invalid_policies_stop_the_start_with_every_problem(tmp_path: Path) -> None:
    folder = tmp_path / "pol"
    folder.mkdir()
    (folder / "bad.yaml").write_text("name: bad\nrules:\n  - effect: allow\n    actions: [read]\n    conditions: {sandbx: 1}\n")
    proc = _start_expecting_failure(tmp_path, "--policies", str(folder))
    assert proc.returncode == 1
    assert "bad.yaml" in proc.stderr and "sandbx" in proc.stderr
    assert not (tmp_path / "state" / "gateway.json").exists()


def test_bad_configuration_stops_the_start(tmp_path: Path) -> None:
    proc = _start_expecting_failure(tmp_path, "--policies", str(POLICIES), env={"JWT_SECRET": "too-short"})
    assert proc.returncode == 1 and "JWT_SECRET" in proc.stderr and "too-short" not in proc.stderr
    proc = _start_expecting_failure(tmp_path, "--policies", str(tmp_path / "missing"))
    assert proc.returncode == 1 and "does not exist" in proc.stderr
    proc = _start_expecting_failure(tmp_path, "--policies", str(POLICIES), "--mode", "strict")
    assert proc.returncode == 2 and "strict" in proc.stderr


def test_busy_port_is_reported(gateway: LiveGateway, tmp_path: Path) -> None:
    port = json.loads((gateway.state_dir / "gateway.json").read_text())["port"]
    busy = subprocess.run(
        [sys.executable, "-m", "meshguard_gateway", "gateway", "start", "--port", str(port), "--state-dir",
         str(tmp_path / "s2"), "--policies", str(POLICIES)],
        env={**os.environ, "ADMIN_TOKEN": ADMIN_TOKEN, "JWT_SECRET": JWT_SECRET, "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert busy.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr


def test_gateway_status(gateway: LiveGateway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("MESHGUARD_URL", raising=False)
    runner = CliRunner()
    up = runner.invoke(main, ["gateway", "status", "--url", gateway.url])
    assert up.exit_code == 0, up.output
    assert "healthy" in up.output and gateway.url in up.output
    as_json = runner.invoke(main, ["gateway", "status", "--url", gateway.url, "--json"])
    assert json.loads(as_json.output)["status"] == "healthy"
    down = runner.invoke(main, ["gateway", "status", "--url", "http://127.0.0.1:9"])
    assert down.exit_code == 5


def test_gateway_stop(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> None:
    gw = start_gateway()
    runner = CliRunner()
    result = runner.invoke(main, ["gateway", "stop", "--state-dir", str(gw.state_dir)])
    assert result.exit_code == 0, result.output
    assert "stopped the gateway" in result.output
    assert gw.proc.wait(10) == 0 and not (gw.state_dir / "gateway.json").exists()
    again = runner.invoke(main, ["gateway", "stop", "--state-dir", str(gw.state_dir)])
    assert again.exit_code == 0 and "no gateway is running" in again.output
    # a file left by a crashed gateway is cleaned up, and nothing is signalled
    (gw.state_dir / "gateway.json").write_text(json.dumps({"url": gw.url, "pid": 2**22 + 12345}))
    stale = runner.invoke(main, ["gateway", "stop", "--state-dir", str(gw.state_dir)])
    assert stale.exit_code == 0 and not (gw.state_dir / "gateway.json").exists()


def test_deferred_durability_still_writes_every_row(start_gateway: Callable[..., LiveGateway]) -> None:
    gw = start_gateway(env={"AUDIT_DURABILITY": "deferred"})
    _, token = gw.create_agent("fast")
    ids = [gw.check(token, "read:web").json()["decision_id"] for _ in range(20)]
    gw.stop()  # a clean stop drains the writer
    gw = start_gateway(gw.policies_dir, db_path=gw.db_path, state_dir=gw.state_dir)
    rows = gw.admin("GET", "/admin/audit", params={"kind": "check", "order": "asc"}).json()["entries"]
    assert [r["decision_id"] for r in rows] == ids


def test_a_second_gateway_on_the_same_database_is_refused(gateway: LiveGateway, tmp_path: Path) -> None:
    proc = _start_expecting_failure(tmp_path, "--policies", str(POLICIES), "--db", str(gateway.db_path))
    assert proc.returncode == 1
    assert f"in use by another gateway (pid {gateway.proc.pid})" in proc.stderr
    assert httpx.get(gateway.url + "/health").status_code == 200  # the first one is untouched
