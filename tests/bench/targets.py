"""What every benchmark of `make bench` reports: a figure against a baseline of the same run, and its target.

Benchmark support (tests/bench/, never collected by pytest). Each benchmark module returns `Figure` rows;
`print_figures` prints them as one table, with the command reproducing each and whether it meets its target.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Goal(StrEnum):
    """How a figure compares with its target: at least it (ratios, speed-ups) or at most it (costs)."""

    AT_LEAST = "≥"
    AT_MOST = "≤"


@dataclass(frozen=True)
class Figure:
    """One measured figure: what it is, its value, the target it is held against, and how to reproduce it.

    `baseline` says what the value is measured against in the same run (a ratio's denominator), `detail` the
    raw figures behind a ratio, so that a reader can check the arithmetic. `unmeasured`, when set, says why
    this run has no value (`value` is then NaN, see `not_measured`): such a row neither meets nor misses.
    """

    name: str
    value: float
    unit: str
    goal: Goal
    target: float
    baseline: str
    detail: str
    command: str
    unmeasured: str = ""

    @classmethod
    def not_measured(
        cls, name: str, unit: str, goal: Goal, target: float, why: str, detail: str, command: str
    ) -> Figure:
        """A row for a figure this run does not measure, saying why (and where it is measured)."""
        return cls(name, math.nan, unit, goal, target, "—", detail, command, unmeasured=why)

    @property
    def met(self) -> bool:
        if self.unmeasured:
            return False
        if self.goal is Goal.AT_LEAST:
            return self.value >= self.target
        return self.value <= self.target


def median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """The median of per-round ratios: each round's pair is measured back to back, so load hits both alike."""
    return statistics.median(n / d for n, d in zip(numerators, denominators, strict=True))


def print_figures(figures: Iterable[Figure]) -> bool:
    """Print the figures as a Markdown table; True when every measured one meets its target."""
    rows = list(figures)
    print("| figure | measured | target | met | baseline (same run) | detail | command |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        measured = f"{row.value:.3g} {row.unit}".rstrip()
        if row.unmeasured:
            measured = f"not measured in this run: {row.unmeasured}"
        met = "—" if row.unmeasured else "yes" if row.met else "NO"
        target = f"{row.goal.value} {row.target:g} {row.unit}".rstrip()
        print(
            f"| {row.name} | {measured} | {target} | "
            f"{met} | {row.baseline} | {row.detail} | `{row.command}` |"
        )
    return all(row.met for row in rows if not row.unmeasured)
