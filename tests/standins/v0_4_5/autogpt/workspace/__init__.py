from autogpt.workspace.workspace import Workspace

__all__ = ["Workspace"]
