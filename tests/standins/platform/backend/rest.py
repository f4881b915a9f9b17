"""Mirrors backend/rest.py at v0.6.44 (dac99694f): main() runs AgentServer in the foreground (:5-9)."""

from backend.api.rest_api import AgentServer
from backend.app import run_processes


def main() -> None:
    run_processes(AgentServer())


if __name__ == "__main__":
    main()
