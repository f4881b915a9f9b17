"""Mirrors autogpt/agent/agent_manager.py at v0.4.4 (only its place in the import graph matters)."""


class AgentManager:
    pass
