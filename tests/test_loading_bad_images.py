"""Issue 10 item 5, the loader: a bad image raises dsprep's own error with ``num_workers > 0``
too (torch turned it into a RuntimeError carrying the worker's traceback), and ``on_error="skip"``
skips every kind of bad image, the decompression bomb included (it escaped as Pillow's error).
Both JPEG decoders (libjpeg-turbo with the ``fast`` extra, Pillow without) name every one."""
from __future__ import annotations

import os

import pytest

from dsprep.errors import MalformedFileError
from dsprep.loading import make_loader

from test_bad_input import _png_header
from test_loaders import make_dataset

def _jpeg_bomb(p) -> None:
    """The JPEG with its frame header saying 65535 x 65535 (past the decompression-bomb limit)."""
    data = bytearray(p.read_bytes())
    sof = data.index(b"\xff\xc0")  # baseline frame header: length, precision, height, width
    data[sof + 5:sof + 9] = b"\xff\xff\xff\xff"
    p.write_bytes(bytes(data))


BAD = {
    1: lambda p: p.write_bytes(_png_header(100_000, 100_000)),  # past the decompression-bomb limit
    2: _jpeg_bomb,  # the same in a JPEG header (which the fast path reads first)
    4: lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),  # truncated JPEG
    6: lambda p: p.write_bytes(os.urandom(64)),  # not an image
    8: lambda p: p.write_bytes(b""),  # empty
    9: lambda p: (p.unlink(), p.mkdir()),  # a folder where the image should be
}


@pytest.mark.parametrize("workers", [0, 2])
def test_a_bad_image_raises_dsprep_error_from_a_worker_too(tmp_path, workers, decoder):
    ds = make_dataset(tmp_path)
    (tmp_path / "img_3.jpg").write_bytes(b"not an image")
    loader = make_loader(ds, batch_size=4, task="classification", size=8, num_workers=workers, shuffle=False,
                         persistent_workers=False)
    with pytest.raises(MalformedFileError) as info:
        for _ in loader:
            pass
    err = info.value
    assert type(err) is MalformedFileError and err.where.endswith("img_3.jpg")
    assert err.message.startswith("not a readable image file") and "Traceback" not in str(err)


@pytest.mark.parametrize("workers", [0, 2])
def test_skip_skips_every_kind_of_bad_image(tmp_path, workers, decoder):
    ds = make_dataset(tmp_path)
    for i, spoil in BAD.items():
        spoil(tmp_path / f"img_{i}.jpg")
    loader = make_loader(ds, batch_size=4, task="detection", augment="eval", min_size=16, on_error="skip",
                         num_workers=workers, shuffle=False, persistent_workers=False)
    seen = [t["image_id"] for _, targets in loader for t in targets]  # detection: one target per image
    assert sorted(seen) == sorted(f"img_{i}" for i in range(12) if i not in BAD)
    skipped = {s.image_id: s.message for s in loader.skipped}
    assert sorted(skipped) == sorted(f"img_{i}" for i in BAD)
    assert "decompression-bomb limit" in skipped["img_1"] and "not a readable image file" in skipped["img_6"]
    assert "decompression-bomb limit" in skipped["img_2"]
