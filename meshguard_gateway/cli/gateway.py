"""`meshguard gateway start|status`: run a gateway in this terminal, or ask whether one is up."""

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
              help="State folder for secrets, gateway.json and the default database (MESHGUARD_STATE_DIR; ./.meshguard).")
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
        settings = load_settings(os.environ, **flags)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(run(settings))


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
