"""`meshguard agent ...`: agent identities and their tokens, by name or id."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from meshguard_gateway.cli._client import GatewayError, seg
from meshguard_gateway.cli._errors import CLIError
from meshguard_gateway.cli._options import admin_client, common_options, json_output, quiet
from meshguard_gateway.cli._output import (
    format_date,
    format_time,
    note,
    print_fields,
    print_json,
    print_table,
    styled,
    warn,
)
from meshguard_gateway.policy import TIER_ALIASES, TRUST_TIERS



def pick(obj: dict[str, Any], *names: str) -> Any:
    """The first present field among camelCase / snake_case spellings."""
    for name in names:
        if obj.get(name) is not None:
            return obj[name]
    return None


def _trust(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    value = TIER_ALIASES.get(value.lower(), value.lower())
    if value not in TRUST_TIERS:
        raise click.BadParameter(f"{value!r} is not a trust tier; use one of: {', '.join(TRUST_TIERS)}")
    return value


def _tags(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[str] | None:
    if not value:
        return None
    tags: list[str] = []
    for chunk in value:
        for tag in chunk.split(","):
            tag = tag.strip()
            if tag and tag not in tags:
                tags.append(tag)
    return tags


def write_secret(path: Path, secret: str) -> None:
    """Write a token readable by its owner only (0600), replacing the file if it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise CLIError(f"cannot write the token to {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (secret + "\n").encode())
    finally:
        os.close(fd)


def check_writable(path: Path) -> None:
    """Fail before the gateway is asked: a token that cannot be saved must not be issued."""
    target = path if path.exists() else (path.parent if str(path.parent) else Path("."))
    if not target.exists():
        raise CLIError(f"cannot write the token to {path}: the folder {target} does not exist")
    if not os.access(target, os.W_OK):
        raise CLIError(f"cannot write the token to {path}: permission denied; choose another --output")


def not_found(agent: str, exc: GatewayError) -> CLIError:
    return CLIError(f"no agent named or with id {agent!r} on the gateway; `meshguard agent list` shows them")


def get_agent(client: Any, agent: str) -> dict[str, Any]:
    try:
        found: dict[str, Any] = client.get(f"/admin/agents/{seg(agent)}")
    except GatewayError as exc:
        if exc.status == 404:
            raise not_found(agent, exc) from None
        raise
    return found


def _show_token(body: dict[str, Any], agent_label: str, output: Path | None) -> None:
    token = str(body.get("token") or "")
    if not token:
        raise CLIError("the gateway answered without a token; check the gateway's log")
    expires = pick(body, "expiresAt", "expires_at")
    if output is not None:
        try:
            write_secret(output, token)
        except CLIError as exc:
            # The token exists now; printing it beats losing it.
            warn(f"{exc.message}; here it is instead (save it now):")
            click.echo(token)
            raise
        if not quiet():
            click.echo(f"Token for agent {agent_label} written to {output} (mode 0600).")
            if expires:
                click.echo(f"It expires at {format_time(expires)} UTC.")
            click.echo(f"Use it with: export MESHGUARD_TOKEN=\"$(cat {output})\"")
        return
    if quiet():
        click.echo(token)
        return
    click.echo(f"Token for agent {agent_label}:")
    click.echo("")
    click.echo(token)  # plainly, on its own line: nothing may wrap or colour it
    click.echo("")
    click.echo("Save this token now: it is shown only once and the gateway does not keep it.")
    if expires:
        click.echo(f"It expires at {format_time(expires)} UTC; `meshguard agent token {agent_label}` issues a new one.")
    click.echo("Give it to the agent with: export MESHGUARD_TOKEN=<token>")


def _json_with_token(body: dict[str, Any], output: Path | None) -> dict[str, Any]:
    """The answer for --json; with --output the token goes to the file, not to stdout."""
    if output is None:
        return body
    write_secret(output, str(body.get("token") or ""))
    return {**{k: v for k, v in body.items() if k != "token"}, "tokenFile": str(output)}


def _label(body: dict[str, Any], fallback: str) -> str:
    return str(body.get("name") or body.get("id") or fallback)


@click.group()
def cli() -> None:
    """Create, list, show and revoke agents; issue tokens. Agents are named by name or id."""


@cli.command()
@click.argument("name")
@click.option("--trust", "trust", default=None, callback=_trust,
              help=f"Trust tier: {', '.join(TRUST_TIERS)} (default: the gateway's, verified).")
@click.option("--tags", "tags", multiple=True, callback=_tags, metavar="A,B",
              help="Comma-separated tags (policies select agents by tag).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write the token to FILE (mode 0600) instead of printing it.")
@common_options
def create(name: str, trust: str | None, tags: list[str] | None, output: Path | None) -> None:
    """Create an agent and print its token once.

    \b
    meshguard agent create autogpt-agent --trust verified --tags autogpt,autonomous
    """  # noqa: D301
    if output is not None:
        check_writable(output)
    client = admin_client()
    payload: dict[str, Any] = {"name": name, "tags": tags or []}
    if trust is not None:
        payload["trustTier"] = trust
    body: dict[str, Any] = client.post("/admin/agents", json=payload)
    if json_output():
        print_json(_json_with_token(body, output))
        return
    if not quiet():
        click.echo(
            f"Created agent {_label(body, name)} ({body.get('id', '?')}): trust {pick(body, 'trustTier', 'trust_tier')}, "
            f"tags {', '.join(body.get('tags') or []) or '-'}."
        )
    _show_token(body, _label(body, name), output)


@cli.command("list")
@click.option("--trust", default=None, callback=_trust, help="Only agents of this trust tier.")
@click.option("--status", type=click.Choice(["active", "revoked"]), default=None, help="Only active or revoked agents.")
@common_options
def list_(trust: str | None, status: str | None) -> None:
    """List agents."""
    body = admin_client().get("/admin/agents", trust=trust, status=status)
    agents: list[dict[str, Any]] = body.get("agents", []) if isinstance(body, dict) else []
    if json_output():
        print_json(body)
        return
    if quiet():
        for a in agents:
            click.echo(a.get("name") or a.get("id"))  # one name per line, for scripts
        return
    if not agents:
        note("No agents. Create one with `meshguard agent create NAME --trust verified --tags autogpt`.", quiet=quiet())
        return
    print_table(
        ["ID", "NAME", "TRUST", "TAGS", "STATUS", "CREATED"],
        [
            [
                a.get("id"),
                a.get("name"),
                pick(a, "trustTier", "trust_tier"),
                ",".join(a.get("tags") or []) or None,
                styled(a.get("status") or "active"),
                format_date(pick(a, "createdAt", "created_at")),
            ]
            for a in agents
        ],
    )


@cli.command()
@click.argument("agent")
@common_options
def show(agent: str) -> None:
    """Show one agent (by name or id)."""
    body = get_agent(admin_client(), agent)
    if json_output():
        print_json(body)
        return
    print_fields(
        [
            ("ID", body.get("id")),
            ("Name", body.get("name")),
            ("Trust", pick(body, "trustTier", "trust_tier")),
            ("Tags", ", ".join(body.get("tags") or []) or None),
            ("Status", styled(body.get("status") or "active")),
            ("Created", format_time(pick(body, "createdAt", "created_at"))),
        ]
        + ([("Revoked", format_time(pick(body, "revokedAt", "revoked_at")))] if pick(body, "revokedAt", "revoked_at") else [])
    )


@cli.command()
@click.argument("agent")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write the token to FILE (mode 0600) instead of printing it.")
@common_options
def token(agent: str, output: Path | None) -> None:
    """Issue a new token for an agent (its older tokens stay valid until they expire)."""
    if output is not None:
        check_writable(output)
    client = admin_client()
    try:
        body: dict[str, Any] = client.post(f"/admin/agents/{seg(agent)}/token")
    except GatewayError as exc:
        if exc.status == 404:
            raise not_found(agent, exc) from None
        if exc.status == 409:
            raise CLIError(
                f"agent {agent!r} is revoked and gets no new token; create a new agent with `meshguard agent create`"
            ) from None
        raise
    if json_output():
        print_json(_json_with_token(body, output))
        return
    _show_token(body, agent, output)


@cli.command()
@click.argument("agent")
@common_options
def revoke(agent: str) -> None:
    """Revoke an agent now: every one of its tokens is refused from its next request (401)."""
    client = admin_client()
    try:
        body: dict[str, Any] = client.delete(f"/admin/agents/{seg(agent)}")
    except GatewayError as exc:
        if exc.status == 404:
            raise not_found(agent, exc) from None
        raise
    if json_output():
        print_json(body)
        return
    if quiet():
        return
    when = format_time(pick(body, "revokedAt", "revoked_at"))
    click.echo(
        f"Revoked agent {_label(body, agent)} ({body.get('id', '?')}) at {when} UTC. "
        "Its next request gets 401 Unauthorized; revocation is permanent."
    )


@cli.command()
@click.argument("agent")
@click.option("--trust", default=None, callback=_trust, help="New trust tier.")
@click.option("--tags", "tags", multiple=True, callback=_tags, metavar="A,B", help="New tags (replace the old ones).")
@common_options
def update(agent: str, trust: str | None, tags: list[str] | None) -> None:
    """Change an agent's trust tier or tags."""
    changes: dict[str, Any] = {}
    if trust is not None:
        changes["trustTier"] = trust
    if tags is not None:
        changes["tags"] = tags
    if not changes:
        raise click.UsageError("nothing to change: give --trust and/or --tags")
    client = admin_client()
    try:
        body: dict[str, Any] = client.patch(f"/admin/agents/{seg(agent)}", json=changes)
    except GatewayError as exc:
        if exc.status == 404:
            raise not_found(agent, exc) from None
        raise
    if json_output():
        print_json(body)
        return
    if not quiet():
        click.echo(
            f"Updated agent {_label(body, agent)}: trust {pick(body, 'trustTier', 'trust_tier')}, "
            f"tags {', '.join(body.get('tags') or []) or '-'}."
        )
