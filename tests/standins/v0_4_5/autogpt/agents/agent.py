"""Mirrors autogpt/agents/agent.py at v0.4.5: the loop lives in Agent.start_interaction_loop (agent.py:89)
and calls the module global execute_command (agent.py:274, defined at :365)."""

from __future__ import annotations

from pathlib import Path

from standin_support import log_result, next_reply

from autogpt.workspace import Workspace


class Agent:
    def __init__(self, ai_name, memory, next_action_count, command_registry, ai_config, system_prompt,
                 triggering_prompt, workspace_directory: str | Path, config):  # fmt: skip  (agent.py:62)
        self.ai_name = ai_name
        self.memory = memory
        self.next_action_count = next_action_count
        self.command_registry = command_registry
        self.config = config
        self.ai_config = ai_config
        self.system_prompt = system_prompt
        self.triggering_prompt = triggering_prompt
        self.workspace = Workspace(workspace_directory, config.restrict_to_workspace)
        self.history = []

    def start_interaction_loop(self):
        self.cycle_count = 0
        while True:
            self.cycle_count += 1
            if (self.config.continuous_mode and self.config.continuous_limit > 0
                    and self.cycle_count > self.config.continuous_limit):  # fmt: skip
                break
            reply = next_reply()  # stands for chat_with_ai + extract_json_from_response
            if reply is None:
                break
            command_name, arguments = extract_command({"command": {"name": reply[0], "args": reply[1]}}, None, self.config)
            for plugin in self.config.plugins:
                if not plugin.can_handle_pre_command():
                    continue
                command_name, arguments = plugin.pre_command(command_name, arguments)
            command_result = execute_command(
                command_name=command_name,
                arguments=arguments,
                agent=self,
            )  # agent.py:274
            result = f"Command {command_name} returned: " f"{command_result}"
            self.history.append(("system", result, "action_result"))
            log_result(command_name, arguments, result)


def extract_command(assistant_reply_json: dict, assistant_reply, config):  # agent.py:310
    command = assistant_reply_json["command"]
    return command["name"], command.get("args", {})


def execute_command(
    command_name: str,
    arguments: dict[str, str],
    agent: Agent,
):  # agent.py:365
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
