from .agent import Agent
from .base import AgentThoughts, BaseAgent, CommandArgs, CommandName

__all__ = ["BaseAgent", "Agent", "CommandName", "CommandArgs", "AgentThoughts"]
