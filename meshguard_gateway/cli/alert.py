"""`meshguard alert ...`: the webhook alerts a gateway posts (denials, rate limits, approval
requests, revocations), every delivery attempt it made, and a test that proves a receiver works.

The destinations are gateway settings (ALERT_WEBHOOKS, docs/operations.md); the CLI only reads
what the gateway did and asks it to send a test.
"""

from __future__ import annotations

from typing import Any

import click

from meshguard_gateway.cli._client import GatewayError
from meshguard_gateway.cli._errors import CLIError
from meshguard_gateway.cli._options import admin_client, common_options, json_output, quiet
from meshguard_gateway.cli._output import format_time, note, print_json, print_table, styled

OUTCOME_STYLES = {"delivered": "green", "retrying": "yellow", "failed": "bold red", "dropped": "bold red"}


@click.group()
def cli() -> None:
    """Webhook alerts: delivery attempts, and a test alert to every destination."""


def _rows(deliveries: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            format_time(d.get("timestamp")),
            d.get("event"),
            d.get("agent_name"),
            f"{d.get('destination')} ({d.get('format')})",
            d.get("attempt"),
            styled(d.get("outcome"), OUTCOME_STYLES),
            d.get("http_status"),
            d.get("error"),
            d.get("folded") or None,
            d.get("alert_id"),
        ]
        for d in deliveries
    ]


_COLUMNS = ["TIME", "EVENT", "AGENT", "DESTINATION", "ATTEMPT", "OUTCOME", "HTTP", "ERROR", "FOLDED", "ALERT"]


@cli.command("list")
@click.option("--failed", is_flag=True, help="Only attempts that did not deliver (retrying, failed, dropped).")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True, help="How many, newest first.")
@common_options
def list_(failed: bool, limit: int) -> None:
    """Delivery attempts, newest first: when, what, to which destination, and what happened."""
    body = admin_client().get("/admin/alerts", failed="true" if failed else None, limit=limit)
    deliveries: list[dict[str, Any]] = body.get("deliveries", []) if isinstance(body, dict) else []
    destinations: list[dict[str, Any]] = body.get("destinations", []) if isinstance(body, dict) else []
    if json_output():
        print_json(body)
        return
    if quiet():
        for d in deliveries:
            click.echo(f"{d.get('alert_id')} {d.get('destination')} {d.get('attempt')} {d.get('outcome')}")
        return
    if not destinations:
        note("No alert destinations are configured on this gateway: set ALERT_WEBHOOKS and restart it.")
    else:
        note("Destinations: " + ", ".join(f"{d.get('name')} ({d.get('format')}, {d.get('url')})" for d in destinations))
    if not deliveries:
        note("No failed delivery attempts." if failed else "No alert delivery attempts yet.")
        return
    print_table(_COLUMNS, _rows(deliveries))


@cli.command()
@common_options
def test() -> None:
    """Send a test alert to every destination (one attempt each); exit 1 if one did not take it."""
    try:
        body = admin_client().post("/admin/alerts/test")
    except GatewayError as exc:
        if exc.status == 409:
            raise CLIError(exc.message) from None
        raise
    deliveries: list[dict[str, Any]] = body.get("deliveries", []) if isinstance(body, dict) else []
    failed = [d for d in deliveries if d.get("outcome") != "delivered"]
    if json_output():
        print_json(body)
    elif not quiet():
        print_table(_COLUMNS, _rows(deliveries))
    if failed:
        names = ", ".join(f"{d.get('destination')} ({d.get('error')})" for d in failed)
        raise CLIError(f"{len(failed)} of {len(deliveries)} destinations did not take the test alert: {names}")
    if not json_output():
        note(f"Test alert delivered to all {len(deliveries)} destination(s).", quiet=quiet())
