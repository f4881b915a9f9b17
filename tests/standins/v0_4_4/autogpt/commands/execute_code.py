"""Mirrors autogpt/commands/execute_code.py at v0.4.4: execute_shell runs on the host after chdir
into the workspace; enabled by EXECUTE_LOCAL_COMMANDS."""

import os

from standin_support import run_shell

from autogpt.agent.agent import Agent
from autogpt.command_decorator import command


@command(
    "execute_shell",
    "Executes a Shell Command, non-interactive commands only",
    {"command_line": {"type": "string", "required": True}},
    enabled=lambda config: config.execute_local_commands,
    disabled_reason="You are not allowed to run local shell commands. To execute"
    " shell commands, EXECUTE_LOCAL_COMMANDS must be set to 'True' "
    "in your config file: .env - do not attempt to bypass the restriction.",
)  # execute_code.py:193
def execute_shell(command_line: str, agent: Agent) -> str:
    current_dir = os.getcwd()
    if agent.config.workspace_path not in current_dir:
        os.chdir(agent.config.workspace_path)
    return run_shell(command_line, cwd=os.getcwd())
