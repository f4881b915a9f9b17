"""Mirrors autogpt/file_storage (local backend) at ~v0.5.1: root, get_path/_sanitize_path (absolute paths
inside the root are allowed), clone_with_subroot."""

from __future__ import annotations

from pathlib import Path


class FileStorage:
    def __init__(self, root: str | Path, restrict_to_root: bool = True) -> None:
        self._root = Path(root).resolve()
        self._restrict_to_root = restrict_to_root

    @property
    def root(self) -> Path:
        return self._root

    def initialize(self) -> None:
        self.root.mkdir(exist_ok=True, parents=True)

    def clone_with_subroot(self, subroot: str | Path) -> FileStorage:
        return FileStorage(self.get_path(subroot), self._restrict_to_root)

    def get_path(self, relative_path: str | Path) -> Path:
        return self._sanitize_path(relative_path)

    def _sanitize_path(self, path: str | Path) -> Path:
        if "\0" in str(path):
            raise ValueError("Embedded null byte")
        relative_path = Path(path)
        if relative_path.is_absolute() and self._restrict_to_root and not relative_path.is_relative_to(self.root):
            raise ValueError(f"Attempted to access absolute path '{relative_path}' in storage '{self.root}'")
        full_path = (self.root / relative_path).resolve()
        if self._restrict_to_root and not full_path.is_relative_to(self.root):
            raise ValueError(f"Attempted to access path '{full_path}' outside of storage '{self.root}'.")
        return full_path

    def read_file(self, path: str | Path) -> str:
        return self.get_path(path).read_text()

    async def write_file(self, path: str | Path, content: str) -> None:
        full = self.get_path(path)
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_text(content)
