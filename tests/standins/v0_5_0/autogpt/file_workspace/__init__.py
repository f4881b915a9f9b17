"""Mirrors autogpt/file_workspace (local backend) at v0.5.0: agent.workspace.root is the folder."""

from __future__ import annotations

from pathlib import Path


class FileWorkspace:
    def __init__(self, root: str | Path, restrict_to_root: bool = True) -> None:
        self._root = Path(root).resolve()
        self._restrict_to_root = restrict_to_root

    @property
    def root(self) -> Path:
        return self._root

    def initialize(self) -> None:
        self.root.mkdir(exist_ok=True, parents=True)

    def get_path(self, relative_path: str | Path) -> Path:  # file_workspace/base.py: _sanitize_path
        if "\0" in str(relative_path):
            raise ValueError("embedded null byte")
        relative_path = Path(relative_path)
        if relative_path.is_absolute():
            raise ValueError(f"Attempted to access absolute path '{relative_path}' in workspace '{self.root}'.")
        full_path = self.root.joinpath(relative_path).resolve()
        if self._restrict_to_root and not full_path.is_relative_to(self.root):
            raise ValueError(f"Attempted to access path '{full_path}' outside of workspace '{self.root}'.")
        return full_path

    def open_file(self, path: str | Path, mode: str = "r"):
        return open(self.get_path(path), mode)

    async def write_file(self, path: str | Path, content: str | bytes) -> None:
        full = self.get_path(path)
        full.parent.mkdir(parents=True, exist_ok=True)
        with open(full, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
