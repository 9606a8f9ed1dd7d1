"""Timing helpers shared by the benchmarks: medians of alternating runs."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable, Sequence


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def alternate(candidates: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each candidate, run in turn so drift hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            samples[name].append(timed(fn))
    return {name: statistics.median(values) for name, values in samples.items()}


def command(argv: Sequence[str], **kwargs: object) -> Callable[[], object]:
    return lambda: subprocess.run(list(argv), check=True, capture_output=True, **kwargs)


def report(title: str, medians: dict[str, float], baseline: str) -> None:
    print(title)
    for name, seconds in medians.items():
        ratio = seconds / medians[baseline]
        print(f"  {name:<34} {seconds * 1000:9.1f} ms   ratio {ratio:5.2f} x {baseline}")
