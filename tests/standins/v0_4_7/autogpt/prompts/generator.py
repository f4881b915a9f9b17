"""Mirrors autogpt/prompts/generator.py at v0.4.7: plugin commands are Command objects with
.label, .name, .function (no longer dicts)."""

from dataclasses import dataclass, field
from typing import Any, Callable, Optional


@dataclass
class Command:
    label: str
    name: str
    params: dict = field(default_factory=dict)
    function: Optional[Callable[..., Any]] = None


class PromptGenerator:
    def __init__(self) -> None:
        self.commands: list[Command] = []

    def add_command(self, command_label, command_name, params=None, function=None) -> None:
        self.commands.append(Command(command_label, command_name, params or {}, function))
