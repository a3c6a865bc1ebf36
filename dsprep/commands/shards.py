"""dsprep shards merge OUT"""
from __future__ import annotations

import argparse
import sys

from ._common import print_json

HELP = "shards: merge the manifests of a job array's tasks into OUT/index.json"
DESCRIPTION = """Work on tar shards written by 'dsprep convert ... --to shards' (docs/shards.md).

  dsprep shards merge OUT [--verify]

merge: after every task of a job array (--num-tasks N --task-index I) has ended,
check that all chunk manifests are there and belong to the same conversion, that
every shard they name has the size recorded (--verify: and its sha256), and write
OUT/index.json atomically. A missing manifest names the task to run again. Shard
files no manifest names (left by an older run) are removed.

examples:
  sbatch --array=0-15 prepare.sh   # each: dsprep convert ... --num-tasks 16 --task-index $SLURM_ARRAY_TASK_ID
  dsprep shards merge /data/coco-shards/"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True,
                           help="merge: write OUT/index.json from the manifests of a job array's tasks")
    m = sub.add_parser("merge", help="write OUT/index.json from the tasks' manifests",
                       description="Write OUT/index.json from the manifests the tasks of a job array wrote.")
    m.add_argument("out", metavar="OUT", help="the --out every task wrote into")
    m.add_argument("--verify", action="store_true", help="also check every shard's sha256 (reads them all)")
    m.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    from ..conversion import merge_shards

    index = merge_shards(args.out, verify=args.verify)
    summary = {"out": args.out, "records": index["records"], "splits": index["splits"],
               "shards": len(index["shards"]), "bytes": sum(e["bytes"] for e in index["shards"])}
    if args.json:
        print_json(summary)
        return 0
    splits = ", ".join(f"{k} {v}" for k, v in summary["splits"].items()) or "no splits"
    print(f"merged {summary['shards']} shards ({summary['records']} samples: {splits}) -> {args.out}/index.json",
          file=sys.stdout)
    return 0
