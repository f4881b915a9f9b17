"""The long mode: `pytest --soak` (option registered in tests/conftest.py) or MESHGUARD_SOAK=1."""

from __future__ import annotations

import os

import pytest


def soak(config: pytest.Config) -> bool:
    """Whether this run is the long soak run (more crashes, more fuzz cases, more processes)."""
    try:
        flag = bool(config.getoption("--soak", default=False))
    except ValueError:
        flag = False
    return flag or os.environ.get("MESHGUARD_SOAK", "") not in ("", "0")


def scale(config: pytest.Config, default: int, soak_value: int) -> int:
    return soak_value if soak(config) else default


def soak_from_env() -> bool:
    """For values fixed at import time (hypothesis' max_examples): only MESHGUARD_SOAK=1 can reach them."""
    return os.environ.get("MESHGUARD_SOAK", "") not in ("", "0")


def examples(default: int, factor: int = 10) -> int:
    """max_examples for a hypothesis test: `default`, or `factor` times more under MESHGUARD_SOAK=1."""
    return default * factor if soak_from_env() else default
