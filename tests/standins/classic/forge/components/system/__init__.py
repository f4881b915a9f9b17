from .system import SystemComponent

__all__ = ["SystemComponent"]
