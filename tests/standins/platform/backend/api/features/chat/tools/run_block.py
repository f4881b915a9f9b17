"""Mirrors backend/api/features/chat/tools/run_block.py at v0.6.44 (dac99694f): the CoPilot tool runs
block.execute(input_data, user_id=..., execution_context=ExecutionContext(), <credentials>) (:225-256);
BlockError -> ErrorResponse("Block execution failed: ...") for the LLM (:267-273), any other
Exception -> ErrorResponse("Failed to execute block: ...") (:274-280)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from backend.data.block import get_block
from backend.data.execution import ExecutionContext
from backend.executor.manager import IntegrationCredentialsManager
from backend.util.exceptions import BlockError


async def run_block(user_id: str, block_id: str, input_data: dict[str, Any], session_id: str = "chat-1") -> dict[str, Any]:
    block = get_block(block_id)
    if block is None:
        return {"type": "error", "message": f"Block '{block_id}' not found", "session_id": session_id}
    try:
        exec_kwargs: dict[str, Any] = {"user_id": user_id, "execution_context": ExecutionContext()}  # :228-231
        for field_name in block.input_schema.get_credentials_fields():  # :233-243
            exec_kwargs[field_name], _ = await IntegrationCredentialsManager().acquire(user_id, input_data[field_name]["id"])
        outputs: dict[str, list[Any]] = defaultdict(list)
        async for output_name, output_data in block.execute(input_data, **exec_kwargs):  # :252
            outputs[output_name].append(output_data)
        return {"type": "block_output", "message": f"Block '{block.name}' executed successfully",  # :258-265
                "block_id": block_id, "block_name": block.name, "outputs": dict(outputs), "success": True,
                "session_id": session_id}
    except BlockError as e:  # :267-273
        return {"type": "error", "message": f"Block execution failed: {e}", "error": str(e), "session_id": session_id}
    except Exception as e:  # :274-280
        return {"type": "error", "message": f"Failed to execute block: {str(e)}", "error": str(e),
                "session_id": session_id}
