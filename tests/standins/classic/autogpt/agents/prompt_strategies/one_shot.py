"""Mirrors OneShotAgentActionProposal in autogpt/agents/prompt_strategies/one_shot.py at classic."""

from dataclasses import dataclass, field
from typing import Any

from forge.llm.providers import AssistantFunctionCall


@dataclass
class OneShotAgentActionProposal:
    use_tool: AssistantFunctionCall
    thoughts: dict[str, Any] = field(default_factory=dict)
