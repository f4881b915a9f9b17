"""`meshguard policy ...`: the policies in force, local policy files, and policy tests.

`validate` and `test --offline` read local files with the engine and need no gateway, so a
repository's CI can check its policies; the other commands use the gateway's admin API.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import yaml

from meshguard_gateway.cli._client import GatewayError, seg
from meshguard_gateway.cli._errors import EXIT_ERROR, EXIT_OK, EXIT_USAGE, BadArgumentError, CLIError
from meshguard_gateway.cli._options import admin_client, common_options, json_output, output_options, quiet
from meshguard_gateway.cli._output import (
    cell_text,
    decision_text,
    note,
    print_fields,
    print_json,
    print_line,
    print_table,
    styled,
    warn,
)
from meshguard_gateway.cli._policytest import (
    AgentSpec,
    Case,
    OfflineDecider,
    Outcome,
    decide_online,
    load_test_file,
    parse_context,
)
from meshguard_gateway.cli.agent import TRUST_TIERS, _tags, _trust, pick


@click.group()
def cli() -> None:
    """List, show, apply, validate, delete and test policies."""


def _policy_missing(name: str) -> CLIError:
    return CLIError(f"no policy named {name!r} on the gateway; `meshguard policy list` shows them")


def _applies_to(value: Any) -> str:
    if not isinstance(value, dict) or not value:
        return "all agents"
    parts = []
    for key in ("agentIds", "trustTiers", "tags"):
        if value.get(key):
            parts.append(f"{key}={','.join(str(v) for v in value[key])}")
    return "; ".join(parts) or "all agents"


@cli.command("list")
@common_options
def list_() -> None:
    """List the policies in force on the gateway."""
    body = admin_client().get("/admin/policies")
    policies: list[dict[str, Any]] = body.get("policies", []) if isinstance(body, dict) else []
    if json_output():
        print_json(body)
        return
    if quiet():
        for p in policies:
            click.echo(p.get("name"))  # one name per line, for scripts
        return
    if not policies:
        note("No policies: every request is denied. Add one with `meshguard policy apply FILE`.", quiet=quiet())
        return
    print_table(
        ["NAME", "VERSION", "APPLIES TO", "RULES", "DEFAULT", "SOURCE"],
        [
            [
                p.get("name"),
                p.get("version"),
                _applies_to(p.get("appliesTo")),
                str(len(p.get("rules") or [])),
                pick(p, "defaultEffect", "default_effect") or "deny",
                p.get("source"),
            ]
            for p in policies
        ],
    )


@cli.command()
@click.argument("name")
@common_options
def show(name: str) -> None:
    """Show one policy: its YAML source (or --json)."""
    try:
        body: dict[str, Any] = admin_client().get(f"/admin/policies/{seg(name)}")
    except GatewayError as exc:
        if exc.status == 404:
            raise _policy_missing(name) from None
        raise
    if json_output():
        print_json(body)
        return
    text = body.get("yaml")
    if not text:
        text = yaml.safe_dump({k: v for k, v in body.items() if k not in ("source", "yaml")}, sort_keys=False)
    if not quiet() and body.get("source"):
        note(f"# policy {body.get('name', name)} from {body['source']}")
    click.echo(str(text).rstrip("\n"))


def _policy_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(
            f for f in path.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file() and not f.name.startswith(".")
        )
        if not files:
            raise CLIError(f"{path} holds no policy files (*.yaml, *.yml)")
        return files
    return [path]


def _load_local(path: Path) -> Any:
    """Validate local policy files with the engine's parser; PolicyError lists every problem."""
    from meshguard_gateway.policy import load_policies

    return load_policies(path)


def _report_problems(exc: Any) -> None:
    """Print every problem of a PolicyError on stdout, then fail with its one-line summary."""
    problems = [str(p) for p in getattr(exc, "problems", [])] or [str(exc)]
    if json_output():
        print_json({"valid": False, "errors": problems})
    else:
        for line in problems:
            click.echo(line)
    n = len(problems)
    raise CLIError(f"{n} problem{'s' if n != 1 else ''} found; nothing was {'applied' if _applying() else 'loaded'}")


def _applying() -> bool:
    return click.get_current_context().command.name == "apply"


