"""Mirrors autogpt/config/config.py at v0.4.0: the singleton; workspace_path is set by run_auto_gpt."""

import os

from autogpt.config.singleton import Singleton


class Config(metaclass=Singleton):
    def __init__(self) -> None:
        self.workspace_path = None  # config.py:20
        self.continuous_mode = False
        self.continuous_limit = 0
        self.execute_local_commands = os.getenv("EXECUTE_LOCAL_COMMANDS", "False") == "True"  # config.py:70
        self.restrict_to_workspace = os.getenv("RESTRICT_TO_WORKSPACE", "True") == "True"
        self.plugins = []
