"""The long mode: `pytest --soak` (option registered in tests/conftest.py) or MESHGUARD_SOAK=1."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.strategies import SearchStrategy


def soak(config: pytest.Config) -> bool:
    """Whether this run is the long soak run (more crashes, more fuzz cases, more processes)."""
    try:
        flag = bool(config.getoption("--soak", default=False))
    except ValueError:
        flag = False
    return flag or os.environ.get("MESHGUARD_SOAK", "") not in ("", "0")


def scale(config: pytest.Config, default: int, soak_value: int) -> int:
    return soak_value if soak(config) else default


def run_examples(config: pytest.Config, default: int, test: Callable[..., None], *strategies: SearchStrategy[Any],
                 factor: int = 10, **named: SearchStrategy[Any]) -> None:  # fmt: skip
    """Run `test` under hypothesis with `default` examples, or `factor` times more in soak mode.

    Built at run time (not with decorators at import) so that `--soak` can reach the example count.
    """
    n = default * factor if soak(config) else default
    wrapped = settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck))(
        given(*strategies, **named)(test)
    )
    wrapped()
