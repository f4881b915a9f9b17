"""Mirrors forge/components/file_manager/file_manager.py at classic: the workspace is
file_manager.workspace (a FileStorage); write_file/create_file is an async component method."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from forge.command import Command, command
from forge.file_storage import FileStorage


class FileManagerComponent:
    def __init__(self, file_storage: FileStorage, state) -> None:
        self.workspace = file_storage.clone_with_subroot(f"agents/{state.agent_id}/workspace")
        self.workspace.initialize()

    def get_commands(self) -> Iterator[Command]:
        yield self.read_file
        yield self.write_to_file

    @command(parameters={"filename": {}})
    def read_file(self, filename: str | Path) -> str:
        """Read a file and return the contents"""
        return self.workspace.read_file(filename)

    @command(["write_file", "create_file"], "Write a file, creating it if necessary.",
             {"filename": {}, "contents": {}})  # fmt: skip
    async def write_to_file(self, filename: str | Path, contents: str) -> str:
        await self.workspace.write_file(filename, contents)
        return f"File {filename} has been written successfully."
