"""Layer rules, module by module, each in a fresh interpreter: the record, format, conversion
and metric layers import no torch (nor matplotlib), and formats never import each other."""
from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import dsprep.eval
import dsprep.formats

# Every format module, found on disk: one added later is checked without editing this list.
FORMAT_MODULES = sorted(f"dsprep.formats.{m.name}" for m in pkgutil.iter_modules(dsprep.formats.__path__))
EVAL_MODULES = sorted(f"dsprep.eval.{m.name}" for m in pkgutil.iter_modules(dsprep.eval.__path__))
# The modules whose docstrings (and docs/design) promise no torch.
CORE_MODULES = ["dsprep", "dsprep._io", "dsprep.convert", "dsprep.errors", "dsprep.formats", "dsprep.imageio",
                "dsprep.masks", "dsprep.records", "dsprep.splitting", "dsprep.synth", "dsprep.validate",
                "dsprep.eval"]
NO_MATPLOTLIB = ["dsprep.records", "dsprep.convert", "dsprep.validate", *FORMAT_MODULES]

_PROBE = ("import importlib, json, sys; importlib.import_module(sys.argv[1]); "
          "print(json.dumps(sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'matplotlib') "
          "or k.startswith('dsprep.formats.'))))")


def _imported_by(module: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", _PROBE, module], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_module_lists_are_found():
    assert {"dsprep.formats.coco", "dsprep.formats.voc", "dsprep.formats.imagenet"} <= set(FORMAT_MODULES)
    assert "dsprep.eval.detection" in EVAL_MODULES


@pytest.mark.parametrize("module", FORMAT_MODULES + EVAL_MODULES + CORE_MODULES)
def test_module_imports_no_torch_and_formats_no_other_format(module):
    loaded = _imported_by(module)
    assert not [m for m in loaded if m.split(".")[0] == "torch"], f"{module} imports torch"
    if module in NO_MATPLOTLIB:
        assert not [m for m in loaded if m.split(".")[0] == "matplotlib"], f"{module} imports matplotlib"
    if module in FORMAT_MODULES:
        # private helpers (dsprep.formats._cityscapes_labels) may be shared; formats may not
        others = [m for m in loaded if m.startswith("dsprep.formats.") and m != module
                  and not m.rsplit(".", 1)[1].startswith("_")]
        assert others == [], f"{module} imports {others}: conversions go through records, never format to format"
