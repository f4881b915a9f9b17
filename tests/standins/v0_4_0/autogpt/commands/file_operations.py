"""Mirrors autogpt/commands/file_operations.py at v0.4.0: paths arrive already resolved by the agent
(Agent._resolve_pathlike_command_args) and are opened as given."""

import os

from autogpt.commands.command import command
from autogpt.config import Config


@command("read_file", "Read file", '"filename": "<filename>"')  # file_operations.py:153
def read_file(filename: str, config: Config) -> str:
    try:
        with open(filename, "r", encoding="utf-8") as f:
            return f.read()
    except Exception as e:
        return f"Error: {str(e)}"


@command("write_to_file", "Write to file", '"filename": "<filename>", "text": "<text>"')  # :202
def write_to_file(filename: str, text: str, config: Config) -> str:
    try:
        directory = os.path.dirname(filename)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(filename, "w", encoding="utf-8") as f:
            f.write(text)
        return "File written to successfully."
    except Exception as e:
        return f"Error: {str(e)}"
