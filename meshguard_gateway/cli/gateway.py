"""`meshguard gateway start|status|stop`: run a gateway in this terminal, ask whether one is up, stop it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from meshguard_gateway.cli._options import common_options, json_output, settings
from meshguard_gateway.errors import ConfigError


@click.group()
def cli() -> None:
    """Run a gateway or ask whether one is up."""


@cli.command()
@click.option("--host", default=None, help="Address to bind (HOST; default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (PORT; default 3100; 0 picks a free port).")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="State folder for secrets, gateway.json and the default database "
                   "(MESHGUARD_STATE_DIR; ./.meshguard).")
@click.option("--db", "db_path", type=click.Path(path_type=Path), default=None,
              help="SQLite database file (DB_PATH; default <state folder>/meshguard.db).")
@click.option("--policies", "policies_dir", type=click.Path(path_type=Path), default=None,
              help="Policy folder or file (POLICIES_DIR; default ./policies).")
@click.option("--mode", type=click.Choice(["enforce", "audit"]), default=None,
              help="enforce refuses; audit only records what would be refused (MODE).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None,
              help="LOG_LEVEL (default info).")
@click.option("--retention-days", "audit_retention_days", type=float, default=None,
              help="Delete audit rows older than this (AUDIT_RETENTION_DAYS; default 90; 0 keeps all).")
@click.option("--token-ttl-hours", type=float, default=None, help="Agent token lifetime (TOKEN_TTL_HOURS; 24).")
@click.option("--approval-ttl", "approval_ttl_seconds", type=float, default=None,
              help="Seconds an approval waits, and stays usable once approved (APPROVAL_TTL_SECONDS; 300).")
def start(**flags: object) -> None:
    """Start a gateway in the foreground (Ctrl-C stops it; SIGHUP reloads the policies)."""
    from meshguard_gateway.config import load_settings
    from meshguard_gateway.server import run

    try:
        gateway_settings = load_settings(os.environ, **flags)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(run(gateway_settings))


@cli.command()
@common_options
def status() -> None:
    """Is a gateway up? Exit 0 healthy, 1 unhealthy, 5 unreachable.

    The gateway is found like every other command finds it: --url, MESHGUARD_URL, the config
    file, ./.meshguard or the last started gateway's state folder, then http://localhost:3100.
    """
    import httpx

    resolved = settings()
    target = str(resolved.url.value).rstrip("/")
    try:
        resp = httpx.get(target + "/health", timeout=resolved.timeout)
        body = resp.json()
    except (httpx.HTTPError, ValueError) as exc:
        click.echo(f"no MeshGuard gateway answers at {target} (from {resolved.url.source}): {exc}", err=True)
        sys.exit(5)
    if not isinstance(body, dict) or "status" not in body:
        click.echo(f"{target} (from {resolved.url.source}) is not a MeshGuard gateway", err=True)
        sys.exit(5)
    if json_output():
        click.echo(json.dumps({"url": target, **body}, indent=2))
    else:
        click.echo(f"{target}: {body.get('status')} (version {body.get('version')}, mode {body.get('mode')}, "
                   f"{body.get('policies')} policies; from {resolved.url.source})")  # fmt: skip
        if body.get("reason"):
            click.echo(f"reason: {body['reason']}")
    sys.exit(0 if resp.status_code == 200 else 1)


def _running_pid(folder: Path) -> int | None:
    """The pid in folder/gateway.json if that process still runs; a stale file is removed."""
    info_path = folder / "gateway.json"
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        info_path.unlink(missing_ok=True)  # left behind by a gateway that crashed
        return None
    except PermissionError:
        raise click.ClickException(f"the gateway in {folder} (pid {pid}) belongs to another user") from None
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists() and b"meshguard" not in cmdline.read_bytes():
        info_path.unlink(missing_ok=True)  # the pid was reused by an unrelated process
        return None
    return pid


def _alive(pid: int) -> bool:
    """Still running (an exited process its parent has not reaped yet counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


@cli.command()
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="State folder of the gateway (default: MESHGUARD_STATE_DIR, ./.meshguard, the last started).")
@click.option("--wait", "wait_seconds", type=float, default=15.0, show_default=True,
              help="Seconds to wait for it to finish in-flight requests and exit.")
def stop(state_dir: Path | None, wait_seconds: float) -> None:
    """Stop a gateway started with `gateway start` (SIGTERM; exit 0 also when none runs)."""
    import signal
    import time

    from meshguard_gateway.cli._settings import state_folder_candidates

    folders = [state_dir] if state_dir is not None else state_folder_candidates()
    for folder in folders:
        pid = _running_pid(folder)
        if pid is None:
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            if not _alive(pid):
                click.echo(f"stopped the gateway in {folder} (pid {pid})")
                return
            time.sleep(0.1)
        raise click.ClickException(f"the gateway in {folder} (pid {pid}) did not exit within {wait_seconds:g} s")
    where = str(state_dir) if state_dir is not None else ", ".join(str(f) for f in folders)
    click.echo(f"no gateway is running (looked in {where})")
