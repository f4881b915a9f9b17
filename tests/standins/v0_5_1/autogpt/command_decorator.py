"""Mirrors autogpt/command_decorator.py at ~v0.5.1: @command(names, description, parameters) turns a
component method into a Command (names default to the method name)."""

from typing import Callable, Optional

from autogpt.models.command import Command


def command(names: list[str] = [], description: Optional[str] = None, parameters: dict = {}) -> Callable:
    def decorator(func: Callable) -> Command:
        return Command(names=names or [func.__name__], description=description or func.__doc__ or "",
                       method=func, parameters=list(parameters))  # fmt: skip

    return decorator
