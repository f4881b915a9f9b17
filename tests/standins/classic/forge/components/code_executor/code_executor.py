"""Mirrors forge/components/code_executor/code_executor.py at classic: shell is OFF by default
(execute_local_commands False, :57) and governed by its own allowlist (empty by default, :59-61);
AutoGPT's own refusal raises OperationNotAllowedError (:273)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Literal

from standin_support import run_shell

from forge.command import Command, command
from forge.utils.exceptions import OperationNotAllowedError


@dataclass
class CodeExecutorConfiguration:  # pydantic BaseModel in the real one (:56)
    execute_local_commands: bool = False
    shell_command_control: Literal["allowlist", "denylist"] = "allowlist"
    shell_allowlist: list[str] = field(default_factory=list)
    shell_denylist: list[str] = field(default_factory=list)
    docker_container_name: str = "agent_sandbox"


class CodeExecutorComponent:
    config_class = CodeExecutorConfiguration

    def __init__(self, workspace, config: CodeExecutorConfiguration | None = None) -> None:
        self.workspace = workspace
        self.config = config or CodeExecutorConfiguration()

    def get_commands(self) -> Iterator[Command]:  # :110
        if self.config.execute_local_commands:
            yield self.execute_shell

    def validate_command(self, command_line: str) -> tuple[bool, bool]:  # :224
        if not command_line:
            return False, False
        command_name = command_line.split()[0]
        if self.config.shell_command_control == "allowlist":
            return command_name in self.config.shell_allowlist, False
        return command_name not in self.config.shell_denylist, False

    @command(["execute_shell"], "Execute a Shell Command, non-interactive commands only", {"command_line": {}})
    def execute_shell(self, command_line: str) -> str:  # :261
        allow_execute, _ = self.validate_command(command_line)
        if not allow_execute:
            raise OperationNotAllowedError("This shell command is not allowed.")
        return run_shell(command_line, cwd=str(self.workspace.root))
