"""Mirrors backend/data/block.py at v0.6.44 (dac99694f): the Block base class (:427), its async
generator execute (:603-619) that re-raises BlockError unchanged and wraps any other error, and
_execute (:685-720): review gate only with graph context (:687-699), input validation, then run;
an "error" output becomes BlockExecutionError. The input schema stands for BlockSchema: a dict of
field name -> required flag, with credentials fields named by get_credentials_fields (:258)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from enum import Enum
from typing import Any, ClassVar

from backend.util.exceptions import BlockError, BlockExecutionError, BlockInputError, BlockUnknownError

BlockInput = dict[str, Any]
BlockOutput = AsyncGenerator[tuple[str, Any], None]


class BlockCategory(Enum):  # data/block.py:79-100 (subset)
    BASIC = "Block that performs basic operations"
    OUTPUT = "Block that interacts with output of the graph"
    DEVELOPER_TOOLS = "Developer tools such as GitHub blocks"
    COMMUNICATION = "Block that interacts with communication platforms"


class BlockSchema:
    """Stands for BlockSchemaInput: which fields exist, which are required, which are credentials."""

    fields: ClassVar[dict[str, bool]] = {}
    credentials: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **data: Any) -> None:
        self.__dict__.update(data)

    @classmethod
    def validate_data(cls, data: BlockInput) -> str | None:
        missing = [name for name, required in cls.fields.items() if required and data.get(name) is None]
        return f"missing required input(s): {', '.join(missing)}" if missing else None

    @classmethod
    def get_credentials_fields(cls) -> dict[str, Any]:  # data/block.py:258
        return {name: dict for name in cls.credentials}

    @classmethod
    def get_auto_credentials_fields(cls) -> dict[str, Any]:
        return {}


class Block:  # data/block.py:427
    input_schema: type[BlockSchema] = BlockSchema
    is_sensitive_action: bool = False  # :444

    def __init__(self, id: str, categories: set[BlockCategory] | None = None, disabled: bool = False) -> None:
        self.id = id
        self.categories = categories or set()
        self.disabled = disabled

    @property
    def name(self) -> str:  # :567
        return self.__class__.__name__

    async def run(self, input_data: Any, **kwargs: Any) -> BlockOutput:
        raise NotImplementedError
        yield  # pragma: no cover

    async def execute(self, input_data: BlockInput, **kwargs: Any) -> BlockOutput:  # :603-619
        try:
            async for output_name, output_data in self._execute(input_data, **kwargs):
                yield output_name, output_data
        except Exception as ex:
            if isinstance(ex, BlockError):
                raise ex
            else:
                raise (BlockExecutionError if isinstance(ex, ValueError) else BlockUnknownError)(
                    message=str(ex), block_name=self.name, block_id=self.id
                ) from ex

    async def _execute(self, input_data: BlockInput, **kwargs: Any) -> BlockOutput:  # :685
        has_graph_context = all(
            key in kwargs for key in ("node_exec_id", "graph_exec_id", "graph_id", "execution_context")
        )  # :687-699; the review itself (is_block_exec_need_review, :621) needs the database: left out
        del has_graph_context
        if error := self.input_schema.validate_data(input_data):  # :701-706
            raise BlockInputError(message=f"Unable to execute block with invalid input data: {error}",
                                  block_name=self.name, block_id=self.id)
        async for output_name, output_data in self.run(
            self.input_schema(**{k: v for k, v in input_data.items() if v is not None}), **kwargs
        ):
            if output_name == "error":  # :714-718
                raise BlockExecutionError(message=output_data, block_name=self.name, block_id=self.id)
            yield output_name, output_data


def get_blocks() -> dict[str, type[Block]]:  # data/block.py:755-758 -> blocks.load_all_blocks
    from backend.blocks import load_all_blocks

    return load_all_blocks()


def get_block(block_id: str) -> Block | None:  # data/block.py:761
    cls = get_blocks().get(block_id)
    return cls() if cls else None
