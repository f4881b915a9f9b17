from .command import Command
from .decorator import command

__all__ = ["Command", "command"]
