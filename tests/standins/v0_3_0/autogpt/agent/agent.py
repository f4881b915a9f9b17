"""Mirrors autogpt/agent/agent.py at v0.3.0: the agent resolves path-like arguments against its
workspace BEFORE dispatching, then calls the execute_command it imported by name, positionally."""

from standin_support import log_result, next_reply

from autogpt.app import execute_command, get_command  # agent.py:3
from autogpt.config import Config
from autogpt.workspace import Workspace


class Agent:
    def __init__(self, ai_name, memory, full_message_history, next_action_count, command_registry, config,
                 system_prompt, triggering_prompt, workspace_directory):  # fmt: skip
        cfg = Config()
        self.ai_name = ai_name
        self.memory = memory
        self.full_message_history = full_message_history
        self.next_action_count = next_action_count
        self.command_registry = command_registry
        self.config = config
        self.system_prompt = system_prompt
        self.triggering_prompt = triggering_prompt
        self.workspace = Workspace(workspace_directory, cfg.restrict_to_workspace)

    def start_interaction_loop(self):
        cfg = Config()
        loop_count = 0
        while True:
            loop_count += 1
            if cfg.continuous_mode and cfg.continuous_limit > 0 and loop_count > cfg.continuous_limit:
                break
            reply = next_reply()  # stands for chat_with_ai + fix_json_using_multiple_techniques
            if reply is None:
                break
            try:
                command_name, arguments = get_command({"command": {"name": reply[0], "args": reply[1]}})
                arguments = self._resolve_pathlike_command_args(arguments)  # agent.py:121
            except Exception as e:  # agent.py:123: only logged; the raw arguments go on
                print("Error: \n", str(e))
            for plugin in cfg.plugins:
                if not plugin.can_handle_pre_command():
                    continue
                command_name, arguments = plugin.pre_command(command_name, arguments)
            command_result = execute_command(
                self.command_registry,
                command_name,
                arguments,
                self.config.prompt_generator,
            )  # agent.py:229
            result = f"Command {command_name} returned: " f"{command_result}"
            self.full_message_history.append({"role": "system", "content": result})
            log_result(command_name, arguments, result)

    def _resolve_pathlike_command_args(self, command_args):  # agent.py:267
        if "directory" in command_args and command_args["directory"] in {"", "/"}:
            command_args["directory"] = str(self.workspace.root)
        else:
            for pathlike in ["filename", "directory", "clone_path"]:
                if pathlike in command_args:
                    command_args[pathlike] = str(self.workspace.get_path(command_args[pathlike]))
        return command_args
