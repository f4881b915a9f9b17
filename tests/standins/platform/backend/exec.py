"""Mirrors backend/exec.py at v0.6.44 (dac99694f): main() runs ExecutionManager in the foreground (:5-9)."""

from backend.app import run_processes
from backend.executor import ExecutionManager


def main() -> None:
    run_processes(ExecutionManager())


if __name__ == "__main__":
    main()
