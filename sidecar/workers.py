"""`--workers N`: N processes on the same ports, for machines with cores to spare (one process
answers on one core). Each is a whole server with its own zone and caches: they share nothing,
and a crash costs one worker. The supervisor forks them before any thread exists (a fork with
threads can leave locks held), passes SIGTERM, SIGINT and SIGHUP on, and starts a dead one again;
one that dies within `STARTUP_SECONDS` failed to start (a port in use) and would fail again, so
the supervisor then stops the others and exits with its code."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Callable

log = logging.getLogger("sidecar.workers")

STARTUP_SECONDS = 5.0
PASSED_ON = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: the kernel sends this worker SIGTERM if the supervisor dies (even by SIGKILL), so no
    worker is left holding the port."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    """Forks `count` workers, each running `serve(index)`, and keeps them running."""

    def __init__(self, count: int, serve: Callable[[int], int]) -> None:
        self.count = count
        self._serve = serve
        self._children: dict[int, tuple[int, float]] = {}  # pid -> (worker index, started at)
        self._stopping = False

    def run(self) -> int:
        """Serve until told to stop; the exit code (0, or that of a worker that failed to start)."""
        for sig in PASSED_ON:
            signal.signal(sig, self._pass_on)
        for index in range(self.count):
            self._spawn(index)
        code = 0
        while self._children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            if pid not in self._children:
                continue
            index, started = self._children.pop(pid)
            exit_code = os.waitstatus_to_exitcode(status)
            if self._stopping:
                continue
            if time.monotonic() - started < STARTUP_SECONDS:
                log.error("worker %d (pid %d) failed to start (exit %s); stopping the others", index, pid, exit_code)
                code = exit_code if exit_code > 0 else 1
                self._stop_all(signal.SIGTERM)
                continue
            log.error("worker %d (pid %d) exited (%s); starting it again", index, pid, exit_code)
            self._spawn(index)
        return code

    def _spawn(self, index: int) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for sig in PASSED_ON:
                    signal.signal(sig, signal.SIG_DFL)
                _die_with_parent()
                if os.getppid() != parent:  # the supervisor died before the line above took effect
                    os._exit(1)
                code = self._serve(index)
            except BaseException:
                log.exception("worker %d crashed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        self._children[pid] = (index, time.monotonic())

    def _pass_on(self, sig: int, _frame: object) -> None:
        self._stop_all(sig)

    def _stop_all(self, sig: int) -> None:
        """Send `sig` to every worker; anything but SIGHUP (reload) also means no restarts."""
        self._stopping = self._stopping or sig != signal.SIGHUP
        for pid in list(self._children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
