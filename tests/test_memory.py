"""bridge/memory.py: on glibc Linux the arena cap and the trim reach the C library; else they are no-ops."""

from __future__ import annotations

import platform
import sys

import pytest

from bridge import memory


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_glibc_takes_the_arena_cap_and_the_trim() -> None:
    assert memory.cap_arenas() is True
    blocks = [bytearray(256 * 1024) for _ in range(64)]  # some memory to give back
    del blocks
    assert isinstance(memory.release(), bool)  # 1 when memory was released, 0 when there was none


def test_without_glibc_both_are_no_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_LIBC", None)
    assert memory.cap_arenas() is False
    assert memory.release() is False
