"""Mirrors forge/components/context/context.py at classic (dac99694f:76-105): open_file creates the
file in the workspace when it does not exist (`await self.workspace.write_file(file_path, "")`)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from forge.command import Command, command
from forge.file_storage import FileStorage


class ContextComponent:
    def __init__(self, workspace: FileStorage) -> None:
        self.workspace = workspace

    def get_commands(self) -> Iterator[Command]:
        yield self.open_file

    @command(parameters={"file_path": {}})
    async def open_file(self, file_path: str | Path) -> str:
        """Opens a file for editing or continued viewing; creates it if it does not exist yet."""
        created = False
        if not self.workspace.get_path(file_path).exists():
            await self.workspace.write_file(file_path, "")
            created = True
        return f"File {file_path}{' created,' if created else ''} has been opened and added to the context"