@cli.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@output_options
def validate(path: Path) -> None:
    """Check policy files (a file or a directory) without a gateway. Exit 1 on any problem."""
    from meshguard_gateway.errors import PolicyError

    if path.is_dir():
        _policy_files(path)  # an empty directory is a mistake, not a success
    try:
        policy_set = _load_local(path)
    except PolicyError as exc:
        _report_problems(exc)
        return
    warnings = [str(w) for w in policy_set.warnings]
    if json_output():
        print_json(
            {
                "valid": True,
                "policies": [{"name": p.name, "source": p.source, "rules": len(p.rules)} for p in policy_set],
                "warnings": warnings,
            }
        )
        return
    for w in warnings:
        warn(w)
    if quiet():
        return
    for p in policy_set:
        click.echo(f"OK  {p.source}  {p.name} ({len(p.rules)} rule{'s' if len(p.rules) != 1 else ''})")
    n = len(policy_set)
    click.echo(f"{n} polic{'ies' if n != 1 else 'y'} valid.")


@cli.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@common_options
def apply(path: Path) -> None:
    """Apply a policy file, or every *.yaml in a directory, to the gateway.

    Every file is validated first; if any has a problem, none is sent.
    """
    from meshguard_gateway.errors import PolicyError

    files = _policy_files(path)
    try:
        _load_local(path)
    except PolicyError as exc:
        _report_problems(exc)
        return
    client = admin_client()
    applied: list[dict[str, Any]] = []
    for f in files:
        text = f.read_text(encoding="utf-8")
        try:
            body = client.post("/admin/policies", content=text.encode(), headers={"Content-Type": "application/yaml"})
        except GatewayError as exc:
            done = ", ".join(str(a.get("name")) for a in applied)
            tail = f" (already applied: {done})" if done else ""
            raise CLIError(f"{f}: the gateway refused it: {exc.message}{tail}") from None
        applied.append(body if isinstance(body, dict) else {})
        if not json_output() and not quiet():
            rules = len((body or {}).get("rules") or [])
            how = {True: ", new", False: ", replacing the one in force"}.get(body.get("created"), "")
            click.echo(f"Applied policy {body.get('name')} from {f} ({rules} rule{'s' if rules != 1 else ''}{how}).")
    if json_output():
        print_json({"applied": applied})


@cli.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@common_options
def delete(name: str, yes: bool) -> None:
    """Remove a policy from the gateway."""
    if not yes and sys.stdin.isatty():
        click.confirm(f"Delete policy {name!r}? Requests it allowed will be denied", abort=True)
    try:
        body = admin_client().delete(f"/admin/policies/{seg(name)}")
    except GatewayError as exc:
        if exc.status == 404:
            raise _policy_missing(name) from None
        raise
    if json_output():
        print_json(body if body is not None else {"deleted": name})
    elif not quiet():
        click.echo(f"Deleted policy {name}.")


_LIMIT_WORDS = {"requestsPerMinute": "requests per minute", "requestsPerHour": "requests per hour"}


def _patterns(value: Any) -> str:
    if not value:
        return "-"
    out = []
    for item in value:
        if isinstance(item, dict):
            text = str(item.get("pattern") or item.get("action") or item.get("actions") or item)
            cond = item.get("conditions")
            if cond:
                text += " (" + ", ".join(f"{k}={v}" for k, v in cond.items()) + ")"
            out.append(text)
        else:
            out.append(str(item))
    return ", ".join(out)


@cli.command()
@click.argument("agent")
@common_options
def allowed(agent: str) -> None:
    """Show what an agent may do: per applicable policy, allowed, denied and approval patterns."""
    client = admin_client()
    try:
        body: dict[str, Any] = client.get(f"/admin/agents/{seg(agent)}/allowed")
    except GatewayError as exc:
        if exc.status == 404:
            raise CLIError(f"no agent named or with id {agent!r} on the gateway; `meshguard agent list` shows them") from None
        raise
    if json_output():
        print_json(body)
        return
    who = body.get("agent") if isinstance(body.get("agent"), dict) else {}
    if who:
        print_line(
            f"Agent {who.get('name', agent)} ({who.get('id', '?')}), trust {pick(who, 'trustTier', 'trust_tier')}, "
            f"tags {', '.join(who.get('tags') or []) or '-'}"
        )
    policies = body.get("policies") or []
    if not policies:
        print_line(f"No policy applies to {agent}: every request is denied.")
        return
    for p in policies:
        print_line("")
        print_line(
            f"Policy {p.get('policy') or p.get('name')} (anything else: {pick(p, 'defaultEffect', 'default_effect') or 'deny'})"
        )
        rows = [
            ("  allowed", _patterns(p.get("allowed"))),
            ("  denied", _patterns(p.get("denied"))),
            ("  approval", _patterns(pick(p, "approval", "requireApproval", "approval_required"))),
        ]
        limits = pick(p, "rateLimits", "rate_limits")
        if isinstance(limits, dict) and limits:
            rows.append(("  rate limit", ", ".join(f"{v} {_LIMIT_WORDS.get(k, k)}" for k, v in limits.items())))
        print_fields(rows)


