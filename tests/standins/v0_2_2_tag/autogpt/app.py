"""Mirrors autogpt/app.py at v0.2.2: execute_command(command_name, arguments) is an if-chain; no registry.

Importing this module first fails with a circular import, as in the real one: app.py imports
autogpt.agent.agent_manager -> autogpt/agent/__init__ -> agent.py -> `from autogpt.app import execute_command`.
"""

from typing import NoReturn

from autogpt.agent.agent_manager import AgentManager  # app.py:5
from autogpt.commands.execute_code import execute_shell
from autogpt.commands.file_operations import read_file, write_to_file
from autogpt.config import Config

CFG = Config()
AGENT_MANAGER = AgentManager()


def get_command(response_json: dict):  # app.py:55
    command = response_json["command"]
    return command["name"], command.get("args", {})


def map_command_synonyms(command_name: str):  # app.py:96
    synonyms = [("write_file", "write_to_file"), ("create_file", "write_to_file"), ("search", "google")]
    for seen_command, actual_command_name in synonyms:
        if command_name == seen_command:
            return actual_command_name
    return command_name


def execute_command(command_name: str, arguments):  # app.py:111
    """Execute the command and return the result"""
    try:
        command_name = map_command_synonyms(command_name.lower())
        if command_name == "read_file":  # app.py:165: the argument key is "file", not "filename"
            return read_file(arguments["file"])
        elif command_name == "write_to_file":
            return write_to_file(arguments["file"], arguments["text"])
        elif command_name == "execute_shell":  # app.py:192
            if CFG.execute_local_commands:
                return execute_shell(arguments["command_line"])
            else:
                return (
                    "You are not allowed to run local shell commands. To execute"
                    " shell commands, EXECUTE_LOCAL_COMMANDS must be set to 'True' "
                    "in your config. Do not attempt to bypass the restriction."
                )
        elif command_name == "do_nothing":
            return "No action performed."
        elif command_name == "task_complete":  # app.py:218
            shutdown()
        else:
            return (
                f"Unknown command '{command_name}'. Please refer to the 'COMMANDS'"
                " list for available commands and only respond in the specified JSON"
                " format."
            )
    except Exception as e:
        return f"Error: {str(e)}"


def shutdown() -> NoReturn:  # app.py:257
    print("Shutting down...")
    quit()
