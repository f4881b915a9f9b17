# mirrors autogpt/agent/__init__.py at v0.2.2 (importing the package imports agent.py, hence app.py)
from autogpt.agent.agent import Agent
from autogpt.agent.agent_manager import AgentManager

__all__ = ["Agent", "AgentManager"]
