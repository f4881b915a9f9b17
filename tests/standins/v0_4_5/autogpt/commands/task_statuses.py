"""Mirrors autogpt/commands/task_statuses.py at v0.4.5: goals_accomplished quits the program (SystemExit)."""

from __future__ import annotations

from typing import NoReturn

from autogpt.agents.agent import Agent
from autogpt.command_decorator import command


@command("goals_accomplished", "Goals are accomplished and there is nothing left to do",
         {"reason": {"type": "string", "required": True}})  # fmt: skip
def task_complete(reason: str, agent: Agent) -> NoReturn:
    print("Shutting down...\n", reason)
    quit()
