"""Mirrors autogpt/agent/agent_manager.py at v0.2.2 (only its place in the import graph matters)."""


class AgentManager:
    pass