# --------------------------------------------------------------------------- policy test


def _details_lines(details: Any) -> list[str]:
    """The verbose explanation: which policies applied, what each said, which rules matched."""
    if not details:
        return ["no policy applies to this agent"]
    if isinstance(details, str):
        return [details]
    if isinstance(details, dict):
        details = [details]
    lines: list[str] = []
    for item in details:
        if not isinstance(item, dict):
            lines.append(str(item))
            continue
        head = f"policy {item.get('policy') or item.get('name')}: {item.get('decision') or item.get('effect')}"
        if item.get("reason"):
            head += f" ({item['reason']})"
        elif item.get("rule"):
            head += f" by rule {item['rule']}"
        lines.append(head)
        matched = item.get("matched") or []
        if not matched:
            lines.append("  no rule matched")
        for m in matched:
            if not isinstance(m, dict):
                lines.append(f"  {m}")
                continue
            text = f"  {m.get('effect')} rule {m.get('rule')} matched on pattern {m.get('pattern')}"
            if m.get("applied") is False:
                text += f", but does not apply: {m.get('note') or 'a condition does not hold'}"
            lines.append(text)
    return lines


def _single_report(outcome: Outcome, verbose: bool) -> None:
    pairs: list[tuple[str, Any]] = [
        ("Decision", _decision_upper(outcome.decision)),
        ("Policy", outcome.policy),
        ("Rule", outcome.rule),
        ("Reason", outcome.reason),
    ]
    if outcome.extra.get("limit"):
        pairs.append(("Limit", f"{outcome.extra['limit']} (retry after {outcome.extra.get('retry_after', '?')} s)"))
    print_fields(pairs)
    if verbose:
        lines = _details_lines(outcome.details)
        print_line("Details:" if lines else "Details:  (none)")
        for line in lines:
            print_line(f"  {line}")


def _decision_upper(decision: str | None) -> Any:
    text = decision_text(decision)
    text.plain = text.plain.upper()
    return text


def _batch_report(outcomes: list[Outcome], verbose: bool) -> None:
    print_table(
        ["TEST", "AGENT", "ACTION", "RESOURCE", "EXPECTED", "GOT", "RESULT"],
        [
            [
                o.case.name,
                o.case.agent_name,
                o.case.action,
                o.case.resource,
                o.case.expect or "allow",
                decision_text(o.decision) if o.decision else cell_text(None),
                styled(o.result),
            ]
            for o in outcomes
        ],
    )
    for o in outcomes:
        if o.error is not None:
            print_line(f"ERROR {o.case.name}: {o.error}")
        elif not o.passed or verbose:
            where = ", ".join(x for x in (f"policy {o.policy}" if o.policy else "", f"rule {o.rule}" if o.rule else "") if x)
            verdict = "FAIL" if not o.passed else "PASS"
            print_line(
                f"{verdict} {o.case.name}: expected {o.case.expect or 'allow'}, got {o.decision}"
                + (f" ({where})" if where else "")
                + (f": {o.reason}" if o.reason else "")
            )
            if verbose:
                for line in _details_lines(o.details):
                    print_line(f"    {line}")


@cli.command()
@click.argument("args", nargs=-1, metavar="[AGENT] [ACTION] [RESOURCE]")
@click.option("--agent", "agent_opt", help="Agent name or id (instead of the AGENT argument).")
@click.option("--action", "action_opt", help="Action, verb:object (instead of the ACTION argument).")
@click.option("--resource", "resource_opt", help="Resource (instead of the RESOURCE argument).")
@click.option("--context", "context_json", metavar="JSON", help='Request context, e.g. \'{"sandbox": true}\'.')
@click.option("--policy", "policy_name", metavar="NAME", help="Evaluate this policy only.")
@click.option("--file", "-f", "test_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Batch: run every case in a YAML test file.")
@click.option("--verbose", "-v", is_flag=True, help="Show which policies applied and which rules matched.")
@click.option("--offline", is_flag=True, help="Evaluate local policy files with no gateway (see --policies).")
@click.option("--policies", "policies_dir", type=click.Path(path_type=Path),
              help="Offline: the policy file or directory to evaluate (default ./policies). Implies --offline.")
