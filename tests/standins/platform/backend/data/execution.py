"""Mirrors backend/data/execution.py at v0.6.44 (dac99694f): ExecutionStatus and ExecutionContext
(:78-91; safe-mode defaults :86-87). Dataclasses stand for the pydantic models."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ExecutionStatus(str, Enum):  # prisma enum AgentExecutionStatus
    INCOMPLETE = "INCOMPLETE"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    TERMINATED = "TERMINATED"
    FAILED = "FAILED"
    REVIEW = "REVIEW"


@dataclass
class ExecutionContext:  # data/execution.py:78
    human_in_the_loop_safe_mode: bool = True  # :86
    sensitive_action_safe_mode: bool = False  # :87
    user_timezone: str = "UTC"
    root_execution_id: str | None = None
    parent_execution_id: str | None = None
