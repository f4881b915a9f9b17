"""Mirrors OneShotAgentActionProposal in autogpt/agents/prompt_strategies/one_shot.py at ~v0.5.1."""

from dataclasses import dataclass, field
from typing import Any

from autogpt.core.resource.model_providers import AssistantFunctionCall


@dataclass
class OneShotAgentActionProposal:
    use_tool: AssistantFunctionCall
    thoughts: dict[str, Any] = field(default_factory=dict)
