"""Shard preparation time: dsprep ``--to shards`` (local processes, Ray) against WebDataset's
``ShardWriter`` and LitData's ``optimize`` writing the same images, and the floors.

Run after ``gen_imagenet_like.py`` (2,000 JPEGs of ~500x375 in class folders). dsprep's
two backends in the dsprep venv (it has the ``[ray]`` extra)::

    .venv/bin/python scripts/bench/bench_shards_prepare.py --data /tmp/dsprep-bench \\
        --what dsprep ray floor --images keep 256 --rounds 3

and against the peers in their venv (webdataset, litdata; torch for litdata), dsprep from
the checkout in the same interpreter::

    PYTHONPATH=. /work/bench-venvs/peers/bin/python scripts/bench/bench_shards_prepare.py \\
        --data /tmp/dsprep-bench --what dsprep wds litdata floor --images keep 256 --rounds 3

Every method writes the same 2,000 images with their class label, into a fresh folder
under ``--scratch`` (removed after each run), with ``--workers`` processes where it has
them:

- dsprep: ``convert("imagenet", DATA/train, "shards", OUT)`` (the tree is listed too),
  ``--images keep`` or ``--max-side 256 --quality 90``; ``ray``: the same with
  ``backend="ray"`` on a local Ray instance started once beforehand (its start-up time is
  printed apart);
- wds: ``webdataset.ShardWriter`` (one process: it has no workers), samples
  ``{"__key__", "jpg", "cls"}``; with 256 the JPEG is decoded, resized and re-encoded in
  the loop as dsprep does (draft to >= 2x, bilinear, quality 90);
- litdata: ``litdata.optimize(fn, files, out, num_workers=W, chunk_bytes="64MB")``, ``fn``
  returning ``{"image": bytes, "label": int}`` (bytes re-encoded as above with 256);
- floor: one process, no framework: ``tarfile`` appending each file's bytes (keep), or the
  decode-resize-encode loop alone, writing nothing (256).

Methods alternate within each round; the median of the rounds is reported (wall time, and
CPU seconds of the process and its pool workers), with the load average before and after. Compare ratios, not absolute times (the machine is shared).
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tarfile
import time
from pathlib import Path

from PIL import Image


def _cpu() -> float:
    """CPU seconds of this process and of its children that have ended (pool workers after
    their pool closed); Ray's workers are not children of the driver and are not counted."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _files(data: Path) -> list[tuple[str, int]]:
    root = data / "train"
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    return [(str(f), k) for k, c in enumerate(classes) for f in sorted((root / c).iterdir())]


def _resized_jpeg(path: str, side: int = 256, quality: int = 90) -> bytes:
    with Image.open(path) as im:
        im.draft("RGB", (2 * side, 2 * side))
        im = im.convert("RGB")
        s = side / max(im.size)
        if s < 1:
            im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality)
        return buf.getvalue()


def run_dsprep(data: Path, out: Path, images: str, workers: int, backend: str = "local") -> int:
    from dsprep.conversion import convert

    opts = {"workers": workers, "backend": backend}
    if images != "keep":
        opts.update(max_side=int(images), quality=90)
    summary = convert("imagenet", data / "train", "shards", out, workers=workers, progress=False,
                      images="keep" if images == "keep" else "copy", write_options=opts)
    return summary["images"]


def run_wds(data: Path, out: Path, images: str, workers: int) -> int:
    import webdataset as wds

    out.mkdir(parents=True)
    n = 0
    with wds.ShardWriter(str(out / "shard-%06d.tar"), maxsize=10 ** 9, verbose=0) as sink:
        for i, (path, label) in enumerate(_files(data)):
            jpg = Path(path).read_bytes() if images == "keep" else _resized_jpeg(path, int(images))
            sink.write({"__key__": f"{i:06d}", "jpg": jpg, "cls": label})
            n += 1
    return n


def _litdata_keep(item: tuple[str, int]) -> dict:
    return {"image": Path(item[0]).read_bytes(), "label": item[1]}


def _litdata_256(item: tuple[str, int]) -> dict:
    return {"image": _resized_jpeg(item[0], 256), "label": item[1]}


def run_litdata(data: Path, out: Path, images: str, workers: int) -> int:
    import litdata

    items = _files(data)
    fn = _litdata_keep if images == "keep" else _litdata_256
    litdata.optimize(fn=fn, inputs=items, output_dir=str(out), num_workers=workers, chunk_bytes="64MB",
                     mode="overwrite")
    return len(items)


def run_floor(data: Path, out: Path, images: str, workers: int) -> int:
    items = _files(data)
    if images != "keep":
        for path, _ in items:
            _resized_jpeg(path, int(images))
        return len(items)
    out.mkdir(parents=True)
    with tarfile.open(out / "all.tar", "w", format=tarfile.USTAR_FORMAT) as tf:
        for path, _ in items:
            tf.add(path, arcname=Path(path).name)
    return len(items)


METHODS = {"dsprep": run_dsprep, "ray": lambda d, o, i, w: run_dsprep(d, o, i, w, backend="ray"),
           "wds": run_wds, "litdata": run_litdata, "floor": run_floor}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/tmp/dsprep-bench"))
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/dsprep-bench-shards"))
    ap.add_argument("--what", nargs="+", default=["dsprep", "ray", "floor"], choices=list(METHODS))
    ap.add_argument("--images", nargs="+", default=["keep", "256"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    if "ray" in args.what:
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        print(f"ray.init(num_cpus={args.workers}): {time.perf_counter() - t0:.1f} s (not in the times below)")
    times: dict[tuple[str, str], list[float]] = {}
    cpus: dict[tuple[str, str], list[float]] = {}
    loads = [os.getloadavg()[0]]
    for r in range(args.rounds):
        order = args.what if r % 2 == 0 else list(reversed(args.what))
        for images in args.images:
            for what in order:
                out = args.scratch / f"{what}-{images}"
                shutil.rmtree(out, ignore_errors=True)
                out.parent.mkdir(parents=True, exist_ok=True)
                t0, c0 = time.perf_counter(), _cpu()
                n = METHODS[what](args.data, out, images, args.workers)
                dt, cpu = time.perf_counter() - t0, _cpu() - c0
                times.setdefault((what, images), []).append(dt)
                cpus.setdefault((what, images), []).append(cpu)
                print(f"round {r} {what:8s} images={images:5s} {n} images {dt:7.2f} s  CPU {cpu:6.2f} s "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
                shutil.rmtree(out, ignore_errors=True)
        loads.append(os.getloadavg()[0])
    print(f"\nload average (1 min) from {min(loads):.1f} to {max(loads):.1f}; {args.workers} workers; "
          f"python {sys.version.split()[0]}")
    for images in args.images:
        base = statistics.median(times[("dsprep", images)]) if ("dsprep", images) in times else None
        for what in args.what:
            med = statistics.median(times[(what, images)])
            cpu = statistics.median(cpus[(what, images)])
            ratio = f"  {med / base:5.2f}x dsprep's time" if base else ""
            cpu_text = "n/a (Ray's workers)" if what == "ray" else f"{cpu:6.2f} s"
            print(f"images={images:5s} {what:8s} median {med:7.2f} s  {2000 / med if med else 0:7.0f} img/s  "
                  f"CPU {cpu_text}{ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
