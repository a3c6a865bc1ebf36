"""Reading dsprep shards, from a folder or an fsspec URL: what the shards format and the
streaming loader both read with (``docs/shards.md``, the shard format).

- where: :func:`is_url`, :func:`join` (a root and a path in it);
- bytes: :func:`read_bytes` reads a byte range of a local file or of a URL (fsspec, the
  optional extra ``dsprep[remote]``), retrying a failed remote read with backoff before a
  :class:`~dsprep.errors.ReadError` names what, where and the last error;
  :class:`RangeReader` streams a long range in requests of a few MB;
- the index: :func:`read_index` (``index.json``, checked), :func:`split_members` (which
  samples of which shards a split is);
- samples: :func:`parse_sample` (one sample's bytes, a small ustar archive, into its
  members) and :func:`record_from_sample` (a sample's JSON into a :class:`~dsprep.records.Record`).

No torch here.
"""
from __future__ import annotations

import logging
import os
import re
import time
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import MalformedFileError, MissingFileError, ReadError, check_choice
from .records import Instances, Record

__all__ = ["FORMAT", "VERSION", "RangeReader", "is_url", "join", "parse_sample", "read_bytes", "read_index",
           "record_from_sample", "split_members"]

log = logging.getLogger(__name__)

FORMAT = "dsprep-shards"
VERSION = 1
RETRIES = 5          # a failed remote read is tried 1 + RETRIES times,
RETRY_WAIT = 0.5     # waiting RETRY_WAIT * 2**attempt seconds between tries
_BLOCK = 512         # tar block


# --------------------------------------------------------------------------- where

def is_url(root: Any) -> bool:
    """A ``scheme://`` string (``file://`` included), as opposed to a local path."""
    return isinstance(root, str) and re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", root) is not None


def _local(url: str) -> str | None:
    """The local path of a plain path or a ``file://`` URL; None for any other URL."""
    if not is_url(url):
        return os.fspath(url)
    if url.startswith("file://"):
        return url[len("file://"):]
    return None


def join(root: str | os.PathLike, rel: str) -> str:
    """``rel`` (posix) inside ``root``: a URL gets ``/rel``, a path ``os.path.join``."""
    if is_url(root):
        return str(root).rstrip("/") + "/" + rel
    return os.path.join(os.fspath(root), *rel.split("/"))


# --------------------------------------------------------------------------- bytes

_FS: dict[str, Any] = {}  # protocol -> fsspec filesystem, one per process


def _filesystem(url: str) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError:
        raise ReadError(f"{url}: reading URLs needs fsspec; install dsprep[remote] "
                        f"(pip install 'dsprep[remote]'; s3:// also needs s3fs)") from None
    protocol = url.split("://", 1)[0]
    key = f"{os.getpid()}:{protocol}"  # a forked worker makes its own (fsspec's event loop is per process)
    fs = _FS.get(key)
    if fs is None:
        try:
            fs = _FS[key] = fsspec.filesystem(protocol)
        except (ImportError, ValueError) as err:
            raise ReadError(f"{url}: no fsspec filesystem for {protocol}:// ({err})") from None
    return fs, url


def read_bytes(url: str, start: int = 0, end: int | None = None, *, what: str = "", retries: int = RETRIES,
               retry_wait: float = RETRY_WAIT) -> bytes:
    """Bytes ``[start, end)`` (``end=None``: to the end) of a local file or a URL; fewer only
    where the file ends first.

    A remote read that fails (a connection error, a 5xx, a body cut short) is
    tried again ``retries`` times, waiting ``retry_wait * 2**attempt`` seconds
    between tries.

    Raises:
        MissingFileError: no such file (a 404 is not retried).
        ReadError: the read still failed after the retries; names ``what``, the URL and the last error.
    """
    where = f"{what} ({url})" if what else url
    path = _local(url)
    if path is not None:
        try:
            with open(path, "rb") as f:
                f.seek(start)
                return f.read() if end is None else f.read(end - start)
        except FileNotFoundError:
            raise MissingFileError(where, "file not found") from None
        except OSError as err:
            raise ReadError(f"{where}: cannot read it ({err})") from None
    fs, _ = _filesystem(url)
    last: BaseException | None = None
    short: bytes | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(retry_wait * 2 ** (attempt - 1))
        try:
            data = fs.cat_file(url, start=start, end=end)
        except FileNotFoundError:
            raise MissingFileError(where, "not found (HTTP 404 or no such object)") from None
        except Exception as err:  # network errors come as many types (aiohttp, botocore, OSError...)
            last = err
            log.debug("read %s [%s, %s) failed (try %d): %s", url, start, end, attempt + 1, err)
            continue
        if end is None:
            return data
        if len(data) > end - start:  # a server that ignores Range sends the whole file
            data = data[start:end]
        if len(data) == end - start:
            return data
        short, last = data, None  # cut short: perhaps a dropped connection, perhaps the file's end
    if last is None and short is not None:
        log.warning("%s: bytes %d-%d: only %d came, %d tries: the file is shorter than its index says",
                    where, start, end, len(short), retries + 1)
        return short
    raise ReadError(f"{where}: cannot read bytes {start}-{end} after {retries + 1} tries "
                    f"(last error: {type(last).__name__}: {last}); check the URL and the network")


