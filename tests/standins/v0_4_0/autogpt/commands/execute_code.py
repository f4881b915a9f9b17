"""Mirrors autogpt/commands/execute_code.py at v0.4.0: execute_shell runs on the host (no container),
after chdir into the workspace."""

import os

from standin_support import run_shell

from autogpt.commands.command import command
from autogpt.config import Config

CFG = Config()


@command(
    "execute_shell",
    "Execute Shell Command, non-interactive commands only",
    '"command_line": "<command_line>"',
    CFG.execute_local_commands,
    "You are not allowed to run local shell commands. To execute"
    " shell commands, EXECUTE_LOCAL_COMMANDS must be set to 'True' "
    "in your config. Do not attempt to bypass the restriction.",
)  # execute_code.py:124
def execute_shell(command_line: str, config: Config) -> str:
    current_dir = os.getcwd()
    if config.workspace_path not in current_dir:
        os.chdir(config.workspace_path)
    return run_shell(command_line, cwd=os.getcwd())
