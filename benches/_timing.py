"""Shared helpers: interleaved rounds, min/median summaries, the result record.

These machines are shared and noisy (2 cores): every figure is taken in rounds that alternate the
two libraries (and the order within a round), so a burst of noise hits both alike. Only ratios
measured in one run count.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Sample:
    """One measured quantity: every round's value, summarised as min and median."""

    values: list[float]

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def max(self) -> float:
        return max(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def to_dict(self) -> dict[str, Any]:
        return {"min": self.min, "median": self.median, "max": self.max, "n": len(self.values)}


@dataclass
class Figure:
    """One row of the report.

    ``unit`` is how values print (``"s"`` for durations, ``"B"``, ``"/s"``, ``"fd"`` or a free
    label); ``higher_is_better`` flips the ratio's reading (throughput). ``target`` is the issue's
    wording and ``met`` its verdict on this run (None: no target).
    """

    key: str
    title: str
    unit: str
    reference: Sample | None
    fedbearer: Sample | None
    target: str = "—"
    met: bool | None = None
    higher_is_better: bool = False
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """fedbearer ÷ reference, of the medians."""
        if self.reference is None or self.fedbearer is None or self.reference.median == 0:
            return None
        return self.fedbearer.median / self.reference.median

    @property
    def advantage(self) -> float | None:
        """How many times better fedbearer is (>1: better), whatever the direction of the unit."""
        ratio = self.ratio
        if ratio is None or ratio == 0:
            return None
        return ratio if self.higher_is_better else 1.0 / ratio

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "unit": self.unit,
            "reference": None if self.reference is None else self.reference.to_dict(),
            "fedbearer": None if self.fedbearer is None else self.fedbearer.to_dict(),
            "ratio": self.ratio,
            "target": self.target,
            "met": self.met,
            "note": self.note,
            "extra": self.extra,
        }


def interleave(rounds: int, runners: dict[str, Callable[[], float]]) -> dict[str, Sample]:
    """Run each runner once per round, alternating the order; each returns one value."""
    names = list(runners)
    values: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            gc.collect()
            values[name].append(runners[name]())
    return {name: Sample(v) for name, v in values.items()}


async def ainterleave(rounds: int, runners: dict[str, Callable[[], Awaitable[float]]]) -> dict[str, Sample]:
    """`interleave` for coroutine runners, on the running loop."""
    names = list(runners)
    values: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            gc.collect()
            values[name].append(await runners[name]())
    return {name: Sample(v) for name, v in values.items()}


def fmt(value: float | None, unit: str) -> str:
    """A value with an SI prefix suited to it."""
    if value is None:
        return "—"
    if unit == "s":
        for scale, prefix in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")):
            if abs(value) >= scale or scale == 1e-9:
                return f"{value / scale:.3g} {prefix}"
    if unit == "B":
        if abs(value) >= 1024 * 1024:
            return f"{value / 1024 / 1024:.3g} MiB"
        if abs(value) >= 1024:
            return f"{value / 1024:.3g} KiB"
        return f"{value:.0f} B"
    if unit == "/s":
        if value >= 1e6:
            return f"{value / 1e6:.3g} M/s"
        if value >= 1e3:
            return f"{value / 1e3:.3g} k/s"
        return f"{value:.3g} /s"
    if unit == "fd":
        return f"{value:,.0f}"
    return f"{value:.3g} {unit}".rstrip()


def minmed(sample: Sample | None, unit: str) -> str:
    if sample is None:
        return "—"
    return f"{fmt(sample.min, unit)} / {fmt(sample.median, unit)}"
