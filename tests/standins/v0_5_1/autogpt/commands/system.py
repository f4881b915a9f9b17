"""Mirrors autogpt/commands/system.py at ~v0.5.1: finish raises AgentFinished (system.py:55)."""

from typing import Iterator

from autogpt.command_decorator import command
from autogpt.models.command import Command
from autogpt.utils.exceptions import AgentFinished


class SystemComponent:
    def get_commands(self) -> Iterator[Command]:
        yield self.finish

    @command(names=["finish"], description="Use this to shut down once you have completed your task.",
             parameters={"reason": {}})  # fmt: skip
    def finish(self, reason: str):
        raise AgentFinished(reason)
