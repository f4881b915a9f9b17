"""Mirrors autogpt/config/config.py at v0.2.2: a singleton read from the environment at import time."""

import os


class Config:
    _instance = None

    def __new__(cls):  # autogpt/config/singleton.py: one Config per process
        if cls._instance is None:
            cls._instance = super().__new__(cls)
            cls._instance.continuous_mode = False
            cls._instance.continuous_limit = 0
            cls._instance.execute_local_commands = os.getenv("EXECUTE_LOCAL_COMMANDS", "False") == "True"
            cls._instance.restrict_to_workspace = os.getenv("RESTRICT_TO_WORKSPACE", "True") == "True"
            cls._instance.allow_downloads = False
        return cls._instance
