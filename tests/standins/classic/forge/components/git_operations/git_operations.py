"""Mirrors forge/components/git_operations/git_operations.py at classic (dac99694f:53-73):
clone_repository(url, clone_path) hands clone_path to git unchanged (`Repo.clone_from(url=...,
to_path=clone_path)`), so a relative path lands relative to AutoGPT's working directory, not the
workspace. The stand-in makes the folder git would make (no network)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from forge.command import Command, command


class GitOperationsComponent:
    def get_commands(self) -> Iterator[Command]:
        yield self.clone_repository

    @command(parameters={"url": {}, "clone_path": {}})
    def clone_repository(self, url: str, clone_path: Path) -> str:
        """Clone a GitHub repository locally."""
        target = Path(clone_path)  # Repo.clone_from(url=auth_repo_url, to_path=clone_path)
        target.mkdir(parents=True)
        (target / "README").write_text(f"cloned from {url}\n")
        return f"Cloned {url} to {clone_path}"
