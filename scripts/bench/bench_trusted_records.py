"""What the trusted record constructors cost against the hand-written build they replaced.

``Record._trusted`` / ``Instances._trusted`` (generated from the dataclass fields, issue 11)
against ``object.__new__`` + a hand-written ``__dict__`` literal (what coco, voc and
cityscapes did before): one ``Instances`` of three objects and one ``Record``, as VOC's
``_records_from_chunk`` builds them. The two alternate, best of ``--rounds`` x 3 timeit
repeats. Run from the repository root::

    python scripts/bench/bench_trusted_records.py [--rounds 7]
"""
from __future__ import annotations

import argparse
import os
import sys
import timeit
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dsprep.records import Instances, Record  # noqa: E402

B, L, F = np.zeros((3, 4)), np.zeros(3, np.int64), np.zeros(3, bool)
IDS, AREA = np.full(3, -1, np.int64), np.full(3, np.nan)


def by_hand() -> Record:
    inst = object.__new__(Instances)
    inst.__dict__ = {"boxes": B, "labels": L, "iscrowd": F, "difficult": F, "ids": IDS, "area": AREA,
                     "segmentation": None, "keypoints": None, "extra": None}
    rec = object.__new__(Record)
    rec.__dict__ = {"id": "x", "path": "p", "width": 1, "height": 2, "split": None, "label": None, "instances": inst,
                    "mask_path": None, "instance_mask_path": None, "captions": [], "source_id": None, "extra": {}}
    return rec


def trusted(new_inst=Instances._trusted, new_rec=Record._trusted) -> Record:
    inst = new_inst(boxes=B, labels=L, iscrowd=F, difficult=F, ids=IDS, area=AREA, segmentation=None, extra=None)
    return new_rec(id="x", path="p", width=1, height=2, split=None, instances=inst, mask_path=None,
                   instance_mask_path=None, extra={})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--number", type=int, default=20000)
    args = ap.parse_args()
    assert vars(by_hand()).keys() == vars(trusted()).keys() and by_hand() == trusted()
    best = {"by hand (__new__ + __dict__)": [], "Record._trusted / Instances._trusted": []}
    for _ in range(args.rounds):
        for name, fn in zip(best, (by_hand, trusted)):
            best[name].append(min(timeit.repeat(fn, number=args.number, repeat=3)) / args.number * 1e6)
    print(f"load average {os.getloadavg()[0]:.1f}; best of {args.rounds} rounds x 3, one Instances + one Record:")
    base = min(best["by hand (__new__ + __dict__)"])
    for name, v in best.items():
        print(f"  {name}: {min(v):.3f} us ({min(v) / base:.3f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
