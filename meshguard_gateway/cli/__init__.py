"""The `meshguard` command: one sub-module per noun, imported only when used.

Lazy loading keeps `meshguard --help` fast and lets `meshguard gateway start` run
without importing the HTTP client code (and vice versa).

Exit statuses (MeshGuard's): 0 ok, 1 error, 2 bad arguments, 3 authentication,
4 policy denied, 5 network. Expected failures print one line on stderr, never a traceback;
they are raised as `cli._errors.CLIError` subclasses, or translated here once.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from meshguard_gateway import __version__
from meshguard_gateway.cli._errors import CLIError, NetworkError
from meshguard_gateway.cli._options import common_options

# noun -> (module, one-line help). Each module defines a click group or command named `cli`.
_COMMANDS: dict[str, tuple[str, str]] = {
    "gateway": ("meshguard_gateway.cli.gateway", "Run a gateway or ask whether one is up."),
    "agent": ("meshguard_gateway.cli.agent", "Create, list, show and revoke agents; issue tokens."),
    "policy": ("meshguard_gateway.cli.policy", "List, apply, validate and test policies."),
    "audit": ("meshguard_gateway.cli.audit", "Read the audit trail: tail, query, trace, stats, export."),
    "approval": ("meshguard_gateway.cli.approval", "List, approve and deny pending approvals."),
    "alert": ("meshguard_gateway.cli.alert", "Webhook alerts: list delivery attempts, send a test alert."),
    "check": ("meshguard_gateway.cli.check", "Check an action as an agent (audited): exit 0 allowed, 4 refused."),
    "config": ("meshguard_gateway.cli.config", "Show and change CLI settings."),
    "plugin": ("meshguard_gateway.cli.plugin", "Build MeshGuard's AutoGPT plugin (zip for AutoGPT's plugins folder)."),
}


def _translate(exc: Exception) -> CLIError | None:
    """An expected failure that escaped a command, as the one-line error it should have been."""
    errors = sys.modules.get("meshguard_gateway.errors")
    if errors is not None and isinstance(exc, errors.MeshGuardError):
        return CLIError(str(exc))
    httpx = sys.modules.get("httpx")
    if httpx is not None and isinstance(exc, httpx.TransportError):
        return NetworkError(f"cannot talk to the MeshGuard gateway: {exc}")
    return None


def _one_line_usage(exc: click.UsageError) -> CLIError:
    """A usage error on one line (exit 2): what is wrong, the usage line, where to read more."""
    from meshguard_gateway.cli._errors import BadArgumentError

    message = exc.format_message()
    if exc.ctx is not None:
        usage = exc.ctx.get_usage().replace("Usage: ", "usage: ", 1)
        message = f"{message.rstrip('.')}. {usage} (see `{exc.ctx.command_path} --help`)"
    return BadArgumentError(message)  # exit 2, as click's usage errors


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return None
        module = importlib.import_module(_COMMANDS[cmd_name][0])
        command: click.Command = module.cli
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, help_) in sorted(_COMMANDS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise  # `meshguard agent` alone: the help, as click shows it
        except click.UsageError as exc:
            raise _one_line_usage(exc) from None
        except Exception as exc:  # noqa: BLE001 - translated or re-raised unchanged
            translated = _translate(exc)
            if translated is None:
                raise
            raise translated from None

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:  # fmt: skip
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:  # a bad option before the noun: `meshguard --nope`
            raise _one_line_usage(exc) from None

    def main(self, *args: Any, **kwargs: Any) -> Any:
        # `python -m meshguard_gateway` should say "Usage: meshguard ...", like the script.
        kwargs.setdefault("prog_name", "meshguard")
        return super().main(*args, **kwargs)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="meshguard")
@common_options
def main() -> None:
    """MeshGuard gateway and command-line tool for governed AutoGPT agents.

    \b
    Settings: flags > MESHGUARD_URL / MESHGUARD_ADMIN_TOKEN > ~/.config/meshguard/config.json
    > a gateway started on this machine (./.meshguard, last-gateway) > http://localhost:3100.
    Exit status: 0 ok, 1 error, 2 bad arguments, 3 authentication, 4 policy denied, 5 network.
    """
