"""Mirrors autogpt/config/config.py at v0.4.5: a Config object passed to the agent (agent.config)."""

import os


class Config:
    def __init__(self) -> None:
        self.workspace_path = None
        self.continuous_mode = False
        self.continuous_limit = 0
        self.execute_local_commands = os.getenv("EXECUTE_LOCAL_COMMANDS", "False") == "True"
        self.restrict_to_workspace = os.getenv("RESTRICT_TO_WORKSPACE", "True") == "True"
        self.shell_command_control = "denylist"
        self.shell_denylist = ["sudo", "su"]
        self.shell_allowlist = []
        self.plugins = []
