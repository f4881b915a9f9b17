"""Mirrors autogpt/agents/base.py at v0.5.0: async propose_action() asks the model (base.py:233/251)."""

from __future__ import annotations

from typing import Any

from standin_support import next_reply

CommandName = str
CommandArgs = dict[str, str]
AgentThoughts = dict[str, Any]


class BaseAgent:
    def __init__(self, settings: Any, llm_provider: Any, command_registry: Any, legacy_config: Any) -> None:  # base.py:169
        self.state = settings
        self.llm_provider = llm_provider
        self.command_registry = command_registry
        self.legacy_config = legacy_config  # base.py:183

    async def propose_action(self) -> tuple[CommandName | None, CommandArgs | None, AgentThoughts]:
        reply = next_reply()  # stands for `await self.llm_provider.create_chat_completion(...)`
        if reply is None:
            return None, None, {}
        return reply[0], reply[1], {}
