"""Mirrors backend/executor/__init__.py: exports ExecutionManager."""

from backend.executor.manager import ExecutionManager

__all__ = ["ExecutionManager"]
