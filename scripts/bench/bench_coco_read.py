"""Read a COCO train2017-sized instances JSON: dsprep vs pycocotools vs bare orjson.

Each contender runs as its own fresh process (whole-process time: interpreter
start, imports, read, build); its peak RSS comes from ``wait4``'s rusage of
that very child. Contenders are interleaved over ``--repeat`` rounds and the
median is reported, so a busy machine hurts all of them alike.

    python scripts/bench/gen_coco_train2017.py /tmp/coco_bench/instances_train2017.json
    python scripts/bench/bench_coco_read.py /tmp/coco_bench/instances_train2017.json [--repeat 3]

Targets (issue 2): dsprep <= 0.35x pycocotools' time and <= 0.5x its peak memory.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def contenders(path: str) -> dict[str, list[str]]:
    py = sys.executable
    return {
        "pycocotools COCO(file)": [py, "-c", "import sys, contextlib, io\n"
                                   "from pycocotools.coco import COCO\n"
                                   "with contextlib.redirect_stdout(io.StringIO()):\n"
                                   f"    c = COCO({path!r})\n"
                                   "print(len(c.imgs), len(c.anns))"],
        "orjson.loads (bare)": [py, "-c", f"import orjson\nd = orjson.loads(open({path!r}, 'rb').read())\n"
                                "print(len(d['images']), len(d['annotations']))"],
        "orjson.loads, GC paused": [py, "-c", "import gc, orjson\ngc.disable()\n"
                                    f"d = orjson.loads(open({path!r}, 'rb').read())\n"
                                    "print(len(d['images']), len(d['annotations']))"],
        "dsprep info coco FILE --json": [py, "-m", "dsprep", "info", "coco", path, "--json"],
    }


def run_once(cmd: list[str]) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds (user + sys), peak RSS (MiB) and stdout of one fresh process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{cmd[:3]} failed ({proc.returncode}):\n{err.decode()[-2000:]}")
    return dt, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.decode()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", help="instances JSON (gen_coco_train2017.py output)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    cmds = contenders(os.path.abspath(args.json))
    times: dict[str, list[float]] = {k: [] for k in cmds}
    cpus: dict[str, list[float]] = {k: [] for k in cmds}
    peaks: dict[str, list[float]] = {k: [] for k in cmds}
    loads = []
    for r in range(args.repeat):
        loads.append(os.getloadavg()[0])
        for name, cmd in cmds.items():
            dt, cpu, peak, out = run_once(cmd)
            times[name].append(dt)
            cpus[name].append(cpu)
            peaks[name].append(peak)
            if name.startswith("dsprep"):
                summary = json.loads(out)
                counts = (summary["images"], summary["objects"])
            print(f"round {r + 1}: {name:32s} {dt:7.2f} s wall {cpu:7.2f} s CPU {peak:8.0f} MiB", file=sys.stderr)
    ref_t = statistics.median(times["pycocotools COCO(file)"])
    ref_m = statistics.median(peaks["pycocotools COCO(file)"])
    ref_c = statistics.median(cpus["pycocotools COCO(file)"])
    size = os.path.getsize(args.json) / 1e6
    print(f"file: {args.json} ({size:.0f} MB; dsprep read {counts[0]} images, {counts[1]} objects)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"load average at the start of each round: {', '.join(f'{x:.2f}' for x in loads)}")
    print(f"median of {args.repeat} fresh processes per contender, interleaved\n")
    print(f"| {'contender':32s} | wall (s) | x pycocotools | CPU (s) | x pycocotools | peak RSS (MiB) "
          "| x pycocotools |")
    print(f"|{'-' * 34}|---------:|--------------:|--------:|--------------:|---------------:|--------------:|")
    for name in cmds:
        t, c, m = statistics.median(times[name]), statistics.median(cpus[name]), statistics.median(peaks[name])
        print(f"| {name:32s} | {t:8.2f} | {t / ref_t:13.2f} | {c:7.2f} | {c / ref_c:13.2f} | {m:14.0f} "
              f"| {m / ref_m:13.2f} |")
    ours = "dsprep info coco FILE --json"
    t, c, m = statistics.median(times[ours]), statistics.median(cpus[ours]), statistics.median(peaks[ours])
    print(f"\ntargets: time <= 0.35x: wall {t / ref_t:.2f}x, CPU {c / ref_c:.2f}x; "
          f"peak memory <= 0.5x: {m / ref_m:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
