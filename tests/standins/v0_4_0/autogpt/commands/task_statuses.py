"""Mirrors autogpt/commands/task_statuses.py at v0.4.0: task_complete is a registry command that quits."""

from __future__ import annotations

from typing import NoReturn

from autogpt.commands.command import command


@command("task_complete", "Task Complete (Shutdown)", '"reason": "<reason>"')
def task_complete(reason: str, config) -> NoReturn:
    print("Shutting down...\n", reason)
    quit()
