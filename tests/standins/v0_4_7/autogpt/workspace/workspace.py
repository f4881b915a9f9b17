"""Mirrors autogpt/workspace/workspace.py at v0.4.7 (get_path / _sanitize_path)."""

from __future__ import annotations

from pathlib import Path


class Workspace:
    NULL_BYTES = ["\0", "\000", "\x00", r"\z", "\u0000", "%00"]

    def __init__(self, workspace_root: str | Path, restrict_to_workspace: bool):
        self._root = self._sanitize_path(workspace_root)
        self._restrict_to_workspace = restrict_to_workspace

    @property
    def root(self) -> Path:
        return self._root

    @classmethod
    def make_workspace(cls, workspace_directory: str | Path, *args, **kwargs) -> Path:
        workspace_directory = cls._sanitize_path(workspace_directory)
        workspace_directory.mkdir(exist_ok=True, parents=True)
        return workspace_directory

    def get_path(self, relative_path: str | Path) -> Path:
        return self._sanitize_path(relative_path, root=self.root, restrict_to_root=self._restrict_to_workspace)

    @staticmethod
    def _sanitize_path(relative_path, root=None, restrict_to_root=True) -> Path:
        for null_byte in Workspace.NULL_BYTES:
            if null_byte in str(relative_path) or null_byte in str(root):
                raise ValueError("embedded null byte")
        if root is None:
            return Path(relative_path).resolve()
        root, relative_path = Path(root).resolve(), Path(relative_path)
        if relative_path.is_absolute():
            raise ValueError(f"Attempted to access absolute path '{relative_path}' in workspace '{root}'.")
        full_path = root.joinpath(relative_path).resolve()
        if restrict_to_root and not full_path.is_relative_to(root):
            raise ValueError(f"Attempted to access path '{full_path}' outside of workspace '{root}'.")
        return full_path
