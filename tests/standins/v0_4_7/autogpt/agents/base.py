"""Mirrors autogpt/agents/base.py at v0.4.7: BaseAgent.think() calls the module-level
create_chat_completion (base.py:112) and hands the reply to parse_and_process_response."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Any, Optional

from standin_support import next_reply

CommandName = str
CommandArgs = dict[str, str]
AgentThoughts = dict[str, Any]


def create_chat_completion(prompt: Any = None, config: Any = None, **kwargs: Any) -> Any:
    """The language model. Here: the next scripted reply (standin_support)."""
    return next_reply()


class BaseAgent(metaclass=ABCMeta):
    def __init__(self, ai_config, command_registry, config, default_cycle_instruction: str,
                 cycle_budget: Optional[int] = 1):  # fmt: skip  (base.py:29)
        self.ai_config = ai_config
        self.command_registry = command_registry
        self.config = config
        self.cycle_budget = cycle_budget
        self.cycles_remaining = cycle_budget
        self.cycle_count = 0
        self.history: list[tuple[str, str, str]] = []

    def think(self) -> tuple[CommandName | None, CommandArgs | None, AgentThoughts]:  # base.py:94
        raw_response = create_chat_completion(None, self.config)  # base.py:112
        self.cycle_count += 1
        return self.parse_and_process_response(raw_response)

    @abstractmethod
    def execute(self, command_name: str | None, command_args: dict[str, str] | None,
                user_input: str | None) -> str: ...  # fmt: skip

    @abstractmethod
    def parse_and_process_response(self, llm_response: Any) -> tuple[CommandName | None, CommandArgs | None, AgentThoughts]: ...
