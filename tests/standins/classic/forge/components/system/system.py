"""Mirrors forge/components/system/system.py at classic: finish raises AgentFinished (:79)."""

from typing import Iterator

from forge.command import Command, command
from forge.utils.exceptions import AgentFinished


class SystemComponent:
    def get_commands(self) -> Iterator[Command]:
        yield self.finish

    @command(names=["finish"], description="Use this to shut down once you have completed your task.",
             parameters={"reason": {}})  # fmt: skip
    def finish(self, reason: str):
        raise AgentFinished(reason)
