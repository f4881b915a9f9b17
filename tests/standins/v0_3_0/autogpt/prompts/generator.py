"""Mirrors autogpt/prompts/generator.py at v0.3.0: plugin commands live here as dicts."""


class PromptGenerator:
    def __init__(self) -> None:
        self.commands = []

    def add_command(self, command_label, command_name, args=None, function=None) -> None:
        self.commands.append({"label": command_label, "name": command_name, "args": args or {}, "function": function})
