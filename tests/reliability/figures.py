"""Figures of a reliability run, for docs/reliability.md.

Each suite appends one JSON line per measurement to MESHGUARD_RELIABILITY_FIGURES (default:
<tmp>/meshguard-reliability-figures.jsonl). `python -m tests.reliability.figures` sums them up;
`--reset` empties the file before a run.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any


def figures_path() -> Path:
    default = Path(tempfile.gettempdir()) / "meshguard-reliability-figures.jsonl"
    return Path(os.environ.get("MESHGUARD_RELIABILITY_FIGURES", default))


def record(suite: str, **numbers: Any) -> None:
    """Append one measurement (a suite name and counters) to the figures file."""
    line = json.dumps({"suite": suite, "at": time.time(), **numbers}, default=str)
    with open(figures_path(), "a", encoding="utf-8") as out:
        out.write(line + "\n")


def summary(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """Per suite: numeric fields summed, the rest as a sorted list of distinct values."""
    totals: dict[str, dict[str, Any]] = defaultdict(dict)
    source = path or figures_path()
    if not source.exists():
        return {}
    for line in source.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        suite = item.pop("suite")
        item.pop("at", None)
        agg = totals[suite]
        agg["measurements"] = agg.get("measurements", 0) + 1
        for key, value in item.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                agg.setdefault(key, set()).add(json.dumps(value))
            else:
                agg[key] = agg.get(key, 0) + value
    return {s: {k: (sorted(v) if isinstance(v, set) else v) for k, v in agg.items()} for s, agg in totals.items()}


if __name__ == "__main__":
    if "--reset" in sys.argv:
        figures_path().unlink(missing_ok=True)
        print(f"emptied {figures_path()}")
    else:
        print(json.dumps(summary(), indent=2, sort_keys=True))
