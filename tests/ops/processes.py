"""Real processes for the operations tests: start one (`ror-bridge …` or any command), wait until its URL
answers, and stop it however the test ends (tests/ops)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.test_cli import REPO


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until `url` answers 200; AssertionError with the process's log when it ends or a minute passes."""
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer: {log.read_text()}")
        time.sleep(0.1)


@contextmanager
def running(
    command: list[str], log: Path, ready: str, env: dict[str, str], *, kill: bool = False
) -> Iterator[subprocess.Popen[bytes]]:
    """`command` run from the repository with `env` added, its output in `log`, yielded once `ready`
    answers; then terminated (killed with `kill`) if still running, and waited for."""
    with (
        log.open("wb") as output,
        subprocess.Popen(
            command, cwd=REPO, env={**os.environ, **env}, stdout=output, stderr=subprocess.STDOUT
        ) as process,
    ):
        try:
            wait_ready(ready, process, log)
            yield process
        finally:
            if process.poll() is None:
                if kill:
                    process.kill()
                else:
                    process.terminate()
            process.wait(timeout=30)
