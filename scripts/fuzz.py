#!/usr/bin/env python
"""Long fuzz runs of dsprep's parsers (the engine is tests/fuzzing.py; tests/test_fuzz.py runs a
few hundred derandomised inputs per parser in the suite).

    python scripts/fuzz.py --parser voc --count 100000 --seed 1
    python scripts/fuzz.py --parser all --count 1000 --seed 7 --out fuzz-findings/

Each input is a valid seed document (VOC XML, COCO JSON, COCO panoptic JSON, Cityscapes
polygons.json) after a few structure-aware mutations; it is parsed, validated, written to
its own format and another, and parsed back. Only dsprep's own errors (DsprepError) may
escape. A foreign exception is printed once per kind (type and innermost frame), and its
input saved to OUT/<parser>-<n>.bin with the traceback beside it (.txt). Inputs that are
written and then refused when parsed back are counted (``refused_back``) and the first few
printed: dsprep should never write what it then refuses.

Each input runs under a time limit (--input-timeout) and the process under an address-space
limit (--memory-gib), so that a hang or a runaway allocation is a finding, not a dead run.
Exit status: 0 when nothing foreign escaped, 1 otherwise.
"""
from __future__ import annotations

import argparse
import logging
import random
import resource
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fuzzing import TARGETS, RandomDraw, describe, make_input, run_one  # noqa: E402


class InputTimeout(Exception):
    """One input ran past --input-timeout."""


def _alarm(signum, frame):
    raise InputTimeout("the input ran past --input-timeout")


def fuzz(name: str, count: int, seed: int, out: Path, work: Path, input_timeout: int, show: int) -> int:
    target = TARGETS[name]
    rng = random.Random(f"{name}:{seed}")
    counts = {"inputs": 0, "parsed": 0, "written": 0, "reread": 0, "refused_back": 0, "foreign": 0}
    kinds: dict[str, int] = {}
    refused_shown = 0
    t0 = time.perf_counter()
    for n in range(count):
        data = make_input(target, RandomDraw(rng))
        signal.alarm(input_timeout)
        try:
            res = run_one(target, data, work)
        except InputTimeout as err:  # raised outside run_one's own try
            from fuzzing import Outcome

            res = Outcome(error=err, stage="timeout")
        finally:
            signal.alarm(0)
        counts["inputs"] += 1
        counts["parsed"] += res.parsed
        counts["written"] += res.written
        counts["reread"] += res.reread
        if res.refused_back:
            counts["refused_back"] += 1
            if refused_shown < show:
                refused_shown += 1
                print(f"[{name} #{n}] written, then refused when read back: {res.refused_back[0][:300]}")
                (out / f"{name}-refused-{n}.bin").write_bytes(data)
        if res.error is not None:
            counts["foreign"] += 1
            err = res.error
            tb = traceback.extract_tb(err.__traceback__)
            key = f"{type(err).__name__} at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else type(err).__name__
            kinds[key] = kinds.get(key, 0) + 1
            if kinds[key] == 1:
                print(f"[{name} #{n}] FOREIGN during {res.stage}: {describe(err)}")
                (out / f"{name}-{n}.bin").write_bytes(data)
                (out / f"{name}-{n}.txt").write_text(
                    f"stage: {res.stage}\n" + "".join(traceback.format_exception(err)), encoding="utf-8")
        if (n + 1) % 10000 == 0:
            print(f"[{name}] {n + 1} inputs, {time.perf_counter() - t0:.0f} s: {counts}", flush=True)
    secs = time.perf_counter() - t0
    print(f"[{name}] done: {counts} in {secs:.0f} s ({secs / max(1, count) * 1000:.1f} ms per input)")
    for key, k in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"[{name}]   {k} x {key}")
    return counts["foreign"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parser", choices=[*TARGETS, "all"], required=True, help="which parser to fuzz")
    p.add_argument("--count", type=int, default=10000, help="inputs per parser")
    p.add_argument("--seed", type=int, default=0, help="seed of the mutations (same seed, same inputs)")
    p.add_argument("--out", type=Path, default=Path("fuzz-findings"),
                   help="where inputs that raised something foreign are saved")
    p.add_argument("--input-timeout", type=int, default=30, metavar="S", help="seconds one input may take")
    p.add_argument("--memory-gib", type=float, default=4.0, help="address-space limit of this process")
    p.add_argument("--show", type=int, default=5, help="refused-back inputs printed per parser")
    args = p.parse_args(argv)
    logging.getLogger("dsprep").setLevel(logging.CRITICAL)  # skipped-item warnings: expected, thousands
    limit = int(args.memory_gib * 2 ** 30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.signal(signal.SIGALRM, _alarm)
    args.out.mkdir(parents=True, exist_ok=True)
    shm = Path("/dev/shm")
    foreign = 0
    with tempfile.TemporaryDirectory(prefix="dsprep-fuzz-", dir=shm if shm.is_dir() else None) as tmp:
        for name in (TARGETS if args.parser == "all" else [args.parser]):
            foreign += fuzz(name, args.count, args.seed, args.out, Path(tmp), args.input_timeout, args.show)
    return 1 if foreign else 0


if __name__ == "__main__":
    sys.exit(main())
