"""Mirrors autogpt/commands/file_operations.py at v0.5.0: write_file is async and resolves through
agent.workspace (raw path in the dispatcher)."""

from __future__ import annotations

from autogpt.agents.agent import Agent
from autogpt.command_decorator import command


@command("read_file", "Read an existing file", {"filename": {"type": "string", "required": True}})
def read_file(filename: str, agent: Agent) -> str:
    with agent.workspace.open_file(filename) as f:
        return f.read()


@command("write_file", "Write a file, creating it if necessary.",
         {"filename": {"type": "string", "required": True}, "contents": {"type": "string", "required": True}})  # fmt: skip
async def write_to_file(filename: str, contents: str, agent: Agent) -> str:
    await agent.workspace.write_file(filename, contents)
    return f"File {filename} has been written successfully."
