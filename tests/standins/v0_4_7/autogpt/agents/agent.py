"""Mirrors autogpt/agents/agent.py at v0.4.7: Agent.execute (agent.py:122) calls the module global
execute_command (agent.py:146, defined at :273). The plugin pre_command bug is kept: the rewritten
arguments are ignored, only a renamed command takes effect (agent.py:145)."""

from __future__ import annotations

from typing import Any, Optional

from standin_support import log_result

from autogpt.workspace import Workspace

from .base import AgentThoughts, BaseAgent, CommandArgs, CommandName


class Agent(BaseAgent):
    def __init__(self, ai_config, command_registry, memory, triggering_prompt: str, config,
                 cycle_budget: Optional[int] = None):  # fmt: skip  (agent.py:34)
        super().__init__(ai_config=ai_config, command_registry=command_registry, config=config,
                         default_cycle_instruction=triggering_prompt, cycle_budget=cycle_budget)  # fmt: skip
        self.memory = memory
        self.workspace = Workspace(config.workspace_path, config.restrict_to_workspace)  # agent.py:53

    def execute(self, command_name: str | None, command_args: dict[str, str] | None,
                user_input: str | None) -> str:  # fmt: skip  (agent.py:122)
        if command_name is not None and command_name.lower().startswith("error"):
            result = f"Could not execute command: {command_name}{command_args}"
        elif command_name == "human_feedback":
            result = f"Human feedback: {user_input}"
        else:
            for plugin in self.config.plugins:
                if not plugin.can_handle_pre_command():
                    continue
                command_name, arguments = plugin.pre_command(command_name, command_args)
            command_result = execute_command(
                command_name=command_name,
                arguments=command_args,
                agent=self,
            )  # agent.py:146
            result = f"Command {command_name} returned: " f"{command_result}"
        if result is None:
            self.history.append(("system", "Unable to execute command", "action_result"))
        else:
            self.history.append(("system", result, "action_result"))
        log_result(command_name, command_args, result)
        return result

    def parse_and_process_response(self, llm_response: Any) -> tuple[CommandName | None, CommandArgs | None, AgentThoughts]:
        if llm_response is None:  # the stand-in's script is used up
            return None, None, {}
        command_name, arguments = extract_command({"command": {"name": llm_response[0], "args": llm_response[1]}})
        return command_name, arguments, {}


def extract_command(assistant_reply_json: dict, *args: Any) -> tuple[str, dict[str, str]]:  # agent.py:216
    command = assistant_reply_json["command"]
    return command["name"], command.get("args", {})


def execute_command(
    command_name: str,
    arguments: dict[str, str],
    agent: Agent,
) -> Any:  # agent.py:273
    """Execute the command and return the result"""
    try:
        # Execute a native command with the same name or alias, if it exists
        if command := agent.command_registry.get_command(command_name):
            return command(**arguments, agent=agent)

        # Handle non-native commands (e.g. from plugins)
        for command in agent.ai_config.prompt_generator.commands:
            if command_name == command.label.lower() or command_name == command.name.lower():
                return command.function(**arguments)

        raise RuntimeError(
            f"Cannot execute '{command_name}': unknown command."
            " Do not try to use this command again."
        )
    except Exception as e:
        return f"Error: {str(e)}"
