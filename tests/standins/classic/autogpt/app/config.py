"""Stands for autogpt/app/config.py at classic (AppConfig)."""

import os


class AppConfig:
    def __init__(self) -> None:
        self.continuous_mode = False
        self.continuous_limit = 0
        self.noninteractive_mode = False
        self.restrict_to_workspace = os.getenv("RESTRICT_TO_WORKSPACE", "True") == "True"
        self.disabled_commands: list[str] = []
