"""Timing shared by the benchmark scripts: contenders run round-robin in one process, best of N.

Imports nothing of dsprep, so a script can use it from a peers' virtualenv too.
"""
from __future__ import annotations

import gc
import os
import time
from typing import Callable, Sequence


def interleaved(fns: Sequence[Callable[[], object]], repeat: int) -> list[tuple[float, float]]:
    """``(best wall s, best CPU s)`` of each of ``fns``, run round-robin (fn0, fn1, ..., fn0, fn1, ...)
    so that a change in the machine's load during the run reaches every contender alike."""
    walls: list[list[float]] = [[] for _ in fns]
    cpus: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            gc.collect()
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            walls[k].append(time.perf_counter() - t0)
            cpus[k].append(time.process_time() - c0)
    return [(min(w), min(c)) for w, c in zip(walls, cpus)]


def print_rate_table(names: Sequence[str], results: Sequence[tuple[float, float]], n: int,
                     base: str = "x floor (1 process)") -> None:
    """A markdown table of :func:`interleaved`'s results: wall s, items/s over ``n``, the ratio to the
    first row, CPU s; with the load average after."""
    print(f"| what | wall s | images/s | {base} | CPU s (this process) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    first = results[0][0]
    for name, (wall, cpu) in zip(names, results):
        print(f"| {name} | {wall:.2f} | {n / wall:,.0f} | {wall / first:.2f} | {cpu:.2f} |")
    print(f"load after: {os.getloadavg()}")
