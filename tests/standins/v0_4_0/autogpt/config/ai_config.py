"""Mirrors autogpt/config/ai_config.py at v0.4.0: the agent's `config` carries the prompt generator."""


class AIConfig:
    def __init__(self, ai_name: str = "Stand-in") -> None:
        self.ai_name = ai_name
        self.prompt_generator = None
        self.command_registry = None
