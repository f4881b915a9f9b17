"""Mirrors autogpt/config/config.py at v0.5.0: the app config, known to the agent as legacy_config."""

import os


class Config:
    def __init__(self) -> None:
        self.workspace_backend = "local"
        self.continuous_mode = False
        self.continuous_limit = 0
        self.noninteractive_mode = False
        self.execute_local_commands = os.getenv("EXECUTE_LOCAL_COMMANDS", "False") == "True"
        self.restrict_to_workspace = os.getenv("RESTRICT_TO_WORKSPACE", "True") == "True"
        self.shell_command_control = "denylist"
        self.shell_denylist = ["sudo", "su"]
        self.shell_allowlist = []
        self.plugins = []
