"""Mirrors backend/app.py at v0.6.44 (dac99694f): run_processes (:14-31) starts every service but
the last in the background (forkserver children) and runs the last in the foreground; main()
(:34-53) runs AgentServer as a child and ExecutionManager in the foreground. The services that run
no blocks (DatabaseManager, Scheduler, NotificationManager, WebsocketServer) are left out."""

from __future__ import annotations

from typing import Any


def run_processes(*processes: Any, **kwargs: Any) -> None:  # app.py:14
    try:
        for process in processes[:-1]:  # :21-22
            process.start(background=True, **kwargs)
        processes[-1].start(background=False, **kwargs)  # :25
    finally:
        for process in processes:  # :27-31
            try:
                process.stop()
            except Exception:
                pass


def main(**kwargs: Any) -> None:  # app.py:34
    from backend.api.rest_api import AgentServer
    from backend.executor import ExecutionManager

    run_processes(AgentServer(), ExecutionManager(), **kwargs)  # :44-52


if __name__ == "__main__":
    main()
