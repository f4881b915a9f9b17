"""The `meshguard` command: one sub-module per noun, imported only when used.

Lazy loading keeps `meshguard --help` fast and lets `meshguard gateway start` run
without importing the HTTP client code (and vice versa).
"""

from __future__ import annotations

import importlib

import click

from meshguard_gateway import __version__

# noun -> (module, one-line help). Each module defines a click group or command named `cli`.
_COMMANDS: dict[str, tuple[str, str]] = {
    "gateway": ("meshguard_gateway.cli.gateway", "Run a gateway or ask whether one is up."),
    "agent": ("meshguard_gateway.cli.agent", "Create, list, show and revoke agents; issue tokens."),
    "policy": ("meshguard_gateway.cli.policy", "List, apply, validate and test policies."),
    "audit": ("meshguard_gateway.cli.audit", "Read the audit trail: tail, query, trace, stats, export."),
    "approval": ("meshguard_gateway.cli.approval", "List, approve and deny pending approvals."),
    "config": ("meshguard_gateway.cli.config", "Show and change CLI settings."),
}


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


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="meshguard")
def main() -> None:
    """MeshGuard gateway and command-line tool for governed AutoGPT agents."""
