"""Mirrors autogpt/commands/system.py at v0.5.0: finish raises AgentTerminated (not SystemExit)."""

from __future__ import annotations

from autogpt.agents.agent import Agent
from autogpt.agents.utils.exceptions import AgentTerminated
from autogpt.command_decorator import command


@command("finish", "Use this to shut down once you have completed your task.",
         {"reason": {"type": "string", "required": True}})  # fmt: skip
def finish(reason: str, agent: Agent) -> None:
    raise AgentTerminated(reason)
