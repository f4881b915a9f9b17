from .git_operations import GitOperationsComponent

__all__ = ["GitOperationsComponent"]
