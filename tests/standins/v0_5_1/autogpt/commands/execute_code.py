"""Mirrors autogpt/commands/execute_code.py at ~v0.5.1: CodeExecutorComponent (:56) offers execute_shell
only with execute_local_commands (:83); AutoGPT's own refusal raises OperationNotAllowedError."""

from __future__ import annotations

from typing import Iterator

from standin_support import run_shell

from autogpt.command_decorator import command
from autogpt.models.command import Command
from autogpt.utils.exceptions import OperationNotAllowedError


class CodeExecutorComponent:
    def __init__(self, workspace, legacy_config) -> None:
        self.workspace = workspace
        self.legacy_config = legacy_config

    def get_commands(self) -> Iterator[Command]:
        if self.legacy_config.execute_local_commands:
            yield self.execute_shell

    @command(["execute_shell"], "Execute a Shell Command, non-interactive commands only", {"command_line": {}})
    def execute_shell(self, command_line: str) -> str:
        if command_line.split()[0] in self.legacy_config.shell_denylist:
            raise OperationNotAllowedError("This shell command is not allowed.")
        return run_shell(command_line, cwd=str(self.workspace.root))
