"""Mirrors AssistantFunctionCall in forge/llm/providers/schema.py (:89) at classic."""

from dataclasses import dataclass, field
from typing import Any


@dataclass
class AssistantFunctionCall:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.arguments.items())})"
