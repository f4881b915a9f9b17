"""Mirrors autogpt/models/command.py at v0.4.4: a Command may have aliases."""

from typing import Any, Callable, Optional


class Command:
    def __init__(self, name: str, description: str, method: Callable[..., Any], parameters: list,
                 enabled=True, disabled_reason: Optional[str] = None, aliases: list[str] = []):  # fmt: skip
        self.name = name
        self.description = description
        self.method = method
        self.parameters = parameters
        self.enabled = enabled
        self.disabled_reason = disabled_reason
        self.aliases = aliases

    def __call__(self, *args, **kwargs) -> Any:  # command.py: `enabled` may be a function of the config
        if "agent" in kwargs and callable(self.enabled):
            if not self.enabled(kwargs["agent"].config):
                return f"Command '{self.name}' is disabled: {self.disabled_reason}"
        elif not self.enabled:
            return f"Command '{self.name}' is disabled: {self.disabled_reason}"
        return self.method(*args, **kwargs)
