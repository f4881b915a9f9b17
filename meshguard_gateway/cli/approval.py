"""`meshguard approval ...`: the human in the loop.

When a policy requires approval, the launcher prints the approval id and waits; a person
lists pending approvals and approves or denies them here. Who decided is recorded
(``--by``, else the login name) together with the reason.
"""

from __future__ import annotations

import getpass
import os
from typing import Any

import click

from meshguard_gateway.cli._client import GatewayError, seg
from meshguard_gateway.cli._errors import CLIError
from meshguard_gateway.cli._options import actor_name, admin_client, common_options, json_output, quiet
from meshguard_gateway.cli._output import format_time, note, print_json, print_table, styled
from meshguard_gateway.cli.agent import pick

STATUSES = ("pending", "approved", "denied", "expired", "used")


def who_am_i() -> str:
    """The person deciding: $USER, else the login name, else 'cli'."""
    for var in ("USER", "LOGNAME", "USERNAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


@click.group()
def cli() -> None:
    """List, approve and deny approval requests."""


def _agent(a: dict[str, Any]) -> Any:
    return pick(a, "agent_name", "agentName", "agent", "agent_id", "agentId")


@cli.command("list")
@click.option("--status", type=click.Choice([*STATUSES, "all"]), default="pending", show_default=True)
@common_options
def list_(status: str) -> None:
    """List approval requests (pending ones by default)."""
    body = admin_client().get("/admin/approvals", status=None if status == "all" else status)
    approvals: list[dict[str, Any]] = body.get("approvals", []) if isinstance(body, dict) else []
    if json_output():
        print_json(body)
        return
    if quiet():
        for a in approvals:
            click.echo(a.get("id"))  # one id per line, oldest first, for scripts
        return
    if not approvals:
        note(f"No {'' if status == 'all' else status + ' '}approvals.", quiet=quiet())
        return
    print_table(
        ["ID", "AGENT", "ACTION", "RESOURCE", "STATUS", "REQUESTED", "EXPIRES", "DECIDED BY"],
        [
            [
                a.get("id"),
                _agent(a),
                a.get("action"),
                a.get("resource"),
                styled(a.get("status")),
                format_time(pick(a, "created_at", "createdAt", "requested_at")),
                format_time(pick(a, "expires_at", "expiresAt")),
                pick(a, "decided_by", "decidedBy"),
            ]
            for a in approvals
        ],
    )
    if status == "pending" and not quiet():
        note("Decide with `meshguard approval approve ID --reason ...` or `meshguard approval deny ID --reason ...`.")


def _decide(approval_id: str, verdict: str, reason: str | None, by: str | None) -> None:
    payload: dict[str, Any] = {"by": by or actor_name()}
    if reason:
        payload["reason"] = reason
    try:
        body: dict[str, Any] = admin_client().post(f"/admin/approvals/{seg(approval_id)}/{verdict}", json=payload)
    except GatewayError as exc:
        if exc.status == 404:
            raise CLIError(
                f"no approval with id {approval_id!r}; `meshguard approval list --status all` shows them"
            ) from None
        if exc.status == 409:
            raise CLIError(f"approval {approval_id} cannot be {verdict}d: {exc.message}") from None
        raise
    if json_output():
        print_json(body)
        return
    if quiet():
        return
    what = " ".join(str(x) for x in (body.get("action"), body.get("resource")) if x)
    agent = _agent(body)
    done = "Approved" if verdict == "approve" else "Denied"
    line = f"{done} {body.get('id', approval_id)}"
    if what:
        line += f" ({what}" + (f" for agent {agent})" if agent else ")")
    line += f" by {pick(body, 'decided_by', 'decidedBy') or payload['by']}"
    reason_text = pick(body, "decision_reason", "decisionReason") or reason
    if reason_text:
        line += f": {reason_text}"
    click.echo(line + ".")
    if verdict == "approve":
        note("The waiting agent goes ahead with this one request; a repeat needs a new approval.")


@cli.command()
@click.argument("approval_id", metavar="ID")
@click.option("--reason", help="Why (recorded with the decision).")
@click.option("--by", help="Who decides (default: --as, else $USER).")
@common_options
def approve(approval_id: str, reason: str | None, by: str | None) -> None:
    """Approve a pending request: the agent may do it, once."""
    _decide(approval_id, "approve", reason, by)


@cli.command()
@click.argument("approval_id", metavar="ID")
@click.option("--reason", help="Why (recorded with the decision, and told to the agent).")
@click.option("--by", help="Who decides (default: --as, else $USER).")
@common_options
def deny(approval_id: str, reason: str | None, by: str | None) -> None:
    """Deny a pending request: the agent is refused."""
    _decide(approval_id, "deny", reason, by)