class RangeReader:
    """Reads bytes ``[start, end)`` of a file or URL front to back, in requests of ``block`` bytes
    (each retried by :func:`read_bytes`); :meth:`read` returns fewer bytes only where the file ends."""

    def __init__(self, url: str, start: int, end: int, *, what: str = "", block: int = 4 << 20,
                 retries: int = RETRIES, retry_wait: float = RETRY_WAIT):
        self.url, self.pos, self.end, self.what = url, int(start), int(end), what
        self.block, self.retries, self.retry_wait = int(block), retries, retry_wait
        self._buf = b""
        self._at = 0  # read position in _buf
        self._eof = False

    def read(self, n: int) -> bytes:
        """The next ``n`` bytes (fewer at the end of the file)."""
        while len(self._buf) - self._at < n and not self._eof and self.pos < self.end:
            want = min(self.end, self.pos + max(self.block, n - (len(self._buf) - self._at)))
            data = read_bytes(self.url, self.pos, want, what=self.what, retries=self.retries,
                              retry_wait=self.retry_wait)
            self._eof = len(data) < want - self.pos
            self.pos += len(data)
            self._buf = self._buf[self._at:] + data
            self._at = 0
        out = self._buf[self._at:self._at + n]
        self._at += len(out)
        return out


# --------------------------------------------------------------------------- index