@click.option("--trust", default=None, callback=_trust, help=f"Offline: the agent's trust tier ({', '.join(TRUST_TIERS)}).")
@click.option("--agent-tags", "agent_tags", multiple=True, callback=_tags, metavar="A,B", help="Offline: the agent's tags.")
@common_options
def test(
    args: tuple[str, ...],
    agent_opt: str | None,
    action_opt: str | None,
    resource_opt: str | None,
    context_json: str | None,
    policy_name: str | None,
    test_file: Path | None,
    verbose: bool,
    offline: bool,
    policies_dir: Path | None,
    trust: str | None,
    agent_tags: list[str] | None,
) -> None:
    """Test what the policies decide, for one request or a file of cases.

    \b
    meshguard policy test autogpt-agent browse:web
    meshguard policy test --agent autogpt-agent --action write:workspace --resource notes.txt -v
    meshguard policy test --file tests.yaml
    meshguard policy test --offline --policies policies/ --file tests.yaml

    Exit status: 0 allowed / every case passed, 1 not allowed / a case failed,
    2 the test could not run (bad arguments or file, unknown agent), 3 auth, 5 network.
    """  # noqa: D301
    ctx = click.get_current_context()
    offline = offline or policies_dir is not None
    if len(args) > 3:
        raise BadArgumentError(f"too many arguments: {' '.join(args[3:])!r}; expected AGENT ACTION [RESOURCE]")
    agent = agent_opt or (args[0] if len(args) > 0 else None)
    action = action_opt or (args[1] if len(args) > 1 else None)
    resource = resource_opt or (args[2] if len(args) > 2 else None)
    context = parse_context(context_json)

    cases: list[Case]
    agents: dict[str, AgentSpec] = {}
    batch = test_file is not None
    if batch:
        assert test_file is not None
        if not test_file.exists():
            raise BadArgumentError(f"--file: {test_file} does not exist")
        if args or action_opt or resource_opt:
            raise BadArgumentError("--file runs the cases in the file; give AGENT/ACTION/RESOURCE in the file instead")
        cases, agents = load_test_file(test_file)
    else:
        if not agent or not action:
            raise BadArgumentError(
                "give an agent and an action: `meshguard policy test AGENT ACTION [RESOURCE]`, or --file tests.yaml"
            )
        cases = [Case(name=action, agent=agent, action=action, resource=resource, context=context)]

    if offline:
        from meshguard_gateway.errors import PolicyError

        path = policies_dir or Path("policies")
        if not path.exists():
            raise BadArgumentError(
                f"--policies: {path} does not exist; offline tests need local policy files (--policies DIR)"
            )
        default_agent = None
        if trust is not None or agent_tags is not None:
            default_agent = AgentSpec(name=agent or "", trust=trust, tags=frozenset(agent_tags or []))
        try:
            decider = OfflineDecider(path, agents, default_agent, policy_name)
        except PolicyError as exc:
            problems = "; ".join(str(p) for p in exc.problems)
            raise BadArgumentError(f"the policies in {path} do not load: {problems}") from None
        outcomes = [decider.decide(case) for case in cases]
    else:
        if trust is not None or agent_tags is not None:
            raise BadArgumentError("--trust and --agent-tags describe agents for --offline; online the gateway knows them")
        client = admin_client(ctx)
        outcomes = [decide_online(client, case, policy_name) for case in cases]

    errors = sum(1 for o in outcomes if o.error is not None)
    passed = sum(1 for o in outcomes if o.passed)
    failed = len(outcomes) - passed - errors

    if not batch:
        outcome = outcomes[0]
        if outcome.error is not None:
            raise BadArgumentError(outcome.error)
        if json_output():
            body = outcome.to_json()
            body.pop("expected", None)
            body.pop("passed", None)
            body.pop("result", None)
            body.pop("name", None)
            body["allowed"] = outcome.decision == "allow"
            if not verbose:
                body.pop("details", None)
            print_json(body)
        elif quiet():
            click.echo(outcome.decision)
        else:
            _single_report(outcome, verbose)
        ctx.exit(EXIT_OK if outcome.decision == "allow" else EXIT_ERROR)

    if json_output():
        print_json(
            {
                "results": [o.to_json() for o in outcomes],
                "passed": passed,
                "failed": failed,
                "errors": errors,
                "total": len(outcomes),
            }
        )
    else:
        if not quiet():
            _batch_report(outcomes, verbose)
        summary = f"Results: {passed} passed, {failed} failed"
        if errors:
            summary += f", {errors} error{'s' if errors != 1 else ''}"
        click.echo(summary)
    ctx.exit(EXIT_USAGE if errors else (EXIT_ERROR if failed else EXIT_OK))
