"""Mirrors autogpt/commands/file_operations.py at v0.4.5 (write_to_file at :207, aliases at :204)."""

from __future__ import annotations

import os

from autogpt.agents.agent import Agent
from autogpt.command_decorator import command

from .decorators import sanitize_path_arg


@command("read_file", "Read an existing file", {"filename": {"type": "string", "required": True}})
@sanitize_path_arg("filename")
def read_file(filename: str, agent: Agent) -> str:
    try:
        with open(filename, "r", encoding="utf-8") as f:
            return f.read()
    except Exception as e:
        return f"Error: {str(e)}"


@command(
    "write_to_file",
    "Writes to a file",
    {"filename": {"type": "string", "required": True}, "text": {"type": "string", "required": True}},
    aliases=["write_file", "create_file"],
)
@sanitize_path_arg("filename")
def write_to_file(filename: str, text: str, agent: Agent) -> str:
    try:
        directory = os.path.dirname(filename)
        os.makedirs(directory, exist_ok=True)
        with open(filename, "w", encoding="utf-8") as f:
            f.write(text)
        return "File written to successfully."
    except Exception as err:
        return f"Error: {err}"
