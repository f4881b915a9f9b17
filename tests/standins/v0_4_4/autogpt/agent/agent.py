"""Mirrors autogpt/agent/agent.py at v0.4.4: the dispatcher is imported inside start_interaction_loop
(agent.py:88, "Avoid circular imports"), path-like arguments are resolved before it is called."""

from __future__ import annotations

from pathlib import Path

from standin_support import log_result, next_reply

from autogpt.workspace import Workspace


class Agent:
    def __init__(self, ai_name, memory, next_action_count, command_registry, ai_config, system_prompt,
                 triggering_prompt, workspace_directory: str | Path, config):  # fmt: skip
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
        # Avoid circular imports
        from autogpt.app import execute_command, extract_command  # agent.py:88

        self.cycle_count = 0
        while True:
            self.cycle_count += 1
            if (self.config.continuous_mode and self.config.continuous_limit > 0
                    and self.cycle_count > self.config.continuous_limit):  # fmt: skip
                break
            reply = next_reply()  # stands for chat_with_ai + extract_json_from_response
            if reply is None:
                break
            try:
                command_name, arguments = extract_command(
                    {"command": {"name": reply[0], "args": reply[1]}}, None, self.config
                )
                arguments = self._resolve_pathlike_command_args(arguments)  # agent.py:170
            except Exception as e:  # only logged; the raw arguments go on
                print("Error: \n", str(e))
            for plugin in self.config.plugins:
                if not plugin.can_handle_pre_command():
                    continue
                command_name, arguments = plugin.pre_command(command_name, arguments)
            command_result = execute_command(
                command_name=command_name,
                arguments=arguments,
                agent=self,
            )  # agent.py:276
            result = f"Command {command_name} returned: " f"{command_result}"
            self.history.append(("system", result, "action_result"))
            log_result(command_name, arguments, result)

    def _resolve_pathlike_command_args(self, command_args):  # agent.py:311
        if "directory" in command_args and command_args["directory"] in {"", "/"}:
            command_args["directory"] = str(self.workspace.root)
        else:
            for pathlike in ["filename", "directory", "clone_path"]:
                if pathlike in command_args:
                    command_args[pathlike] = str(self.workspace.get_path(command_args[pathlike]))
        return command_args
