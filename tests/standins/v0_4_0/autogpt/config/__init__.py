from autogpt.config.ai_config import AIConfig
from autogpt.config.config import Config

__all__ = ["AIConfig", "Config"]
