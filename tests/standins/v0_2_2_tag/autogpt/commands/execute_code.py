"""Mirrors autogpt/commands/execute_code.py at v0.2.2: the shell runs on the host, in the workspace."""

from standin_support import run_shell

from autogpt.workspace import WORKSPACE_PATH


def execute_shell(command_line: str) -> str:
    return run_shell(command_line, cwd=str(WORKSPACE_PATH))
