"""Mirrors autogpt/commands/execute_code.py at v0.5.0: execute_shell (:263) runs on the host; AutoGPT's
own refusal is `raise OperationNotAllowedError("This shell command is not allowed.")` (:274)."""

import os

from standin_support import run_shell

from autogpt.agents.agent import Agent
from autogpt.agents.utils.exceptions import OperationNotAllowedError
from autogpt.command_decorator import command


def validate_command(command: str, config) -> bool:
    if not command:
        return False
    command_name = command.split()[0]
    if config.shell_command_control == "allowlist":
        return command_name in config.shell_allowlist
    return command_name not in config.shell_denylist


@command("execute_shell", "Executes a Shell Command, non-interactive commands only",
         {"command_line": {"type": "string", "required": True}},
         enabled=lambda config: config.execute_local_commands,
         disabled_reason="You are not allowed to run local shell commands.")  # fmt: skip
def execute_shell(command_line: str, agent: Agent) -> str:
    if not validate_command(command_line, agent.legacy_config):
        raise OperationNotAllowedError("This shell command is not allowed.")
    return run_shell(command_line, cwd=str(agent.workspace.root))
