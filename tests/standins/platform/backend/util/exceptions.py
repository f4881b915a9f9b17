"""Mirrors backend/util/exceptions.py at v0.6.44 (dac99694f): the block error tree (:4-36).

BlockExecutionError is a BlockError AND a ValueError, which is what makes every caller report a
MeshGuard refusal as an ordinary block failure (FAILED node, HTTP 400, chat ErrorResponse)."""

from __future__ import annotations


class BlockError(Exception):  # util/exceptions.py:4
    def __init__(self, message: str, block_name: str, block_id: str) -> None:
        super().__init__(f"raised by {block_name} with message: {message}. block_id: {block_id}")  # :8-10


class BlockInputError(BlockError, ValueError):  # :13
    pass


class BlockExecutionError(BlockError, ValueError):  # :21-27
    def __init__(self, message: str | None, block_name: str, block_id: str) -> None:
        if message is None:
            message = "Output error was None"
        super().__init__(message, block_name, block_id)


class BlockUnknownError(BlockError):  # :30-36
    def __init__(self, message: str | None, block_name: str, block_id: str) -> None:
        if not message:
            message = "Unknown error occurred"
        super().__init__(message, block_name, block_id)
