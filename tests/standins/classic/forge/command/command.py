"""Mirrors forge/command/command.py at classic: a Command wraps a component method; __get__ builds a
fresh bound Command on every attribute access (command.py:78), so replacing it governs nothing."""

from __future__ import annotations

import inspect
from typing import Any, Callable


class Command:
    def __init__(self, names: list[str], description: str, method: Callable[..., Any], parameters: list) -> None:
        self.names = names
        self.description = description
        self.method = method
        self.parameters = parameters

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.method)

    def __call__(self, *args, **kwargs) -> Any:
        return self.method(*args, **kwargs)

    def __get__(self, instance, owner):
        if instance is None:
            return self
        return Command(self.names, self.description, self.method.__get__(instance, owner), self.parameters)
