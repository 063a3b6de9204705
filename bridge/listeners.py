"""`serve --workers N` on Linux: one SO_REUSEPORT listening socket per worker, the parent supervising them.

Entry level (used by cli.py only). One socket shared by every worker leaves the kernel to hand each connection
to whichever worker wakes first: a burst of keep-alive connections lands on one worker and stays there.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from enum import StrEnum
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as EventType
from types import FrameType

import uvicorn

from bridge.errors import ConfigurationError

log = logging.getLogger("bridge")

# uvicorn's exit status of a worker that could not start (app, settings, TLS): restarting it would fail again.
STARTUP_FAILURE = 3
SUPERVISE_S = 0.5  # how often the parent looks for a worker that exited


class LogEvent(StrEnum):
    """What the worker supervisor logs (house style: events are enum members)."""

    WORKER_STARTED = "serve-worker-started"
    WORKER_EXITED = "serve-worker-exited"
    WORKER_FAILED_TO_START = "serve-worker-failed-to-start"


def balanced_listeners_supported() -> bool:
    """True where the kernel spreads connections over the sockets of one SO_REUSEPORT group (Linux ≥ 3.9);
    elsewhere (macOS, BSD) the last socket bound takes them all, and the workers share one socket instead."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def bind_listeners(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` TCP sockets bound to `host:port` in one SO_REUSEPORT group, not listening yet (each worker
    listens on its own). Port 0: the first socket's ephemeral port for all. ConfigurationError when the
    address cannot be bound (in use by another program, not an address of this machine)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            # IPPROTO_TCP, not 0: asyncio turns TCP_NODELAY on only for sockets that say they are TCP.
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.set_inheritable(True)
    except OSError as error:
        for sock in sockets:
            sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return sockets


class _Server(uvicorn.Server):
    """uvicorn's server, telling the supervisor once it serves."""

    def __init__(self, config: uvicorn.Config, ready: EventType) -> None:
        super().__init__(config)
        self.ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.ready.set()


def _worker(config: uvicorn.Config, sock: socket.socket, ready: EventType) -> None:
    """A worker process: uvicorn serving the application on its own socket; STARTUP_FAILURE when the
    application cannot be built (its reason logged)."""
    config.configure_logging()
    try:
        _Server(config, ready).run(sockets=[sock])
    except ConfigurationError as error:
        log.error("%s %s", LogEvent.WORKER_FAILED_TO_START, error.reason)
        sys.exit(STARTUP_FAILURE)


class Supervisor:
    """Starts one worker process per socket, restarts a worker that exits (on the same socket), and stops
    them all on SIGTERM or SIGINT (each worker then shuts down gracefully)."""

    def __init__(self, config: uvicorn.Config, sockets: Sequence[socket.socket]) -> None:
        self.config = config
        self.sockets = list(sockets)
        self.processes: list[BaseProcess] = []
        self._ready: list[EventType] = []
        self._stop = threading.Event()
        self._context = multiprocessing.get_context("spawn")

    def _start(self, index: int) -> BaseProcess:
        ready = self._context.Event()
        process = self._context.Process(target=_worker, args=(self.config, self.sockets[index], ready))
        process.start()
        log.info("%s pid=%s", LogEvent.WORKER_STARTED, process.pid)
        if index < len(self.processes):
            self.processes[index], self._ready[index] = process, ready
        else:
            self.processes.append(process)
            self._ready.append(ready)
        return process

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stop.set()

    def run(self) -> int:
        """Supervise until stopped: 0, or STARTUP_FAILURE when a worker could not start."""
        for each in (signal.SIGINT, signal.SIGTERM):
            signal.signal(each, self._on_signal)
        status = 0
        for index in range(len(self.sockets)):
            self._start(index)
        try:
            while not self._stop.wait(SUPERVISE_S):
                for index, process in enumerate(self.processes):
                    if process.is_alive():
                        continue
                    process.join()
                    if process.exitcode == STARTUP_FAILURE or not self._ready[index].is_set():
                        # It never served: the next one would fail the same way (settings, tables, TLS).
                        log.error(
                            "%s pid=%s exitcode=%s",
                            LogEvent.WORKER_FAILED_TO_START,
                            process.pid,
                            process.exitcode,
                        )
                        status = STARTUP_FAILURE
                        self._stop.set()
                        break
                    log.warning(
                        "%s pid=%s exitcode=%s", LogEvent.WORKER_EXITED, process.pid, process.exitcode
                    )
                    self._start(index)
        finally:
            for process in self.processes:
                if process.is_alive():
                    process.terminate()  # SIGTERM: the worker's graceful shutdown
            for process in self.processes:
                process.join()
            for sock in self.sockets:
                sock.close()
        return status
