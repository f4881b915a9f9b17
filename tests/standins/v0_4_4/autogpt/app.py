"""Mirrors autogpt/app.py at v0.4.4 (lines 81-114 for execute_command). It imports the agent module
itself, so (unlike v0.3-v0.4.0) it can be imported first."""

from __future__ import annotations

from autogpt.agent.agent import Agent  # app.py:5
from autogpt.config import Config


def extract_command(assistant_reply_json: dict, assistant_reply, config: Config):
    command = assistant_reply_json["command"]
    return command["name"], command.get("args", {})


def execute_command(
    command_name: str,
    arguments: dict[str, str],
    agent: Agent,
):  # app.py:81
    """Execute the command and return the result"""
    try:
        # Execute a native command with the same name or alias, if it exists
        if command := agent.command_registry.get_command(command_name):
            return command(**arguments, agent=agent)

        # Handle non-native commands (e.g. from plugins)
        for command in agent.ai_config.prompt_generator.commands:
            if command_name == command["label"].lower() or command_name == command["name"].lower():
                return command["function"](**arguments)

        raise RuntimeError(
            f"Cannot execute '{command_name}': unknown command."
            " Do not try to use this command again."
        )
    except Exception as e:
        return f"Error: {str(e)}"
