"""The gateway with the audit chain switched off, for bench_gateway.py only: it measures what the
chain costs by running the same gateway without it, in the same run. Never use it for anything else.

"Without the chain": no MAC is computed, the chain columns are stored empty and the head file is not
written; ids are still assigned by the writer, as with the chain.
"""

from __future__ import annotations

import runpy
import sys
from typing import Any

from meshguard_gateway import store


def _seal_nothing(self: Any, values: tuple[Any, ...]) -> tuple[int, None, None]:
    rid = self.next_id
    self.next_id = rid + 1
    return rid, None, None


store._Chain.seal = _seal_nothing  # type: ignore[method-assign,assignment]
store._ChainState.write_head = lambda self: None  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.argv[0] = "meshguard"
    runpy.run_module("meshguard_gateway", run_name="__main__", alter_sys=True)
