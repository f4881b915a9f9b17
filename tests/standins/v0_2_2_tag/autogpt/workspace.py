"""Mirrors autogpt/workspace.py at v0.2.2: WORKSPACE_PATH = cwd at import time + auto_gpt_workspace."""

from __future__ import annotations

import os
from pathlib import Path

from autogpt.config import Config

CFG = Config()

WORKSPACE_PATH = Path(os.getcwd()) / "auto_gpt_workspace"  # workspace.py:11
if not os.path.exists(WORKSPACE_PATH):
    os.makedirs(WORKSPACE_PATH)


def path_in_workspace(relative_path: str | Path) -> Path:
    return safe_path_join(WORKSPACE_PATH, relative_path)


def safe_path_join(base: Path, *paths: str | Path) -> Path:  # workspace.py:31
    base = base.resolve()
    joined_path = base.joinpath(*paths).resolve()
    if CFG.restrict_to_workspace and not joined_path.is_relative_to(base):
        raise ValueError(f"Attempted to access path '{joined_path}' outside of workspace '{base}'.")
    return joined_path
