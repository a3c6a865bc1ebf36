"""Plain POSIX ustar tar, written byte for byte the same every time, and read at known offsets.

The shard format (``docs/shards.md``) stores samples as consecutive tar
members. :class:`TarShardWriter` writes one shard: fixed headers (``mtime=0``,
``uid=gid=0``, empty owner names, mode ``0o644``, regular files), data padded to
512 bytes, two zero blocks at the end and no record-size padding, into a
temporary file renamed into place when complete, so a reader (or a task
re-run after a crash) never sees half a shard. :func:`read_header` reads one
member header at a byte offset (the index gives every sample's offset), checking
its checksum. :func:`unpack_files` extracts members listed by a parsed shards
dataset back into files, for the writers of other formats.

No torch here, and no format: formats and the conversion layer both use it.
"""
from __future__ import annotations

import hashlib
import os
import tarfile
import uuid
from pathlib import Path
from typing import BinaryIO, Iterable, Mapping, Sequence

from ._paths import output_path
from .errors import MalformedFileError, MissingFileError

__all__ = ["BLOCK", "TarShardWriter", "padded", "read_header", "unpack_files"]

BLOCK = 512
_END = b"\0" * (2 * BLOCK)


def padded(size: int) -> int:
    """``size`` rounded up to whole 512-byte blocks."""
    return -(-size // BLOCK) * BLOCK


# The fixed fields of every header (mode 0644, uid/gid 0, mtime 0, regular file, "ustar\0" "00",
# empty owner names and device numbers), laid out as tarfile.TarInfo.tobuf(USTAR_FORMAT) writes them.
_MODE_IDS = b"0000644\0" b"0000000\0" b"0000000\0"
_MTIME = b"00000000000\0"
_AFTER_CHKSUM = b"0" + b"\0" * 100 + b"ustar\x0000" + b"\0" * 64 + b"\0" * 16
_BLANK_CHKSUM = b" " * 8


def header(name: str, size: int) -> bytes:
    """The 512-byte ustar header of a regular file ``name`` of ``size`` bytes, with fixed metadata:
    byte for byte what ``tarfile`` writes, built directly (tarfile's general path cost a third of
    writing a shard). A name over 100 bytes, or a size over 8 GiB, goes through tarfile."""
    raw = name.encode("utf-8")
    if len(raw) <= 100 and size < 8 ** 11:
        head = raw.ljust(100, b"\0") + _MODE_IDS + b"%011o\0" % size + _MTIME
        tail = _AFTER_CHKSUM + b"\0" * 155 + b"\0" * 12
        chksum = 256 + sum(head) + sum(tail)  # the checksum field counts as eight spaces
        return head + b"%06o\0 " % chksum + tail
    return _tarfile_header(name, size)


def _tarfile_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")


def member_bytes(members: Sequence[tuple[str, bytes]]) -> int:
    """How many bytes ``members`` take in a tar: a header and padded data each."""
    return sum(BLOCK + padded(len(data)) for _, data in members)


class TarShardWriter:
    """Write one tar shard at ``path``, through ``path``'s temporary sibling renamed on :meth:`close`.

    Samples are added whole (:meth:`add`); the writer keeps, per sample, the
    byte offset of its first header and its length (headers, data and padding),
    and the sha256 of everything written.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{uuid.uuid4().hex[:8]}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f: BinaryIO = open(self.tmp, "wb")
        self._sha = hashlib.sha256()
        self.offset = 0
        self.members: list[list] = []  # [key, offset, length] per sample

    def _write(self, data: bytes) -> None:
        self._f.write(data)
        self._sha.update(data)
        self.offset += len(data)

    def add(self, key: str, members: Sequence[tuple[str, bytes]]) -> None:
        """Append one sample: ``members`` are ``(name, data)`` in the order they are to be stored."""
        start = self.offset
        for name, data in members:
            self._write(header(name, len(data)))
            self._write(data)
            pad = padded(len(data)) - len(data)
            if pad:
                self._write(b"\0" * pad)
        self.members.append([key, start, self.offset - start])

    def size_after(self, sample_bytes: int) -> int:
        """The shard's size on disk if a sample of ``sample_bytes`` were added and the shard closed."""
        return self.offset + sample_bytes + len(_END)

    def close(self) -> dict:
        """Finish the shard, rename it into place; returns ``{"bytes", "sha256", "samples", "members"}``."""
        self._write(_END)
        self._f.close()  # no fsync: the rename guards against a killed process, as a reader needs
        os.replace(self.tmp, self.path)
        return {"samples": len(self.members), "bytes": self.offset, "sha256": self._sha.hexdigest(),
                "members": self.members}

    def abort(self) -> None:
        """Drop the temporary file (on error)."""
        self._f.close()
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


def read_header(f: BinaryIO, offset: int, where: str) -> tuple[str, int]:
    """``(name, size)`` of the member whose header starts at ``offset`` of the open tar ``f``.

    Raises:
        MalformedFileError: no valid ustar header there (truncated, zeros, bad checksum),
            naming ``where`` (the shard) and the offset.
    """
    f.seek(offset)
    buf = f.read(BLOCK)
    try:
        info = tarfile.TarInfo.frombuf(buf, "utf-8", "surrogateescape")
    except tarfile.HeaderError as err:
        raise MalformedFileError(where, f"no valid tar header at byte {offset} ({err}); expected a member "
                                        "of the sample the index names there: the shard is corrupt or not the "
                                        "one index.json describes (re-run the conversion or the merge)") from None
    if not info.isreg():
        raise MalformedFileError(where, f"member {info.name!r} at byte {offset} is not a regular file")
    return info.name, int(info.size)


def read_member(f: BinaryIO, offset: int, name: str, where: str) -> tuple[int, int]:
    """Check that the member at ``offset`` is called ``name``; returns ``(data_offset, size)``.

    Raises:
        MalformedFileError: another name (or no header) there.
    """
    found, size = read_header(f, offset, where)
    if found != name:
        raise MalformedFileError(where, f"byte {offset}: expected member {name!r}, found {found!r}; "
                                        "index.json does not match this shard (re-run the merge, or the task "
                                        "that wrote the shard)")
    return offset + BLOCK, size


def unpack_files(root: str | os.PathLike, files: Mapping[str, Sequence], dest: str | os.PathLike,
                 only: Iterable[str] | None = None) -> int:
    """Extract packed files: ``files`` maps a relative path to ``[shard, data_offset, size, kind]``.

    Each lands at ``dest/<relative path>``, checked to stay inside ``dest``
    (:func:`dsprep._paths.output_path`). ``only`` limits the kinds extracted (``{"file"}``: masks and other
    files, not images). Returns how many were written. Reads each shard once, in
    offset order.
    """
    root, dest = Path(root), Path(dest)
    kinds = None if only is None else set(only)
    by_shard: dict[str, list[tuple[int, int, str]]] = {}
    for rel, (shard, offset, size, kind) in files.items():
        if kinds is None or kind in kinds:
            by_shard.setdefault(shard, []).append((int(offset), int(size), rel))
    n = 0
    for shard, entries in by_shard.items():
        path = root / shard
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise MissingFileError(str(path), "shard named by index.json not found") from None
        with f:
            for offset, size, rel in sorted(entries):
                f.seek(offset)
                data = f.read(size)
                if len(data) != size:
                    raise MalformedFileError(str(path), f"truncated: {rel} needs {size} bytes at byte {offset}, "
                                                        f"{len(data)} found")
                output_path(dest, rel, what="file extracted from a shard").write_bytes(data)
                n += 1
    return n
