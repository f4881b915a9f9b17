"""Stands for autogpt/config/config.py at ~v0.5.1 (the agent's legacy_config)."""

import os


class Config:
    def __init__(self) -> None:
        self.continuous_mode = False
        self.continuous_limit = 0
        self.execute_local_commands = os.getenv("EXECUTE_LOCAL_COMMANDS", "False") == "True"
        self.restrict_to_workspace = os.getenv("RESTRICT_TO_WORKSPACE", "True") == "True"
        self.shell_denylist = ["sudo", "su"]
        self.disabled_commands: list[str] = []
