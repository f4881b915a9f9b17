"""Mirrors autogpt/app.py at v0.4.0 (lines 87-128 for execute_command).

Importing this module before autogpt.agent.agent fails with a circular import, as in the real one.
"""

from autogpt.agent.agent_manager import AgentManager  # app.py:5
from autogpt.commands.command import CommandRegistry, command
from autogpt.config import Config
from autogpt.prompts.generator import PromptGenerator


def get_command(response_json: dict):
    command = response_json["command"]
    return command["name"], command.get("args", {})


def map_command_synonyms(command_name: str):
    synonyms = [("write_file", "write_to_file"), ("create_file", "write_to_file"), ("search", "google")]
    for seen_command, actual_command_name in synonyms:
        if command_name == seen_command:
            return actual_command_name
    return command_name


def execute_command(
    command_registry: CommandRegistry,
    command_name: str,
    arguments,
    prompt: PromptGenerator,
    config: Config,
):  # app.py:87
    """Execute the command and return the result"""
    try:
        cmd = command_registry.commands.get(command_name)

        # If the command is found, call it with the provided arguments
        if cmd:
            return cmd(**arguments, config=config)

        # TODO: Remove commands below after they are moved to the command registry.
        command_name = map_command_synonyms(command_name.lower())

        for command in prompt.commands:  # plugin commands (app.py:116)
            if command_name == command["label"].lower() or command_name == command["name"].lower():
                return command["function"](**arguments)
        return (
            f"Unknown command '{command_name}'. Please refer to the 'COMMANDS'"
            " list for available commands and only respond in the specified JSON"
            " format."
        )
    except Exception as e:
        return f"Error: {str(e)}"
