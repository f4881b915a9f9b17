"""Stands for backend/blocks/ at v0.6.44 (dac99694f): a few real blocks, by their real names and ids.

Side effects that leave the machine in the real blocks (an HTTP request, an email) are appended to
the JSON-lines file STANDIN_SIDE_EFFECTS instead, so a test sees whether one happened.
- CalculatorBlock          blocks/maths.py:23      pure
- SendWebRequestBlock      blocks/http.py:70       HTTP (url, method, body)
- SendEmailBlock           blocks/email_block.py:59  SMTP (to_email, subject, body; credentials field)
- PrintToConsoleBlock      blocks/basic.py:103     is_sensitive_action=True (basic.py:119)
- CountdownTimerBlock      blocks/time_blocks.py:~420  waits (asyncio.sleep) then outputs
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from backend.data.block import Block, BlockCategory, BlockSchema


def _side_effect(block: str, **what: Any) -> None:
    path = os.environ.get("STANDIN_SIDE_EFFECTS")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"block": block, **what}, default=str) + "\n")


class CalculatorBlock(Block):
    class Input(BlockSchema):
        fields = {"operation": True, "a": True, "b": True}

    input_schema = Input

    def __init__(self) -> None:
        super().__init__(id="b1ab9b19-67a6-406d-abf5-2dba76d00c79", categories={BlockCategory.BASIC})

    async def run(self, input_data: Any, **kwargs: Any) -> Any:
        ops = {"Add": lambda a, b: a + b, "Multiply": lambda a, b: a * b}
        yield "result", float(ops[input_data.operation](input_data.a, input_data.b))


class SendWebRequestBlock(Block):
    class Input(BlockSchema):
        fields = {"url": True, "method": False, "body": False}

    input_schema = Input

    def __init__(self) -> None:
        super().__init__(id="6595ae1f-b924-42cb-9a41-551a0611c4b4", categories={BlockCategory.OUTPUT})

    async def run(self, input_data: Any, **kwargs: Any) -> Any:
        _side_effect(self.name, url=input_data.url, method=getattr(input_data, "method", "POST"))
        yield "response", {"status": 200}


class SendEmailBlock(Block):
    class Input(BlockSchema):
        fields = {"to_email": True, "subject": True, "body": True, "credentials": True}
        credentials = ("credentials",)

    input_schema = Input

    def __init__(self) -> None:
        super().__init__(id="4335878a-394e-4e67-adf2-919877ff49ae", categories={BlockCategory.OUTPUT})

    async def run(self, input_data: Any, *, credentials: Any = None, **kwargs: Any) -> Any:
        # the SMTP password arrives in kwargs (manager.py:260-264), never in input_data
        _side_effect(self.name, to=input_data.to_email, subject=input_data.subject,
                     smtp_password_used=bool(credentials and credentials.get("password")))
        yield "status", "Email sent successfully"


class PrintToConsoleBlock(Block):
    is_sensitive_action = True  # blocks/basic.py:119

    class Input(BlockSchema):
        fields = {"text": True}

    input_schema = Input

    def __init__(self) -> None:
        super().__init__(id="f3b1c1b2-4c4f-4f0d-8d2f-4c4f0d8d2f4c", categories={BlockCategory.BASIC})

    async def run(self, input_data: Any, **kwargs: Any) -> Any:
        _side_effect(self.name, text=input_data.text)
        yield "output", input_data.text
        yield "status", "printed"


class CountdownTimerBlock(Block):
    class Input(BlockSchema):
        fields = {"input_message": False, "seconds": False}

    input_schema = Input

    def __init__(self) -> None:
        super().__init__(id="d67a9c52-5e4e-11e2-bcfd-0800200c9a71", categories={BlockCategory.BASIC})

    async def run(self, input_data: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(float(getattr(input_data, "seconds", 0) or 0))
        _side_effect(self.name, message=getattr(input_data, "input_message", None))
        yield "output_message", getattr(input_data, "input_message", "timer finished")


def load_all_blocks() -> dict[str, type[Block]]:  # blocks/__init__.py:20
    return {cls().id: cls for cls in (CalculatorBlock, SendWebRequestBlock, SendEmailBlock, PrintToConsoleBlock,
                                      CountdownTimerBlock)}