def read_index(root: str | os.PathLike) -> dict:
    """``index.json`` of a shards folder or URL, checked: format, version and the keys readers use.

    Raises:
        MissingFileError: no ``index.json`` there.
        MalformedFileError: not JSON, not a dsprep shards index, or a version this dsprep cannot read.
        ReadError: a remote index could not be read.
    """
    import orjson

    url = join(root, "index.json")
    data = read_bytes(url, what="shards index")
    try:
        index = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise MalformedFileError(url, f"not valid JSON ({err})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        found = index.get("format") if isinstance(index, dict) else type(index).__name__
        raise MalformedFileError(url, f"expected a dsprep shards index (\"format\": \"{FORMAT}\"), found "
                                      f"{found!r}; is this the OUT folder of `dsprep convert --to shards`?")
    if index.get("version") != VERSION:
        raise MalformedFileError(url, f"shards index version {index.get('version')!r}: this dsprep reads "
                                      f"version {VERSION}; rewrite the shards with this dsprep")
    for key, kind in (("categories", list), ("splits", dict), ("shards", list)):
        if not isinstance(index.get(key), kind):
            raise MalformedFileError(url, f"\"{key}\" must be a JSON {kind.__name__}, found "
                                          f"{type(index.get(key)).__name__}")
    _check_entries(index, url)
    return index


def _count(v: Any) -> bool:
    """A JSON integer usable as a byte offset, a length or a count (no bool, no float, no string)."""
    return type(v) is int and 0 <= v < 2 ** 62


def _check_entries(index: Mapping[str, Any], url: str) -> None:
    """The numbers readers seek and index by: each shard's ``members`` ``[key, offset, length]``,
    its ``bytes``, the split counts and the ``samples`` pairs ``[shard, member]`` in range; a hand-edited
    or crafted index is a named error here, not an ``OSError`` or ``IndexError`` in a reader."""
    def bad(what: str, found: Any) -> MalformedFileError:
        return MalformedFileError(url, f"{what}, found {str(found)[:80]}; is index.json hand-edited? Rewrite "
                                       "it (dsprep shards merge) or convert again")

    for i, sh in enumerate(index["shards"]):
        members = sh.get("members") if isinstance(sh, dict) else None
        if not isinstance(members, list) or not isinstance(sh.get("path"), str):
            raise bad(f"shard {i}: expected an object with a 'path' string and a 'members' list", sh)
        if "bytes" in sh and not _count(sh["bytes"]):
            raise bad(f"shard {i}: 'bytes' must be a whole number >= 0", sh["bytes"])
        end = sh.get("bytes", 2 ** 62)
        for m in members:
            if not (isinstance(m, list) and len(m) == 3 and type(m[0]) is str and _count(m[1]) and _count(m[2])):
                raise bad(f"shard {i}: each member must be [key, offset, length] with whole numbers >= 0", m)
            if m[1] + m[2] > end:  # a reader would ask for bytes past the shard (a huge read)
                raise bad(f"shard {i}: a member reaches past the shard's {end} bytes", m)
    for key, kind in (("info", dict), ("source_format", str), ("samples", dict)):
        if index.get(key) is not None and not isinstance(index[key], kind):
            raise bad(f"\"{key}\" must be a JSON {'object' if kind is dict else 'string'}", index[key])
    ids = set()
    for c in index["categories"]:
        if not (isinstance(c, dict) and type(c.get("id")) is int and -2 ** 63 <= c["id"] < 2 ** 63
                and isinstance(c.get("name"), str) and isinstance(c.get("supercategory") or "", str)
                and isinstance(c.get("extra") or {}, dict)):
            raise bad("each category must be {\"id\": integer, \"name\": string[, \"supercategory\": string, "
                      "\"extra\": object]}", c)
        if c["id"] in ids:
            raise bad("category ids must be unique", c)
        ids.add(c["id"])
    for name, n in index["splits"].items():
        if not _count(n):
            raise bad(f"split {name!r}: the count must be a whole number >= 0", n)
    samples = index.get("samples") or {}
    for name, pairs in (samples.items() if isinstance(samples, dict) else ()):
        if not isinstance(pairs, list):
            raise bad(f"samples of split {name!r}: expected a list of [shard, member] pairs", pairs)
        for p in pairs:
            if not (isinstance(p, list) and len(p) == 2 and _count(p[0]) and _count(p[1])
                    and p[0] < len(index["shards"]) and p[1] < len(index["shards"][p[0]]["members"])):
                raise bad(f"samples of split {name!r}: expected [shard, member] of a listed member", p)


def split_members(index: Mapping[str, Any], split: str | None) -> list[tuple[int, list[int]]]:
    """What a reader of ``split`` reads, in the split's order: ``[(shard index, [member index...])]``.

    A split listed in ``index["samples"]`` (one whose records are stored
    under other splits too, VOC ``trainval``) is its explicit ``[shard,
    member]`` pairs, grouped into runs of one shard; any other split is every
    member of the shards whose ``split`` it is; None is every member of every
    shard (each record is stored once).

    Raises:
        UnknownNameError: a split the index does not have.
        MalformedFileError: the members found disagree with ``index["splits"]``.
    """
    shards = index["shards"]
    if split is None:
        return [(i, list(range(len(sh["members"])))) for i, sh in enumerate(shards)]
    check_choice("shards split", split, index["splits"])
    listed = (index.get("samples") or {}).get(split)
    out: list[tuple[int, list[int]]] = []
    if listed is None:
        out = [(i, list(range(len(sh["members"])))) for i, sh in enumerate(shards) if sh.get("split") == split]
    else:
        for s, m in listed:
            if out and out[-1][0] == s:
                out[-1][1].append(int(m))
            else:
                out.append((int(s), [int(m)]))
    found = sum(len(m) for _, m in out)
    if found != index["splits"][split]:
        raise MalformedFileError("index.json", f"split {split!r} counts {index['splits'][split]} samples, its "
                                               f"shards hold {found}; rewrite the index (dsprep shards merge)")
    return out


# --------------------------------------------------------------------------- samples

def _octal(field: bytes) -> int:
    text = field.rstrip(b"\0 ").strip()
    return int(text, 8) if text else 0


def parse_sample(blob: bytes, key: str, where: str) -> dict[str, bytes]:
    """One sample's bytes (its members and their padding, a small ustar archive) -> ``{ext: bytes}``.

    ``ext`` is the member name after the key's dot (``json``, ``jpg``,
    ``mask.png``), as WebDataset names it. Every member must carry ``key``.

    Raises:
        MalformedFileError: a bad header (checksum, size) or member name, or bytes cut short;
            the message names ``where`` and the key.
    """
    out: dict[str, bytes] = {}
    at, n = 0, len(blob)
    while at + _BLOCK <= n:
        head = blob[at:at + _BLOCK]
        if head == b"\0" * _BLOCK:
            break
        want = _octal(head[148:156])
        if want != sum(head[:148]) + 8 * 32 + sum(head[156:]):
            raise MalformedFileError(where, f"sample {key!r}: tar header at byte {at} fails its checksum "
                                            f"(a corrupt or truncated shard)")
        name = head[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        prefix = head[345:500].split(b"\0", 1)[0].decode("utf-8", "replace") if head[257:262] == b"ustar" else ""
        name = f"{prefix}/{name}" if prefix else name
        size = _octal(head[124:136])
        at += _BLOCK
        if head[156:157] not in (b"0", b"\0"):  # directories and the like carry no sample data
            at += -(-size // _BLOCK) * _BLOCK
            continue
        base = name.rsplit("/", 1)[-1]
        k, dot, ext = base.partition(".")
        if k != key or not dot:
            raise MalformedFileError(where, f"sample {key!r}: member {name!r} does not belong to it "
                                            f"(expected {key}.<ext>); the index and the shard disagree")
        if at + size > n:
            raise MalformedFileError(where, f"sample {key!r}: member {name!r} is cut short ({n - at} of {size} "
                                            f"bytes): a truncated shard")
        out[ext] = blob[at:at + size]
        at += -(-size // _BLOCK) * _BLOCK
    if "json" not in out:
        raise MalformedFileError(where, f"sample {key!r}: no {key}.json member"
                                        + (" (its bytes are cut short: a truncated shard)" if at < n or n == 0 else ""))
    return out


def _objects(doc: Mapping[str, Any]) -> Instances:
    """The ``instances`` columns of a sample's JSON -> :class:`Instances`."""
    cols = doc.get("instances") or {}
    boxes = cols.get("boxes") or []
    n = len(boxes)
    area = cols.get("area")
    kp = cols.get("keypoints")
    segm = cols.get("segmentation")
    arr = np.asarray(boxes, np.float64).reshape(n, 4)
    with np.errstate(invalid="ignore"):
        if n and not (np.isfinite(arr).all() and (np.abs(arr) <= 2 ** 31 - 1).all()
                      and (arr[:, 2] >= arr[:, 0]).all() and (arr[:, 3] >= arr[:, 1]).all()):
            bad = arr[~(np.isfinite(arr).all(1) & (np.abs(arr) <= 2 ** 31 - 1).all(1) & (arr[:, 2] >= arr[:, 0])
                        & (arr[:, 3] >= arr[:, 1]))][0]
            raise ValueError(f"boxes must be finite [x1, y1, x2, y2] within +-2^31 - 1 with x2 >= x1, y2 >= y1; "
                             f"found {bad.tolist()}")
    return Instances(
        boxes=arr, labels=np.asarray(cols.get("labels") or [], np.int64),
        iscrowd=cols.get("iscrowd"), difficult=cols.get("difficult"), ids=cols.get("ids"),
        area=None if area is None else np.array([np.nan if a is None else a for a in area], np.float64),
        segmentation=None if segm is None or all(s is None for s in segm) else list(segm),
        keypoints=None if kp is None else np.asarray(kp, np.float64).reshape(n, int(cols.get("keypoints_per_object")
                                                                                  or 0) if n == 0 else -1, 3),
        extra=cols.get("extra"))


def record_from_sample(doc: Mapping[str, Any], where: str, *, path: str | None = None,
                       mask_path: str | None = None, instance_mask_path: str | None = None) -> Record:
    """A sample's JSON (the shard format's record) -> a :class:`Record`.

    ``path``, ``mask_path``, ``instance_mask_path`` replace the JSON's own
    (the loader points them at the sample's members).

    Raises:
        InvalidAnnotationError: a field of the wrong type or shape; the message names ``where``.
    """
    from .errors import InvalidAnnotationError

    problem = _sample_problem(doc)
    if problem is not None:
        raise InvalidAnnotationError(where, f"the sample's JSON is not a dsprep record: {problem}"[:400])
    try:
        # The sample's JSON is untrusted: its fields' types are checked above (_sample_problem), its
        # objects go through Instances' checks (_objects).
        return Record._trusted(
            id=doc["id"], path=doc["path"] if path is None else path,
            width=doc.get("width") or 0, height=doc.get("height") or 0, split=doc.get("split"),
            label=doc.get("label"), instances=_objects(doc),
            mask_path=doc.get("mask_path") if mask_path is None else mask_path,
            instance_mask_path=doc.get("instance_mask_path") if instance_mask_path is None else instance_mask_path,
            captions=list(doc.get("captions") or []), source_id=doc.get("source_id"),
            extra=dict(doc.get("extra") or {}))
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as err:
        raise InvalidAnnotationError(where, f"the sample's JSON is not a dsprep record "
                                            f"({type(err).__name__}: {err})"[:400]) from None


_INT64 = 2 ** 63


def _is_int(v: Any, lo: int = -_INT64, hi: int = _INT64 - 1) -> bool:
    return type(v) is int and lo <= v <= hi


def _sample_problem(doc: Mapping[str, Any]) -> str | None:
    """What is wrong with the types of a sample's JSON fields (as the writer writes them), or None."""
    if not isinstance(doc, dict):
        return f"expected a JSON object, found {type(doc).__name__}"
    checks = (
        ("id", isinstance(doc.get("id"), str), "a string"),
        ("path", isinstance(doc.get("path"), str), "a string"),
        ("width", doc.get("width") is None or _is_int(doc["width"], 0, 2 ** 31 - 1), "an integer 0..2^31 - 1"),
        ("height", doc.get("height") is None or _is_int(doc["height"], 0, 2 ** 31 - 1), "an integer 0..2^31 - 1"),
        ("split", doc.get("split") is None or isinstance(doc["split"], str), "a string or null"),
        ("splits", isinstance(doc.get("splits") or [], list)
         and all(isinstance(x, str) for x in doc.get("splits") or []), "a list of strings"),
        ("label", doc.get("label") is None or _is_int(doc["label"]), "an integer or null"),
        ("source_id", doc.get("source_id") is None or _is_int(doc["source_id"]) or isinstance(doc["source_id"], str),
         "an integer, a string or null"),
        ("mask_path", doc.get("mask_path") is None or isinstance(doc["mask_path"], str), "a string or null"),
        ("instance_mask_path", doc.get("instance_mask_path") is None or isinstance(doc["instance_mask_path"], str),
         "a string or null"),
        ("captions", isinstance(doc.get("captions") or [], list), "a list"),
        ("extra", isinstance(doc.get("extra") or {}, dict), "an object"),
        ("image", doc.get("image") is None or isinstance(doc["image"], str), "a string"),
        ("files", isinstance(doc.get("files") or {}, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in (doc.get("files") or {}).items()),
         "an object of strings"),
        ("instances", isinstance(doc.get("instances") or {}, dict), "an object"),
    )
    for key, ok, expected in checks:
        if not ok:
            return f"{key} must be {expected}, found {str(doc.get(key))[:60]}"
    cols = doc.get("instances") or {}
    labels = cols.get("labels") or []
    if not (isinstance(labels, list) and all(_is_int(v) for v in labels)):
        return f"instances.labels must be a list of integers, found {str(labels)[:60]}"
    extra = cols.get("extra")
    if extra is not None and not (isinstance(extra, list) and all(e is None or isinstance(e, dict) for e in extra)):
        return f"instances.extra must be a list of objects or nulls, found {str(extra)[:60]}"
    return None


def member_table(index: Mapping[str, Any]) -> tuple[Sequence[str], np.ndarray, np.ndarray, np.ndarray]:
    """Every shard's members as flat arrays: (keys, offsets, lengths, per-shard start into them)."""
    keys: list[str] = []
    offsets: list[int] = []
    lengths: list[int] = []
    start = np.zeros(len(index["shards"]) + 1, np.int64)
    for i, sh in enumerate(index["shards"]):
        for key, off, length in sh["members"]:
            keys.append(key)
            offsets.append(off)
            lengths.append(length)
        start[i + 1] = len(keys)
    return keys, np.asarray(offsets, np.int64), np.asarray(lengths, np.int64), start
