from .context import ContextComponent

__all__ = ["ContextComponent"]
