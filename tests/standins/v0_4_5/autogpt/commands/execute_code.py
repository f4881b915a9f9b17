"""Mirrors autogpt/commands/execute_code.py at v0.4.5: execute_shell (:216) runs on the host after chdir
into the workspace; AutoGPT's own allow/deny list refusal is a returned string."""

import os
from pathlib import Path

from standin_support import run_shell

from autogpt.agents.agent import Agent
from autogpt.command_decorator import command


def validate_command(command: str, config) -> bool:  # execute_code.py:180
    if not command:
        return False
    command_name = command.split()[0]
    if config.shell_command_control == "allowlist":
        return command_name in config.shell_allowlist
    return command_name not in config.shell_denylist


@command(
    "execute_shell",
    "Executes a Shell Command, non-interactive commands only",
    {"command_line": {"type": "string", "required": True}},
    enabled=lambda config: config.execute_local_commands,
    disabled_reason="You are not allowed to run local shell commands. To execute"
    " shell commands, EXECUTE_LOCAL_COMMANDS must be set to 'True' "
    "in your config file: .env - do not attempt to bypass the restriction.",
)
def execute_shell(command_line: str, agent: Agent) -> str:
    if not validate_command(command_line, agent.config):
        return "Error: This Shell Command is not allowed."
    current_dir = Path.cwd()
    if not current_dir.is_relative_to(agent.config.workspace_path):
        os.chdir(agent.config.workspace_path)
    return run_shell(command_line, cwd=os.getcwd())
