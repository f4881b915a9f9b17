"""Mirrors autogpt/commands/command.py at v0.3.0: Command, CommandRegistry (a plain dict), @command."""

import functools
import importlib
import inspect
from typing import Any, Callable, Optional

AUTO_GPT_COMMAND_IDENTIFIER = "auto_gpt_command"


class Command:
    def __init__(self, name, description, method, signature="", enabled=True, disabled_reason=None):
        self.name = name
        self.description = description
        self.method = method
        self.signature = signature if signature else str(inspect.signature(self.method))
        self.enabled = enabled
        self.disabled_reason = disabled_reason

    def __call__(self, *args, **kwargs) -> Any:
        if not self.enabled:
            return f"Command '{self.name}' is disabled: {self.disabled_reason}"
        return self.method(*args, **kwargs)


class CommandRegistry:
    def __init__(self):
        self.commands = {}

    def register(self, cmd: Command) -> None:
        self.commands[cmd.name] = cmd

    def import_commands(self, module_name: str) -> None:
        # registers the Command object carried by the decorated function, i.e. the RAW function:
        # replacing the module attribute afterwards changes nothing (research note, first table)
        module = importlib.import_module(module_name)
        for attr_name in dir(module):
            attr = getattr(module, attr_name)
            if hasattr(attr, AUTO_GPT_COMMAND_IDENTIFIER) and getattr(attr, AUTO_GPT_COMMAND_IDENTIFIER):
                self.register(attr.command)


def command(name: str, description: str, signature: str = "", enabled: bool = True,
            disabled_reason: Optional[str] = None) -> Callable[..., Any]:  # fmt: skip
    def decorator(func):
        cmd = Command(name=name, description=description, method=func, signature=signature,
                      enabled=enabled, disabled_reason=disabled_reason)  # fmt: skip

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            return func(*args, **kwargs)

        wrapper.command = cmd
        setattr(wrapper, AUTO_GPT_COMMAND_IDENTIFIER, True)
        return wrapper

    return decorator
