"""Mirrors autogpt/command_decorator.py at v0.4.5."""

import functools
from typing import Any, Callable, Optional

from autogpt.models.command import Command

AUTO_GPT_COMMAND_IDENTIFIER = "auto_gpt_command"


def command(name: str, description: str, parameters: dict, enabled=True, disabled_reason: Optional[str] = None,
            aliases: list[str] = []) -> Callable[..., Any]:  # fmt: skip
    def decorator(func):
        cmd = Command(name=name, description=description, method=func, parameters=list(parameters),
                      enabled=enabled, disabled_reason=disabled_reason, aliases=aliases)  # fmt: skip

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            return func(*args, **kwargs)

        wrapper.command = cmd
        setattr(wrapper, AUTO_GPT_COMMAND_IDENTIFIER, True)
        return wrapper

    return decorator
