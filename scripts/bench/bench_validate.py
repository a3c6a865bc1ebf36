"""`dsprep validate` (without --deep) vs `dsprep info` on a VOC2007-sized tree.

Target (issue 6): validate within 2x of info. Both run as whole processes
(`python -m dsprep ...`), best of --repeat, in the same run. The tree comes from
gen_voc.py; this script adds one solid-colour JPEG per XML at the XML's own size
(so validate's header check finds nothing to report) unless they exist.

Usage: python scripts/bench/bench_validate.py /tmp/bench-voc/VOC2007 [--repeat 3] [--workers N]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path


def ensure_images(root: Path) -> int:
    from PIL import Image

    made = 0
    (root / "JPEGImages").mkdir(exist_ok=True)
    for xml in sorted((root / "Annotations").glob("*.xml")):
        jpg = root / "JPEGImages" / (xml.stem + ".jpg")
        if jpg.exists():
            continue
        text = xml.read_text()
        w = int(re.search(r"<width>(\d+)</width>", text).group(1))
        h = int(re.search(r"<height>(\d+)</height>", text).group(1))
        Image.new("RGB", (w, h), (made % 255, 90, 160)).save(jpg, quality=50)
        made += 1
    return made


def timed(cmd: list[str]) -> tuple[float, float, str]:
    t0 = time.perf_counter()
    r0 = os.times()
    out = subprocess.run(cmd, capture_output=True, text=True)
    r1 = os.times()
    wall = time.perf_counter() - t0
    cpu = (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)
    return wall, cpu, out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    made = ensure_images(args.root)
    w = [] if args.workers is None else ["--workers", str(args.workers)]
    py = [sys.executable, "-m", "dsprep"]
    rows = {"info": [], "validate": []}
    for _ in range(args.repeat):
        rows["info"].append(timed(py + ["info", "voc", str(args.root), "--json"] + w))
        rows["validate"].append(timed(py + ["validate", "voc", str(args.root), "--json"] + w))
    best = {k: (min(r[0] for r in v), min(r[1] for r in v)) for k, v in rows.items()}
    report = json.loads(rows["validate"][-1][2])
    print(json.dumps({"images_written": made, "load": os.getloadavg(),
                      "info_wall_s": round(best["info"][0], 3), "info_cpu_s": round(best["info"][1], 3),
                      "validate_wall_s": round(best["validate"][0], 3),
                      "validate_cpu_s": round(best["validate"][1], 3),
                      "wall_ratio": round(best["validate"][0] / best["info"][0], 2),
                      "cpu_ratio": round(best["validate"][1] / best["info"][1], 2),
                      "problems": report["counts"]}, indent=1))


if __name__ == "__main__":
    main()
