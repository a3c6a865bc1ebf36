"""Issue 10 item 8: structure-aware fuzzing of the VOC XML, COCO JSON, COCO panoptic JSON,
Cityscapes polygons.json, LVIS JSON, KITTI label-row, YOLO YAML and label-row, LabelMe JSON,
CVAT XML, shards index.json and shard sample parsers (the engine: tests/fuzzing.py; long runs: scripts/fuzz.py).

Derandomised, so CI runs the same inputs every time; a failure shrinks to a small input and
hypothesis prints the draws that make it. Each input is parsed as ``dsprep info`` does,
validated as ``dsprep validate`` does and, where it parses, written to its own format and another
and parsed back: only dsprep's own errors may escape, and nothing written may be refused back.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzzing import TARGETS, HypothesisDraw, describe, make_input, run_one

EXAMPLES = 200  # per parser: about 3-8 s each on one core


@pytest.fixture(autouse=True)
def _quiet():
    """Parsers log one warning per skipped item; thousands of them are expected here."""
    logger = logging.getLogger("dsprep")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


@pytest.mark.parametrize("name", list(TARGETS))
@settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None, print_blob=False,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_only_dsprep_errors_escape(name, data):
    target = TARGETS[name]
    raw = make_input(target, HypothesisDraw(data))
    with tempfile.TemporaryDirectory(prefix="dsprep-fuzz-") as tmp:
        out = run_one(target, raw, Path(tmp))
    assert out.error is None, f"{name}, during {out.stage}: {describe(out.error)}\ninput: {raw[:2000]!r}"
    assert not out.refused_back, f"{name}: written, then refused when read back: {out.refused_back}"


def test_the_seeds_parse_write_and_read_back():
    """The unmutated seeds exercise every stage (a seed that does not parse would fuzz nothing)."""
    from fuzzing import _dump_json

    for name, target in TARGETS.items():
        seed = target.seed()
        raw = seed if isinstance(seed, bytes) else _dump_json(seed)
        with tempfile.TemporaryDirectory() as tmp:
            out = run_one(target, raw, Path(tmp))
        assert out.error is None and out.parsed and out.written == out.reread == len(target.write_to), (name, out)
