"""The public surface is pinned: a name added to or removed from dsprep.__all__ is a decision."""
from __future__ import annotations

import subprocess
import sys

import dsprep

PUBLIC = ["BoxFormat", "Category", "Dataset", "DatasetNotFoundError", "DsprepError", "FORMATS", "FormatError",
          "Instances", "InvalidAnnotationError", "MalformedFileError", "MissingFileError", "OutputExistsError",
          "OutputLockedError", "PathEscapeError", "Record", "UnknownNameError", "convert", "convert_boxes",
          "detect_format", "get_format", "load", "make_loader", "parse", "to_device"]


def test_all_is_sorted_and_pinned():
    assert dsprep.__all__ == sorted(dsprep.__all__)
    assert dsprep.__all__ == sorted(PUBLIC)
    for name in dsprep.__all__:
        assert getattr(dsprep, name) is not None
    assert set(dsprep.__all__) <= set(dir(dsprep))
    assert dsprep.__version__ == "0.1.0"  # metadata, not in __all__
    # dsprep.convert is the function; the module that defines it is dsprep.conversion
    from dsprep.conversion import convert

    assert dsprep.convert is convert


def test_format_registry_is_read_only_and_complete():
    assert list(dsprep.FORMATS) == ["coco", "coco-panoptic", "voc", "lvis", "kitti", "imagenet", "cityscapes",
                                    "shards", "labelme", "cvat"]
    for name, mod in dsprep.FORMATS.items():
        for attr in ("NAME", "DESCRIPTION", "detect", "parse", "write"):
            assert hasattr(mod, attr), f"{name} lacks {attr}"
        assert mod.NAME == name
    try:
        dsprep.FORMATS["x"] = None  # type: ignore[index]
    except TypeError:
        pass
    else:
        raise AssertionError("FORMATS accepted an assignment")


def test_torch_layer_is_lazy():
    code = ("import sys, dsprep; assert 'torch' not in sys.modules; "
            "dsprep.to_device; assert 'torch' in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
