"""Mirrors autogpt/models/command_registry.py at v0.5.0: get_command resolves names, then aliases."""

from __future__ import annotations

import importlib

from autogpt.models.command import Command


class CommandRegistry:
    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}
        self.commands_aliases: dict[str, Command] = {}

    def register(self, cmd: Command) -> None:
        self.commands[cmd.name] = cmd
        for alias in cmd.aliases:
            self.commands_aliases[alias] = cmd

    def get_command(self, name: str) -> Command | None:  # command_registry.py:89
        if name in self.commands:
            return self.commands[name]
        if name in self.commands_aliases:
            return self.commands_aliases[name]
        return None

    def import_commands(self, module_name: str) -> None:
        module = importlib.import_module(module_name)
        for attr_name in dir(module):
            attr = getattr(module, attr_name)
            if getattr(attr, "auto_gpt_command", False):
                self.register(attr.command)
