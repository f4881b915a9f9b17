"""Mirrors autogpt/models/action_history.py at ~v0.5.1 (pydantic models there; what the agent is told,
__str__, is the same)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional


@dataclass
class ActionSuccessResult:
    outputs: Any
    status: str = "success"

    def __str__(self) -> str:
        outputs = str(self.outputs).replace("```", r"\```")
        multiline = "\n" in outputs
        return f"```\n{self.outputs}\n```" if multiline else str(self.outputs)


@dataclass
class ErrorInfo:
    args: tuple
    message: str
    exception_type: str
    repr: str

    @staticmethod
    def from_exception(exception: Exception) -> ErrorInfo:
        return ErrorInfo(args=exception.args, message=getattr(exception, "message", exception.args[0]),
                         exception_type=exception.__class__.__name__, repr=repr(exception))  # fmt: skip


@dataclass
class ActionErrorResult:
    reason: str
    error: Optional[ErrorInfo] = None
    status: str = "error"

    @staticmethod
    def from_exception(exception: Exception) -> ActionErrorResult:
        return ActionErrorResult(reason=getattr(exception, "message", exception.args[0]),
                                 error=ErrorInfo.from_exception(exception))  # fmt: skip

    def __str__(self) -> str:
        return f"Action failed: '{self.reason}'"


@dataclass
class ActionInterruptedByHuman:
    feedback: str
    status: str = "interrupted_by_human"

    def __str__(self) -> str:
        return 'The user interrupted the action with the following feedback: "%s"' % self.feedback
