"""Mirrors autogpt/commands/user_interaction.py at v0.5.0: ask_user is async and reads the console."""

from __future__ import annotations

from autogpt.agents.agent import Agent
from autogpt.command_decorator import command


@command("ask_user", "Ask the user for input", {"question": {"type": "string", "required": True}},
         enabled=lambda config: not config.noninteractive_mode)  # fmt: skip
async def ask_user(question: str, agent: Agent) -> str:
    print(f"\nQ: {question}")
    return "The user's answer: 'the stand-in has no user'"
