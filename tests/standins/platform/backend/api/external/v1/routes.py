"""Mirrors backend/api/external/v1/routes.py at v0.6.44 (dac99694f): the API-key block endpoint
(:74-95) runs obj.execute(data) with no kwargs at all (:93)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from backend.api.features.v1 import HTTPException
from backend.data.block import get_block


async def execute_graph_block(block_id: str, data: dict[str, Any]) -> dict[str, list[Any]]:  # :79
    obj = get_block(block_id)
    if not obj:
        raise HTTPException(status_code=404, detail=f"Block #{block_id} not found.")
    output: dict[str, list[Any]] = defaultdict(list)
    async for name, value in obj.execute(data):  # :93
        output[name].append(value)
    return output
