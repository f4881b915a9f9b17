from .file_manager import FileManagerComponent

__all__ = ["FileManagerComponent"]
