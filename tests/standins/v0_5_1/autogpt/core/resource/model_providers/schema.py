"""Mirrors AssistantFunctionCall in autogpt/core/resource/model_providers/schema.py at ~v0.5.1."""

from dataclasses import dataclass, field
from typing import Any


@dataclass
class AssistantFunctionCall:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.arguments.items())})"
