"""`meshguard check ACTION [RESOURCE]`: ask the gateway as an agent, from a shell script.

Unlike `policy test` (an operator's what-if, no audit row), this is a real check with an agent
token: it is rate limited, audited, and refused exactly as the agent would be. Exit 0 when
allowed, 4 when refused (denied, rate limited, approval required), 3 for a bad or revoked
token, 5 when no gateway answers, so a script can gate a step on it:

    meshguard check execute:deploy production && ./deploy.sh
"""

from __future__ import annotations

import os
from typing import Any

import click

from meshguard_gateway.cli._errors import EXIT_DENIED, EXIT_OK, AuthFailedError, BadArgumentError, NetworkError
from meshguard_gateway.cli._options import common_options, json_output, quiet, settings
from meshguard_gateway.cli._output import print_fields, print_json
from meshguard_gateway.cli._policytest import parse_context


def _agent_token(given: str | None) -> str:
    for value in (given, os.environ.get("MESHGUARD_TOKEN"), os.environ.get("MESHGUARD_AGENT_TOKEN")):
        if value:
            return value.strip()
    raise AuthFailedError(
        "no agent token: pass --token, or set MESHGUARD_TOKEN (`meshguard agent token NAME` issues one)"
    )


@click.command()
@click.argument("action")
@click.argument("resource", required=False)
@click.option("--context", "context_json", metavar="JSON", help='Request context, e.g. \'{"sandbox": true}\'.')
@click.option("--token", help="Agent token (default: MESHGUARD_TOKEN, or the SDK's MESHGUARD_AGENT_TOKEN).")
@click.option("--trace-id", help="Trace id to file the check under (default: MESHGUARD_TRACE_ID).")
@click.option("--approval-id", help="An approved approval for exactly this request (releases it once).")
@common_options
def cli(
    action: str, resource: str | None, context_json: str | None, token: str | None, trace_id: str | None,
    approval_id: str | None,
) -> None:  # fmt: skip
    """Check ACTION as an agent, for real (audited): exit 0 allowed, 4 refused.

    \b
    meshguard check execute:deploy production && ./deploy.sh
    """
    import httpx

    from meshguard_gateway.cli._client import START_HINT

    if ":" not in action:
        raise BadArgumentError(f"action {action!r} is not verb:object, e.g. write:workspace")
    resolved = settings()
    url = str(resolved.url.value)
    payload: dict[str, Any] = {"action": action}
    if resource is not None:
        payload["resource"] = resource
    context = parse_context(context_json)
    if context:
        payload["context"] = context
    if approval_id:
        payload["approval_id"] = approval_id
    headers = {"Authorization": f"Bearer {_agent_token(token)}"}
    trace = trace_id or os.environ.get("MESHGUARD_TRACE_ID")
    if trace:
        headers["X-Trace-ID"] = trace
    where = url if resolved.url.source == "default" else f"{url} (from {resolved.url.source})"
    try:
        resp = httpx.post(url + "/proxy/governance/check", json=payload, headers=headers, timeout=resolved.timeout)
    except httpx.TimeoutException:
        raise NetworkError(f"the MeshGuard gateway at {where} did not answer within {resolved.timeout:g}s") from None
    except httpx.TransportError as exc:
        raise NetworkError(f"cannot reach the MeshGuard gateway at {where}: {exc}. {START_HINT}") from None
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise NetworkError(f"{where} answered {resp.status_code} without a JSON body; is it a MeshGuard gateway?")
    if resp.status_code == 401:
        raise AuthFailedError(
            f"the gateway at {url} refused the agent token ({body.get('reason') or body.get('message')}); "
            "a revoked agent stays refused, an expired token is replaced with `meshguard agent token NAME`"
        )
    allowed = resp.status_code == 200 and body.get("allowed") is True
    if resp.status_code not in (200, 403, 429):
        raise NetworkError(f"the gateway at {url} answered {resp.status_code}: {body.get('message') or body}")
    decision = str(body.get("decision") or ("allow" if allowed else "deny"))
    if json_output():
        print_json(body)
    elif quiet():
        click.echo(decision)
    else:
        pairs: list[tuple[str, Any]] = [
            ("Decision", decision.upper() + ("" if body.get("enforced", True) else " (audit mode: not enforced)")),
            ("Policy", body.get("policy")),
            ("Rule", body.get("rule")),
            ("Reason", body.get("reason")),
        ]
        if body.get("retry_after") is not None:
            pairs.append(("Retry in", f"{body['retry_after']} s ({body.get('limit')})"))
        if body.get("approval_id"):
            pairs.append(("Approval", f"{body['approval_id']}: `meshguard approval approve {body['approval_id']}`"))
        pairs.append(("Decision id", body.get("decision_id")))
        print_fields(pairs)
    click.get_current_context().exit(EXIT_OK if allowed else EXIT_DENIED)
