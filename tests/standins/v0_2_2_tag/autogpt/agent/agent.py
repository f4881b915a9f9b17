"""Mirrors autogpt/agent/agent.py at v0.2.2: the loop calls the name it imported from autogpt.app."""

from standin_support import log_result, next_reply

from autogpt.app import execute_command, get_command  # agent.py:3
from autogpt.config import Config


class Agent:
    def __init__(self, ai_name, memory, full_message_history, next_action_count, system_prompt, triggering_prompt):
        self.ai_name = ai_name
        self.memory = memory
        self.full_message_history = full_message_history
        self.next_action_count = next_action_count
        self.system_prompt = system_prompt
        self.triggering_prompt = triggering_prompt

    def start_interaction_loop(self):  # agent.py:52
        cfg = Config()
        loop_count = 0
        while True:
            loop_count += 1
            if cfg.continuous_mode and cfg.continuous_limit > 0 and loop_count > cfg.continuous_limit:
                break
            reply = next_reply()  # stands for chat_with_ai + fix_json + get_command (agent.py:91)
            if reply is None:
                break
            command_name, arguments = get_command({"command": {"name": reply[0], "args": reply[1]}})
            # agent.py:170-174
            result = f"Command {command_name} returned: " f"{execute_command(command_name, arguments)}"
            self.full_message_history.append({"role": "system", "content": result})
            log_result(command_name, arguments, result)
