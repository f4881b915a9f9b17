# mirrors autogpt/agent/__init__.py at v0.3.0
from autogpt.agent.agent import Agent
from autogpt.agent.agent_manager import AgentManager

__all__ = ["Agent", "AgentManager"]
