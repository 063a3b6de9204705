"""The benchmarks' process toolkit: start a `ror-bridge serve` / `simulator` (or any server) and wait until it
answers, read its CPU seconds and peak RSS (and its children's), stop it within a bound.

Benchmark support (tests/bench/, never collected by pytest). Linux only (/proc). Every benchmark module and
the soak use these instead of their own copies.
"""

from __future__ import annotations

import os
import resource
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
# The installed console script (what an operator runs) and `python -m bridge` (which imports the `bridge/`
# of the working directory: `cwd=` runs another checkout).
ROR_BRIDGE = str(BIN / "ror-bridge")
PYTHON_BRIDGE = (sys.executable, "-m", "bridge")


class ProcessFailedError(RuntimeError):
    """A benchmark's server process exited early or never answered its readiness URL."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(
    url: str,
    child: subprocess.Popen[bytes] | None = None,
    *,
    seconds: float = 600,
    verify: ssl.SSLContext | bool = True,
    log: Path | None = None,
) -> None:
    """Poll `url` until it answers below 500; `ProcessFailedError` when `child` exits first, or after
    `seconds`."""
    deadline = time.monotonic() + seconds
    where = f"; see {log}" if log is not None else ""
    while True:
        if child is not None and child.poll() is not None:
            status = child.returncode
            raise ProcessFailedError(f"{_name(child)} exited ({status}) before {url} answered{where}")
        with suppress(httpx.HTTPError):
            if httpx.get(url, verify=verify, timeout=5).status_code < 500:
                return
        if time.monotonic() > deadline:
            raise ProcessFailedError(f"{url} did not answer within {seconds:.0f} s{where}")
        time.sleep(0.2)


def stop(child: subprocess.Popen[bytes], bound_s: float = 30.0) -> float | None:
    """SIGTERM, then wait: the seconds the process took to stop, None when it was killed after `bound_s`."""
    if child.poll() is not None:
        return 0.0
    started = time.monotonic()
    child.terminate()
    try:
        child.wait(bound_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        return None
    return time.monotonic() - started


@contextmanager
def started(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    cwd: str | None = None,
    stop_s: float = 30.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """A process running `command` (environment = this one's plus `env`; output to `log`, else discarded),
    stopped (`stop`) on exit."""
    with log.open("wb") if log is not None else open(os.devnull, "wb") as output:
        child = subprocess.Popen(
            list(command), stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=cwd
        )
        try:
            yield child
        finally:
            stop(child, stop_s)


@contextmanager
def running(
    command: Sequence[str],
    ready_url: str,
    *,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    cwd: str | None = None,
    verify: ssl.SSLContext | bool = True,
    ready_s: float = 600,
    stop_s: float = 30.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """`started`, yielded once `ready_url` answers (`wait_ready`)."""
    with started(command, env=env, log=log, cwd=cwd, stop_s=stop_s) as child:
        wait_ready(ready_url, child, seconds=ready_s, verify=verify, log=log)
        yield child


def _name(child: subprocess.Popen[bytes]) -> str:
    args = child.args if isinstance(child.args, list) else [str(child.args)]
    return " ".join(str(part) for part in args[:3])


# --------------------------------------------------------------------------------------------------
# CPU and memory (/proc)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process so far (/proc/<pid>/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """`cpu_seconds` of a process and of its live descendants (workers), summed."""
    total = 0.0
    for each in (pid, *descendants(pid)):
        with suppress(OSError):  # ended between the listing and the read
            total += cpu_seconds(each)
    return total


def run_cpu_seconds(command: Sequence[str]) -> float:
    """Run `command` to its end (stderr discarded; a failure raises): its CPU time, user + system
    (`getrusage` of the children this process waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(list(command), check=True, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def descendants(pid: int) -> list[int]:
    """The process ids below `pid` (children, their children…), read from /proc."""
    found: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue  # the thread or process ended meanwhile
            found += children
            stack += children
    return found


def listening_sockets(port: int) -> int:
    """How many TCP sockets listen on `port` (/proc/net/tcp and tcp6): one per worker under
    `serve --workers N` (a SO_REUSEPORT group), one in all when the workers share a socket."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rpartition(":")[2], 16) == port:  # 0A: LISTEN
                    count += 1
    return count


def status_kib(pid: int, field: str) -> int:
    """A KiB field of /proc/<pid>/status: VmRSS (now), VmHWM (peak RSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status: the benchmark needs Linux")


def pss_kib(pid: int) -> int:
    """The proportional set size of a process, KiB (/proc/<pid>/smaps_rollup): its private pages plus its
    share of each page it shares (libraries, the interpreter); summed over processes, unlike RSS, it counts
    a shared page once."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise RuntimeError(f"no Pss in /proc/{pid}/smaps_rollup: the benchmark needs Linux ≥ 4.14")


def rss_mib(pid: int) -> float:
    """The resident memory of a process now, MiB."""
    return status_kib(pid, "VmRSS") / 1024


def peak_rss_mib(pid: int) -> float:
    """The peak resident memory of a live process so far (VmHWM), MiB."""
    return status_kib(pid, "VmHWM") / 1024


def stat_cpu(pid: int) -> tuple[int, float]:
    """A live process's start time (clock ticks since boot, /proc/<pid>/stat field 22: with the pid, an
    identity that survives pid reuse) and its user + system CPU seconds so far (fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[19]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class TreeSampler(threading.Thread):
    """The largest sum of VmRSS over a process and its descendants (and of their PSS: `peak_pss_kib`), and
    their CPU seconds (user + system), sampled every `period_s`.

    CPU is counted from the first sample (`start` takes it): the root's own, and the descendants' summed,
    each descendant by its last sample, so that one which ends between two samples (a mapping worker at the
    end of an extraction) still counts, less at most `period_s` of its work. `stop` takes a last sample.
    `series` holds (monotonic time, own CPU, descendants' CPU) of every sample, for splitting by phase.
    """

    def __init__(self, pid: int, period_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.period_s = period_s
        self.peak_kib = 0
        self.peak_pss_kib = 0
        self.most_processes = 0
        self.series: list[tuple[float, float, float]] = []
        self._first: dict[tuple[int, int], float] = {}
        self._last: dict[tuple[int, int], float] = {}
        self._root: tuple[int, int] | None = None
        self._halt = threading.Event()

    def start(self) -> None:
        self.sample()  # the baseline: CPU spent before the measure does not count
        super().start()

    def run(self) -> None:
        while not self._halt.wait(self.period_s):
            self.sample()

    def sample(self) -> None:
        """One sample of the tree's memory and CPU (also called directly: `start`, `stop`)."""
        total, proportional, processes = 0, 0, 0
        for pid in (self.pid, *descendants(self.pid)):
            try:
                key_start, cpu = stat_cpu(pid)
                rss = status_kib(pid, "VmRSS")
                pss = pss_kib(pid)
            except (OSError, RuntimeError, IndexError, ValueError):
                continue  # gone between the listing and the read
            key = (pid, key_start)
            if pid == self.pid:
                self._root = key
            self._first.setdefault(key, cpu)
            self._last[key] = cpu
            total += rss
            proportional += pss
            processes += 1
        self.peak_kib = max(self.peak_kib, total)
        self.peak_pss_kib = max(self.peak_pss_kib, proportional)
        self.most_processes = max(self.most_processes, processes)
        own = self._spent(lambda key: key == self._root)
        self.series.append((time.monotonic(), own, self._spent(lambda key: key != self._root)))

    def _spent(self, keep: Callable[[tuple[int, int]], bool]) -> float:
        return sum(cpu - self._first[key] for key, cpu in self._last.items() if keep(key))

    @property
    def own_cpu_s(self) -> float:
        """The root process's CPU seconds since the first sample."""
        return self.series[-1][1] if self.series else 0.0

    @property
    def descendants_cpu_s(self) -> float:
        """The descendants' CPU seconds since the first sample (ended ones by their last sample)."""
        return self.series[-1][2] if self.series else 0.0

    @property
    def processes_seen(self) -> int:
        """How many processes (the root included) the samples ever saw."""
        return len(self._last)

    def cpu_at(self, when: float) -> tuple[float, float]:
        """(own, descendants) CPU seconds at the last sample taken at or before monotonic time `when`."""
        before = [(own, children) for at, own, children in self.series if at <= when]
        return before[-1] if before else (0.0, 0.0)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.sample()
