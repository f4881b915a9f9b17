from .base import FileStorage

__all__ = ["FileStorage"]
