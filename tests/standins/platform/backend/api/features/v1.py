"""Mirrors backend/api/features/v1.py at v0.6.44 (dac99694f): POST /api/blocks/{block_id}/execute
(:359-395) runs obj.execute(data, user_id=user_id) (:381-385); no graph context."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from backend.data.block import get_block


class HTTPException(Exception):  # fastapi.HTTPException
    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code, self.detail = status_code, detail


async def execute_graph_block(block_id: str, data: dict[str, Any], user_id: str) -> dict[str, list[Any]]:  # :365
    obj = get_block(block_id)
    if not obj:
        raise HTTPException(status_code=404, detail=f"Block #{block_id} not found.")
    if obj.disabled:
        raise HTTPException(status_code=403, detail=f"Block #{block_id} is disabled.")
    output: dict[str, list[Any]] = defaultdict(list)
    async for name, value in obj.execute(data, user_id=user_id):  # :381
        output[name].append(value)
    return output
