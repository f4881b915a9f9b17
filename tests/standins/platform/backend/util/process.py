"""Mirrors backend/util/process.py at v0.6.44 (dac99694f): AppProcess (:16-149).

The class BODY switches multiprocessing to forkserver (:25-29), so every background service is a
forkserver child that never runs the parent's main(); start(background=False) runs the service in
the calling process (:123-125), start(background=True) in multiprocessing.Process (:127-133).
Logging/Sentry set-up (:31-32) is left out."""

from __future__ import annotations

import os
import signal
import sys
from abc import ABC, abstractmethod
from multiprocessing import Process, get_all_start_methods, set_start_method
from typing import Optional


class AppProcess(ABC):  # util/process.py:16
    process: Optional[Process] = None
    _shutting_down: bool = False
    _cleaned_up: bool = False

    if "forkserver" in get_all_start_methods():  # :25-29
        set_start_method("forkserver", force=True)
    else:
        set_start_method("spawn", force=True)

    @abstractmethod
    def run(self) -> None: ...

    @property
    def service_name(self) -> str:
        return self.__class__.__name__

    def cleanup(self) -> None:
        pass

    def execute_run_command(self, silent: bool) -> None:  # :54-85
        signal.signal(signal.SIGTERM, self._self_terminate)
        try:
            if silent:
                sys.stdout = open(os.devnull, "w")
            self.run()
        finally:
            if not self._cleaned_up:
                self._cleaned_up = True
                self.cleanup()

    def _self_terminate(self, signum: int, frame: object) -> None:  # :95-98
        if not self._shutting_down:
            self._shutting_down = True
            sys.exit(0)

    def start(self, background: bool = False, silent: bool = False, **proc_args: object) -> int:  # :113-136
        if not background:
            self.execute_run_command(silent)
            return 0
        self.process = Process(name=self.__class__.__name__, target=self.execute_run_command, args=(silent,),
                               **proc_args)  # type: ignore[arg-type]
        self.process.start()
        return self.process.pid or 0

    def stop(self) -> None:  # :138-149
        if not self.process:
            return
        self.process.terminate()
        self.process.join()
        self.process = None
