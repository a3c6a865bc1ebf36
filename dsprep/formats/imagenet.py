"""ImageNet / ILSVRC2012 and any class-subfolder ("ImageFolder") tree.

Layouts read (see ``docs/formats/imagenet.md`` for the full rules):

- any ``<class>/<image>`` tree, with or without ``train/``, ``val/``,
  ``validation/``, ``test/`` split folders above the class folders;
- ILSVRC2012 train ``train/n########/*.JPEG``;
- ILSVRC2012 val as (a) a flat folder of ``ILSVRC2012_val_%08d.JPEG`` plus the
  devkit's ``ILSVRC2012_validation_ground_truth.txt`` (ILSVRC2012_IDs, mapped
  to wnids by ``meta.mat`` or ``map_clsloc.txt``), (b) Kaggle's
  ``ILSVRC/Data/CLS-LOC/val`` plus ``LOC_val_solution.csv`` and
  ``LOC_synset_mapping.txt``, (c) ``val/<wnid>/`` folders;
- ILSVRC LOC box XMLs (``Annotations/.../<stem>.xml``).

Class index = position of the class folder name (the wnid) in sorted order,
over the class folders of every split folder and the class tables (whatever
``split=`` asks; where that differs from ``ImageFolder(root/val)``, see the
docs), as torchvision's ``ImageFolder`` (``folder.py`` ``find_classes``) and Keras
(``imagenet_class_index.json``, ``"0": ["n01440764", "tench"]``) number them.
``Category.id`` is that index and ``Record.label`` holds it.

Parsing never opens an image: width and height stay 0 unless a LOC XML gives
them or ``read_sizes=True`` is passed (header only, EXIF-aware).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
import re
from bisect import bisect_left
from functools import cached_property, lru_cache, partial
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .._checks import check_side, check_utf8_name, fit_name
from .._io import gc_paused, image_size, parallel_map, place_image
from .._paths import output_path
from ..errors import (DatasetNotFoundError, ErrorPolicy, FormatError, InvalidAnnotationError,
                      MalformedFileError, MissingFileError, UnknownNameError, check_choice)
from ..records import Category, Dataset, Instances, LazyRecords, Record, distinct_ids, other_split_memberships

NAME = "imagenet"
DESCRIPTION = ("ImageNet/ILSVRC2012 and any class-subfolder (ImageFolder) tree; "
               "devkit or Kaggle val labels, LOC boxes")
# What write() keeps of any dataset (dsprep.formats.FIELDS; docs/records.md, round-trip table)
HOLDS = frozenset({"file_names", "splits", "objects", "boxes", "categories", "difficult", "image_labels"})

log = logging.getLogger(__name__)

__all__ = ["NAME", "DESCRIPTION", "IMAGE_EXTENSIONS", "SPLIT_DIRS", "detect", "parse", "write"]

# torchvision's IMG_EXTENSIONS (folder.py), compared case-insensitively: ILSVRC
# files end in upper-case ".JPEG".
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"})
# The spellings seen in practice, for a str.endswith fast path in the listing loop.
_COMMON_SUFFIXES = (".JPEG", ".jpg", ".jpeg", ".png", ".JPG", ".PNG")
# Folder names read as splits when every sub-folder of the root is one of them.
SPLIT_DIRS = ("train", "trainval", "val", "valid", "validation", "test")
# A folder is a split folder when its name is one of those, in any case, optionally with a
# year: Train/, valid/ (Roboflow, Kaggle), train2017/ (a COCO tree's split names).
_SPLIT_NAME = re.compile(r"(train|trainval|val|valid|validation|test)(\d{4})?", re.IGNORECASE)


def _is_split_name(name: str) -> bool:
    return _SPLIT_NAME.fullmatch(name) is not None


def _split_order(name: str) -> tuple[int, str]:
    m = _SPLIT_NAME.fullmatch(name)
    return (SPLIT_DIRS.index(m.group(1).lower()) if m else len(SPLIT_DIRS), name)
# Folders at the root that hold metadata, not classes or splits.
_META_DIRS = frozenset({"Annotations", "ILSVRC", "ILSVRC2012_devkit_t12", "ILSVRC2012_devkit_t3", "devkit"})
_VAL_NAME = re.compile(r"ILSVRC2012_val_(\d{8})$")
# Folders that archivers and file systems leave behind: never classes or splits.
_JUNK_DIRS = frozenset({"__MACOSX", "@eaDir", "$RECYCLE.BIN", "System Volume Information", "lost+found"})

GROUND_TRUTH_FILE = "ILSVRC2012_validation_ground_truth.txt"
SYNSET_MAPPING_FILE = "LOC_synset_mapping.txt"
CLSLOC_FILE = "map_clsloc.txt"
META_FILE = "meta.mat"


# --------------------------------------------------------------------------- records
class _EmptyInstances(Instances):
    """The one shared, read-only ``Instances()`` of every record without boxes.

    ImageNet train has 1.28M images and no objects: an ``Instances`` per image
    would cost about 850 bytes (six numpy arrays) and ten microseconds to
    build. Records share this one; its arrays are read-only and its attributes
    cannot be reassigned, so sharing cannot leak an edit from one record to
    another. Assign ``record.instances = Instances(...)`` to give a record objects.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if self.__dict__.get("_sealed"):
            raise AttributeError("this record's Instances is the shared empty one and is read-only; "
                                 "assign record.instances = Instances(...) instead")
        super().__setattr__(name, value)

    def __repr__(self) -> str:  # shown as what it is to users: an empty Instances
        return "Instances" + super().__repr__()[len(type(self).__qualname__):]

    def seal(self) -> "_EmptyInstances":
        for name in Instances._ARRAY_FIELDS:
            view = getattr(self, name).view()  # a view cannot be resized in place
            view.flags.writeable = False
            setattr(self, name, view)
        self.__dict__["_sealed"] = True
        return self


_NO_OBJECTS = _EmptyInstances().seal()


class _ListedRecord(Record):
    """A :class:`Record` built cheaply (by :meth:`_Listing.build` and the flat-folder listing).

    Only ``id``, ``path``, ``split`` and ``label`` are set per file; the other
    fields read the dataclass defaults from the class, ``instances`` is the
    shared empty one, and the fields with a ``default_factory`` (``captions``,
    ``extra``) are created on first use. One costs about half a microsecond to
    build (``docs/benchmarks.md``, "ImageNet tree listing"), a third of
    :meth:`Record._trusted <dsprep.records.Record>`, the constructor every other
    parser uses. It compares equal to a plain ``Record`` with the same fields,
    and ``replace`` works as on any record.
    """

    instances = _NO_OBJECTS

    def __repr__(self) -> str:
        return "Record" + super().__repr__()[len(type(self).__qualname__):]


def _made_on_first_use(cls: type, name: str, factory: Callable[[], Any]) -> None:
    prop = cached_property(lambda self: factory())
    prop.__set_name__(cls, name)
    setattr(cls, name, prop)


# From Record's own field list, so that a field added there is never missing here.
for _f in dataclasses.fields(Record):
    if _f.default_factory is not dataclasses.MISSING and _f.name != "instances":
        _made_on_first_use(_ListedRecord, _f.name, _f.default_factory)


_new = object.__new__


def _record(rid: str, path: str, split: str | None, label: int | None) -> _ListedRecord:
    r = _new(_ListedRecord)
    r.id = rid
    r.path = path
    r.split = split
    r.label = label
    return r


def _ids(paths: list[str]) -> list[str]:
    """Record ids of one folder's images: the path without extension
    (:func:`~dsprep.records.record_id_from_path`), or the whole path for files
    that differ only by extension (``1.jpg``, ``1.png``: two images, as
    torchvision's ``ImageFolder`` lists them)."""
    return distinct_ids([p[:p.rfind(".")] for p in paths], paths)


class _Listing(LazyRecords):
    """What the listing found, kept compact until the Dataset's records are first used.

    Per class folder: the path prefix (``train/n01440764/``), the sorted file
    names the scan returned, the label and the split; nothing per file beyond
    the name. Records of flat folders (labelled by a ground-truth file) are
    built as they are read and kept as they are. ``build`` makes one
    :class:`_ListedRecord` per file; ``column`` gives ids, paths, labels and
    splits without building records (the loaders read those).
    """

    def __init__(self, splits: list[str]) -> None:
        self.splits = splits  # the split folders listed, in order: in split_ids even when empty
        # (prefix, names, label, split) for a class folder, or (None, records, None, None)
        self.parts: list[tuple[str | None, list, int | None, str | None]] = []
        self.n = 0

    def add_folder(self, prefix: str, names: list[str], label: int, split: str | None) -> None:
        if names:
            self.parts.append((prefix, names, label, split))
            self.n += len(names)

    def add_records(self, records: list[Record]) -> None:
        if records:
            self.parts.append((None, records, None, None))
            self.n += len(records)

    def __len__(self) -> int:
        return self.n

    def build(self) -> list[Record]:
        out: list[Record] = []
        append = out.append
        new, cls_ = _new, _ListedRecord
        with gc_paused():
            for prefix, names, label, split in self.parts:
                if prefix is None:
                    out += names
                    continue
                # The hot loop: strings by comprehension, then four attribute stores a record
                # (see _ListedRecord).
                paths = [prefix + n for n in names]
                for path, rid in zip(paths, _ids(paths)):
                    r = new(cls_)
                    r.id = rid
                    r.path = path
                    r.split = split
                    r.label = label
                    append(r)
        return out

    def column(self, name: str) -> list:
        out: list = []
        for prefix, names, label, split in self.parts:
            if prefix is None:
                out += [getattr(r, name) for r in names]
            elif name == "path":
                out += [prefix + n for n in names]
            elif name == "id":
                out += _ids([prefix + n for n in names])
            elif name in ("label", "split"):
                out += [label if name == "label" else split] * len(names)
            elif isinstance(made := _ListedRecord.__dict__.get(name), cached_property):
                out += [made.func(None) for _ in names]  # made per record (captions, extra), as build() would
            else:  # a field every listed record reads from the class: width 0, no objects...
                out += [getattr(_ListedRecord, name)] * len(names)
        return out

    def subset(self, split: str) -> "_Listing":
        out = _Listing([split])
        for prefix, names, label, s in self.parts:
            if prefix is None:
                out.add_records([r.replace(split=split) for r in names if r.split == split])
            elif s == split:
                out.add_folder(prefix, names, label, s)
        return out

    def split_ids(self, records: list[Record] | None = None) -> dict[str, list[str]]:
        """Split -> record ids, of these records or (default) of the listing, listed splits first."""
        out: dict[str, list[str]] = {s: [] for s in self.splits}
        if records is None:
            for prefix, names, label, split in self.parts:
                if prefix is None:
                    for r in names:
                        if r.split is not None:
                            out.setdefault(r.split, []).append(r.id)
                elif split is not None:
                    out.setdefault(split, []).extend(_ids([prefix + n for n in names]))
        else:
            for r in records:
                if r.split is not None:
                    out.setdefault(r.split, []).append(r.id)
        return out


# --------------------------------------------------------------------------- listing

class _Counts:
    """What the listing met besides images in class folders (reported in ``info``)."""

    def __init__(self) -> None:
        self.stray: list[str] = []        # image files beside the class folders
        self.non_image: list[str] = []    # files that are not images
        self.hidden: int = 0              # dot files (.DS_Store, AppleDouble ._x.JPEG)
        self.nested: int = 0              # images in folders inside a class folder
        self.empty_classes: list[str] = []
        self.bad: list[tuple[str, str]] = []  # (where, message): names that cannot be listed or written

    def report_bad(self, policy: ErrorPolicy) -> None:
        """Each bad entry as an :class:`InvalidAnnotationError` through ``policy`` (raise: the first)."""
        for where, message in self.bad:
            policy.handle(InvalidAnnotationError(where, message))


def _utf8_names(names: list[str], rel: str, counts: _Counts | None) -> list[str]:
    """``names`` without those that are not valid UTF-8 (each listed in ``counts.bad``).

    Python decodes a file name's undecodable bytes as lone surrogates; JSON and
    XML cannot hold them. One encode of the joined names checks a whole folder.
    """
    try:
        "".join(names).encode("utf-8")
        return names
    except UnicodeEncodeError:
        pass
    good = []
    for n in names:
        try:
            check_utf8_name(n, rel + n)
            good.append(n)
        except InvalidAnnotationError as err:
            if counts is not None:
                counts.bad.append((err.where, err.message))
    return good


def _is_dir(entry: os.DirEntry, counts: _Counts | None) -> bool | None:
    """``entry.is_dir()``, or None for an entry whose type cannot be read (a symbolic link loop,
    a link into a folder without permission), listed in ``counts.bad``."""
    try:
        return entry.is_dir()
    except OSError as err:
        if counts is not None:
            counts.bad.append((entry.path, f"cannot tell what it is ({err.strerror or err}); expected a folder "
                                           "or an image file (fix: remove or repair the symbolic link)"))
        return None


def _is_image(name: str) -> bool:
    if name.endswith(_COMMON_SUFFIXES):
        return True
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in IMAGE_EXTENSIONS


def _scan(path: str, counts: _Counts | None = None, rel: str = "") -> tuple[list[str], list[str]]:
    """One ``os.scandir`` pass: (sub-folder names, file names), hidden names dropped.

    Entries that cannot be listed (a symbolic link loop, a name that is not
    UTF-8) are left out; with ``counts`` they are listed in ``counts.bad``
    (``rel`` is the folder's path as errors name it).
    """
    dirs, files = [], []
    with os.scandir(path) as it:
        for e in it:
            name = e.name
            if name[0] == ".":
                continue
            kind = _is_dir(e, counts)
            if kind is not None:
                (dirs if kind else files).append(name)
    return _utf8_names(dirs, rel, counts), _utf8_names(files, rel, counts)


def _list_class_tree(abs_dir: str, prefix: str, split: str | None, classes: list[str],
                     class_index: dict[str, int], listing: _Listing, counts: _Counts) -> None:
    """Add every image under ``abs_dir/<class>/`` (nested folders included) to ``listing``.

    The hot loop: one ``os.scandir`` per folder, ``DirEntry.is_dir()`` from
    the directory entry's type (no ``stat``), no ``Path`` and no record per
    file: the folder's sorted names go to the listing as they are (see
    :class:`_Listing`).
    """
    common = _COMMON_SUFFIXES
    seen_links: set[str] = set()
    for cname in classes:
        label = class_index[cname]
        stack = [(os.path.join(abs_dir, cname), f"{prefix}{cname}/", False)]
        found = 0
        folders: list[tuple[str, list[str]]] = []
        while stack:
            folder, rel, nested = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = list(it)
            except OSError as err:  # no permission, or gone since it was listed
                counts.bad.append((rel, f"cannot list this folder ({err.strerror or err})"))
                continue
            # Comprehensions for the common case (every entry an image file);
            # the rare entries (folders, other extensions, dot files, links that
            # cannot be followed) take the slow branches.
            try:
                names = [e.name for e in entries if not e.is_dir()]
            except OSError:
                names = [e.name for e in entries if _is_dir(e, counts) is False]
                entries = [e for e in entries if _is_dir(e, None) is not None]
            subdirs = []
            if len(names) != len(entries):
                for e in entries:
                    if e.is_dir():
                        if e.name[0] == "." or e.name in _JUNK_DIRS:
                            counts.hidden += 1
                        else:
                            subdirs.append((e.name, e.is_symlink()))
            subdirs = [d for d in subdirs if _utf8_names([d[0]], rel, counts)]
            names = _utf8_names(names, rel, counts)
            images = [n for n in names if n.endswith(common)]
            if len(images) != len(names):
                images = []
                for n in names:
                    if n[0] == ".":
                        counts.hidden += 1
                    elif _is_image(n):
                        images.append(n)
                    else:
                        counts.non_image.append(rel + n)
            # Sorted, as torchvision's make_dataset lists them: the order must
            # not depend on the file system. Dot files that end like images
            # (macOS "._x.JPEG") sort together: names from "." up to "/".
            images.sort()
            lo, hi = bisect_left(images, "."), bisect_left(images, "/")
            if lo != hi:
                counts.hidden += hi - lo
                del images[lo:hi]
            folders.append((rel, images))
            found += len(images)
            if nested:
                counts.nested += len(images)
            for d, is_link in sorted(subdirs, reverse=True):
                sub = os.path.join(folder, d)
                if is_link:  # a linked folder is entered once: links can make cycles
                    real = os.path.realpath(sub)
                    if real in seen_links:
                        continue
                    seen_links.add(real)
                stack.append((sub, f"{rel}{d}/", True))
        # torchvision's make_dataset walks sorted(os.walk(class folder)): folders in the
        # order of their path strings ("c/a", "c/a b", "c/a-b", "c/a/x"), not depth first.
        if len(folders) > 1:
            folders.sort(key=lambda f: f[0][:-1])
        for rel, images in folders:
            listing.add_folder(rel, images, label, split)
        if not found:
            counts.empty_classes.append(prefix + cname)


# --------------------------------------------------------------------------- class tables
class _Tables:
    """What is known about the classes: wnid -> words, ILSVRC2012_ID -> wnid."""

    def __init__(self) -> None:
        self.words: dict[str, str] = {}  # every known wnid; "" where no words are known
        self.ids: dict[int, str] = {}
        self.sources: list[str] = []

    def add_words(self, wnid: str, words: str) -> None:
        if not self.words.get(wnid):
            self.words[wnid] = words


def _read_text(path: Path) -> str:
    # utf-8-sig: a table saved by Excel or Notepad starts with a byte-order mark
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise MalformedFileError(str(path), f"expected UTF-8 text ({err})") from None


def _read_synset_mapping(path: Path, tables: _Tables) -> None:
    """Kaggle ``LOC_synset_mapping.txt``: ``wnid words``, 1000 lines sorted by wnid."""
    for lineno, line in enumerate(_read_text(path).splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        wnid, _, words = line.partition(" ")
        if " " in wnid or "\t" in wnid:
            raise MalformedFileError(f"{path}:{lineno}", f"expected 'wnid words', found {line!r}")
        tables.add_words(wnid, words.strip())
    tables.sources.append(str(path))


def _read_map_clsloc(path: Path, tables: _Tables) -> None:
    """``map_clsloc.txt``: ``wnid ILSVRC2012_ID name`` (1 = n02119789 kit_fox)."""
    for lineno, line in enumerate(_read_text(path).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2 or not parts[1].isdigit():
            raise MalformedFileError(f"{path}:{lineno}",
                                     f"expected 'wnid ILSVRC2012_ID name', found {line.strip()!r}")
        tables.ids[int(parts[1])] = parts[0]
        tables.add_words(parts[0], " ".join(parts[2:]))
    tables.sources.append(str(path))


def _read_meta_mat(path: Path, tables: _Tables) -> None:
    """The devkit's ``data/meta.mat``: keep the 1000 leaf synsets (``num_children == 0``).

    Columns ILSVRC2012_ID, WNID, words, ... as torchvision's ``parse_meta_mat`` reads them.
    """
    try:
        import scipy.io
    except ImportError:
        raise ImportError(f"reading {path} needs scipy: pip install 'dsprep[meta]' "
                          f"(or pass mapping='map_clsloc.txt' instead)") from None
    try:
        synsets = scipy.io.loadmat(str(path), squeeze_me=True)["synsets"]
    except (ValueError, KeyError, OSError, TypeError) as err:
        raise MalformedFileError(str(path), f"expected the devkit's meta.mat with a 'synsets' table ({err})") \
            from None
    for row in np.atleast_1d(synsets):
        if int(row["num_children"]) != 0:
            continue
        wnid = str(row["WNID"])
        tables.ids[int(row["ILSVRC2012_ID"])] = wnid
        tables.add_words(wnid, str(row["words"]))
    tables.sources.append(str(path))


def _read_class_index_json(path: Path, tables: _Tables) -> None:
    """A ``{"index": [wnid, name]}`` JSON: the Keras file or the 1-based trap.

    The Keras ``imagenet_class_index.json`` is 0-based in sorted wnid order
    (``"0": ["n01440764", "tench"]``). Some public copies are 1-based in
    ILSVRC2012_ID order (``"1": ["n02119789", "kit_fox"]``); read naively they
    shift or scramble every label. The two are told apart here, explicitly:

    - 0-based and sorted by wnid -> names only (the index is the sorted index anyway);
    - 1-based and not sorted -> an ILSVRC2012_ID table (like ``map_clsloc.txt``);
    - 1-based and sorted -> TF-slim style (0 = background): names only;
    - anything else -> refused.
    """
    try:
        data = json.loads(path.read_bytes())
        table = sorted(((int(k), v[0], v[1] if len(v) > 1 else "") for k, v in data.items()))
    except (ValueError, TypeError, IndexError, AttributeError) as err:
        raise MalformedFileError(str(path), f"expected {{\"index\": [wnid, name]}} ({err})") from None
    if not table:
        raise MalformedFileError(str(path), "expected a class index, found an empty object")
    keys = [k for k, _, _ in table]
    wnids = [w for _, w, _ in table]
    first = keys[0]
    if keys != list(range(first, first + len(keys))) or first not in (0, 1):
        raise MalformedFileError(str(path), f"expected keys 0..N-1 or 1..N, found {keys[0]}..{keys[-1]} "
                                            f"with gaps")
    is_sorted = wnids == sorted(wnids)
    if first == 0 and not is_sorted:
        raise MalformedFileError(str(path), "a 0-based class index whose wnids are not in sorted order: "
                                            "neither the Keras file (0-based, sorted) nor an "
                                            "ILSVRC2012_ID table (1-based); refusing to guess")
    if first == 1 and not is_sorted:
        log.info("%s is 1-based in ILSVRC2012_ID order (not the 0-based Keras file); "
                 "read as an ILSVRC2012_ID -> wnid table", path)
        for k, w, words in table:
            tables.ids[k] = w
    for _, w, words in table:
        tables.add_words(w, str(words))
    tables.sources.append(str(path))


def _read_mapping(path: Path, tables: _Tables) -> None:
    """Read any class table, by its name or its first line."""
    if not path.is_file():
        raise MissingFileError(str(path), "mapping file not found")
    if path.suffix == ".mat":
        return _read_meta_mat(path, tables)
    if path.suffix == ".json":
        return _read_class_index_json(path, tables)
    first = next((ln.split() for ln in _read_text(path).splitlines() if ln.strip()), [])
    if len(first) >= 2 and first[1].isdigit():
        return _read_map_clsloc(path, tables)
    return _read_synset_mapping(path, tables)


def _search_dirs(root: Path, parent: bool = False) -> list[Path]:
    """Where the devkit and Kaggle metadata files are looked for, in order.

    The root's parent is searched only when the root is itself a flat val
    folder: a class tree kept beside an unrelated ``map_clsloc.txt`` must not
    gain 1000 categories.
    """
    dirs = []
    for base in (root, root.parent) if parent else (root,):
        dirs += [base, base / "ILSVRC2012_devkit_t12" / "data", base / "ILSVRC2012_devkit_t12"]
    return dirs


def _find(root: Path, name: str, parent: bool = False) -> Path | None:
    for d in _search_dirs(root, parent):
        p = d / name
        if p.is_file():
            return p
    return None


# --------------------------------------------------------------------------- labels for flat folders
def _read_ground_truth(path: Path) -> list[int]:
    """``ILSVRC2012_validation_ground_truth.txt``: one ILSVRC2012_ID per line, in val-file order."""
    out = []
    for lineno, line in enumerate(_read_text(path).splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        if not s.isdigit():
            raise MalformedFileError(f"{path}:{lineno}", f"expected one ILSVRC2012_ID per line, found {s!r}")
        out.append(int(s))
    return out


def _read_loc_csv(path: Path) -> dict[str, list[tuple[str, list[float]]]]:
    """Kaggle ``LOC_<split>_solution.csv``: ``ImageId,PredictionString``.

    The prediction string repeats ``wnid xmin ymin xmax ymax``. Rows are not
    sorted by ImageId, so they are keyed by it.
    """
    out: dict[str, list[tuple[str, list[float]]]] = {}
    # Read whole (Kaggle's val CSV is 3 MB): a decoding error is then a named one; utf-8-sig
    # as in _read_text (a CSV saved by Excel starts with a byte-order mark).
    with io.StringIO(_read_text(Path(path)), newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
            raise MalformedFileError(f"{path}:1", f"expected the header 'ImageId,PredictionString', "
                                                  f"found {','.join(header or [])!r}")
        for lineno, row in enumerate(reader, 2):
            if not row:
                continue
            if len(row) < 2:
                raise MalformedFileError(f"{path}:{lineno}", f"expected 'ImageId,PredictionString', found {row}")
            tokens = row[1].split()
            if not tokens or len(tokens) % 5:
                raise MalformedFileError(f"{path}:{lineno}", f"expected groups of 'wnid xmin ymin xmax ymax', "
                                                             f"found {len(tokens)} values")
            objs = []
            for i in range(0, len(tokens), 5):
                try:
                    box = [float(v) for v in tokens[i + 1:i + 5]]
                except ValueError:
                    box = [math.nan]
                if not all(map(math.isfinite, box)):
                    raise MalformedFileError(f"{path}:{lineno}", f"expected four finite numbers after "
                                                                 f"{tokens[i]}, found {tokens[i + 1:i + 5]}"[:300])
                objs.append((tokens[i], box))
            out[row[0].strip()] = objs
    return out


# --------------------------------------------------------------------------- LOC XML
def _parse_loc_xml(path: str) -> tuple[int, int, list[tuple]]:
    """One ILSVRC LOC XML -> (width, height, [(wnid, x1, y1, x2, y2, difficult, truncated, pose)])."""
    from lxml import etree

    try:
        root = etree.parse(path).getroot()
    except (etree.XMLSyntaxError, OSError) as err:
        raise MalformedFileError(path, f"cannot parse XML ({err})") from None
    if root.tag != "annotation":
        raise MalformedFileError(path, f"expected an <annotation> root, found <{root.tag}>")

    def num(el, tag: str, default: float | None = None) -> float:
        text = el.findtext(tag)
        if text is None or not text.strip():
            if default is not None:
                return default
            raise InvalidAnnotationError(path, f"<{tag}> is missing")
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise InvalidAnnotationError(path, f"<{tag}> expected a finite number, found {text!r}"[:300])
        return value

    size = root.find("size")
    w = check_side(num(size, "width", 0), path, "<width>") if size is not None else 0
    h = check_side(num(size, "height", 0), path, "<height>") if size is not None else 0
    objs = []
    for i, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        if not name or bb is None:
            raise InvalidAnnotationError(f"{path}: object {i}", "expected <name> and <bndbox>")
        x1, y1, x2, y2 = (num(bb, t) for t in ("xmin", "ymin", "xmax", "ymax"))
        if x2 < x1 or y2 < y1:
            raise InvalidAnnotationError(f"{path}: object {i}",
                                         f"expected xmin <= xmax and ymin <= ymax, found {[x1, y1, x2, y2]}")
        objs.append((name, x1, y1, x2, y2, bool(int(num(obj, "difficult", 0))),
                     (obj.findtext("truncated") or "").strip(), (obj.findtext("pose") or "").strip()))
    return w, h, objs


def _each(fn, paths: list[str]) -> list:
    """Worker: ``fn(path)`` for each path, a FormatError in place of a result it raised."""
    out: list = []
    for p in paths:
        try:
            out.append(fn(p))
        except FormatError as err:
            out.append(err)
    return out


_parse_xml_chunk = partial(_each, _parse_loc_xml)  # picklable for the process pool
_size_chunk = partial(_each, image_size)


def _xml_index(folder: Path) -> dict[str, str]:
    """Path relative to ``folder`` without ``.xml`` (``n01440764/n01440764_10026``) -> XML path,
    for every ``*.xml`` under ``folder`` (recursively; link loops and unreadable folders skipped)."""
    out: dict[str, str] = {}
    stack = [(str(folder), "")]
    while stack:
        path, rel = stack.pop()
        try:
            with os.scandir(path) as it:
                for e in it:
                    if _is_dir(e, None):
                        stack.append((e.path, f"{rel}{e.name}/"))
                    elif e.name.endswith(".xml"):
                        out[rel + e.name[:-4]] = e.path
        except OSError:
            continue
    return out


def _match_xmls(xmls: dict[str, str], paths: dict[str, int]) -> list[tuple[int, str]]:
    """(record, XML) pairs: an XML at the image's own relative path (``train/n01/x.xml`` for
    ``train/n01/x.JPEG``) first; else, by stem, when both the stem's image and its XML are unique
    (ILSVRC's val XMLs are flat while tools sort val images into class folders)."""
    stem_of = lambda rel: rel[rel.rfind("/") + 1:]  # noqa: E731
    exact = [(paths[rel], p) for rel, p in xmls.items() if rel in paths]
    taken_images = {i for i, _ in exact}
    taken_xmls = {p for _, p in exact}
    image_stems: dict[str, list[int]] = {}
    for rel, i in paths.items():
        if i not in taken_images:
            image_stems.setdefault(stem_of(rel), []).append(i)
    xml_stems: dict[str, list[str]] = {}
    for rel, p in xmls.items():
        if p not in taken_xmls:
            xml_stems.setdefault(stem_of(rel), []).append(p)
    by_stem = [(image_stems[k][0], ps[0]) for k, ps in xml_stems.items()
               if len(ps) == 1 and len(image_stems.get(k, ())) == 1]
    return exact + by_stem


# --------------------------------------------------------------------------- layout
def _layout(root: Path, counts: _Counts | None = None) -> tuple[Path, dict[str | None, str], list[str], list[str]]:
    """(image base, {split: folder name ("" = the base itself)}, image files at the root,
    folders at the root that are neither splits nor classes, reported and not listed).

    The root holds split folders when a split-named one (``train/``, ``val/``...)
    holds class folders (or a flat ILSVRC val); other folders beside them are
    strays (an unzipped ``__MACOSX/``, a ``scripts/`` folder). A class tree
    whose classes are named ``train`` and ``val`` holds images directly in
    those folders, not class folders, and stays a class tree.
    """
    base = root
    kaggle = root / "ILSVRC" / "Data" / "CLS-LOC"
    if kaggle.is_dir():
        base = kaggle
    dirs, files = _scan(str(base), counts)
    dirs = [d for d in dirs if d not in _META_DIRS and not d.startswith("ILSVRC2012_devkit")]
    junk = [d for d in dirs if d in _JUNK_DIRS]
    dirs = [d for d in dirs if d not in _JUNK_DIRS]
    images = [f for f in files if _is_image(f)]
    splits = [d for d in dirs if _is_split_name(d)]
    if splits and any(_holds_classes(base / d) for d in splits):
        stray = sorted(d for d in dirs if not _is_split_name(d))
        return base, {d: d for d in sorted(splits, key=_split_order)}, images, sorted(junk) + stray
    return base, {None: ""}, [], sorted(junk)


def _holds_classes(folder: Path) -> bool:
    """A split folder's look: class sub-folders, or flat ``ILSVRC2012_val_*`` images."""
    dirs, files = _scan(str(folder))
    return any(d not in _JUNK_DIRS for d in dirs) or any(_VAL_NAME.match(f.rpartition(".")[0]) for f in files[:50])


# Any folder of image folders is an ImageFolder tree: other formats' trees often are too (a
# COCO export with train/ and valid/ image folders), so a format that recognises the path wins.
DETECT_WEAK = True


def detect(path) -> bool:
    """True for a folder whose images sit in class folders, or ILSVRC2012 val/Kaggle layouts.

    Checks file patterns only: a split folder or the root holding sub-folders
    that hold images, or a flat folder of ``ILSVRC2012_val_*`` images.
    """
    root = Path(path)
    if not root.is_dir():
        return False
    if (root / "ILSVRC" / "Data" / "CLS-LOC").is_dir():
        return True
    # Other formats' roots also hold image folders: VOC's JPEGImages, COCO's
    # train2017 beside annotations/, Cityscapes' leftImg8bit.
    if any((root / d).is_dir() for d in ("JPEGImages", "annotations", "leftImg8bit", "gtFine")):
        return False
    try:
        base, splits, _, _ = _layout(root)
        for sub in splits.values():
            d = base / sub if sub else base
            dirs, files = _scan(str(d))
            if any(_VAL_NAME.match(f.rpartition(".")[0]) for f in files[:50]):
                return True
            for cname in dirs[:20]:
                _, inner = _scan(str(d / cname))
                if any(_is_image(f) for f in inner):
                    return True
    except OSError:
        return False
    return False


# --------------------------------------------------------------------------- parse
def parse_options_for(target: str) -> dict[str, Any]:
    """Parse options a conversion to ``target`` needs (used by :func:`dsprep.convert`).

    COCO, COCO panoptic and VOC store each image's width and height (detectron2
    checks them against the decoded image; mmdetection filters on them), so
    the headers are read (no pixel decode, in a process pool). A class tree
    does not store sizes.
    """
    return {"read_sizes": True} if target in ("coco", "coco-panoptic", "voc") else {}


def parse(path, *, split: str | None = None, on_error: str = "raise", workers: int | None = None,
          progress: bool | None = None, validation_split: float | None = None, seed: int | None = None,
          ground_truth: str | os.PathLike | None = None, mapping: str | os.PathLike | None = None,
          annotations: str | os.PathLike | None = None, boxes: bool = True,
          read_sizes: bool = False, allow_outside_root: bool = False) -> Dataset:
    """Parse an ImageNet/ILSVRC root or any class-subfolder tree into records.

    Args:
        path: the dataset root: a folder with ``train/``, ``val/``... split
            folders, a class-subfolder tree, a flat ``ILSVRC2012_val_*`` folder,
            or the Kaggle root (holding ``ILSVRC/`` and ``LOC_*.csv``).
        split: only this split (``"train"``, ``"val"``...; with
            ``validation_split``: ``"train"`` or ``"validation"``).
        on_error: ``"raise"`` or ``"warn"`` (skip bad items, one summary line).
        workers: processes for parsing many LOC XMLs or reading many headers.
        progress: show a progress bar (default: when stderr is a terminal).
        validation_split: for a tree without split folders, the fraction of
            images put in a ``"validation"`` split (the rest is ``"train"``),
            as Keras ``image_dataset_from_directory`` does. Needs ``seed``.
        seed: seed of the split: numpy's PCG64 permutes the sorted record ids,
            so the same seed gives the same split on any machine.
        ground_truth: the devkit's ``ILSVRC2012_validation_ground_truth.txt``
            or Kaggle's ``LOC_val_solution.csv`` (default: looked for in the
            root, ``ILSVRC2012_devkit_t12/data/``, ``ILSVRC2012_devkit_t12/``,
            then the same three under the root's parent).
        mapping: the class table: ``meta.mat`` (needs scipy, the ``meta``
            extra), ``map_clsloc.txt``, ``LOC_synset_mapping.txt`` or an
            ``imagenet_class_index.json`` (default: looked for as above).
        annotations: folder of LOC box XMLs (default: ``ILSVRC/Annotations/CLS-LOC``,
            ``Annotations/CLS-LOC`` or ``Annotations`` under the root).
        boxes: read LOC boxes (XML or CSV) when present.
        read_sizes: read width/height from image headers (no decode); default
            0 (unknown) so that listing never opens an image.
        allow_outside_root: accepted as every format accepts it; nothing here
            is a path read from a file (images are listed from folders, LOC CSV
            ImageIds and devkit lines only label listed images), so nothing can
            leave the root (a symlinked class folder is followed: docs/cli.md, Safety).

    Returns:
        A Dataset: categories sorted by wnid (``id`` = sorted index,
        ``extra["words"]``), records with ``label`` = that index. ``info``
        counts what was skipped: ``stray_files``, ``non_image_files``,
        ``hidden_files``, ``nested_images``, ``unlabeled``, ``skipped``.

    Raises:
        DatasetNotFoundError: ``path`` is not a folder.
        UnknownNameError: ``split`` is not one of the splits found.
        FormatError: a bad ground-truth, mapping, CSV or XML file.

    Example:
        >>> ds = parse("imagenette")  # doctest: +SKIP
        >>> ds.categories[0].name, ds.records[0].label  # doctest: +SKIP
        ('n01440764', 0)
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetNotFoundError(f"{root}: not a folder (expected an ImageNet root or a class-subfolder tree)")
    policy = ErrorPolicy(on_error)
    counts = _Counts()
    base, split_dirs, root_images, stray_folders = _layout(root, counts)
    base_rel = "" if base == root else base.relative_to(root).as_posix() + "/"
    stray_folders = [base_rel + d for d in stray_folders]
    wanted = _wanted_splits(root, split_dirs, split, validation_split, seed)
    scans = _scan_splits(base, base_rel, split_dirs, wanted, counts, stray_folders)
    if split is None or validation_split is not None:
        counts.stray.extend(base_rel + f for f in root_images)

    # The class tables, then the categories: sorted union of class folders and table wnids.
    flat = {s for s, (dirs, files) in scans.items() if not dirs and files}
    parent = None in flat  # the root is a flat folder: look beside it too
    tables = _class_tables(root, mapping, parent)
    gt_path, csv_paths = _label_files(root, ground_truth, flat, split_dirs, parent)
    if gt_path is not None and not tables.ids:
        _read_id_table(root, parent, gt_path, tables, needed=bool(flat.intersection(wanted)))
    classes, class_index, categories = _categories(tables, scans, flat)

    # List the images.
    read_csv = lru_cache(maxsize=None)(_read_loc_csv)  # a flat val's CSV gives labels, then boxes
    listing = _Listing([s for s in wanted if s is not None] if validation_split is None else [])
    layout: dict[str, str] = {}
    unlabeled = 0
    with gc_paused():
        for s in wanted:
            folder = base / split_dirs[s] if split_dirs[s] else base
            prefix = base_rel + (f"{split_dirs[s]}/" if split_dirs[s] else "")
            dirs, files = scans[s]
            rec_split = s if validation_split is None else None
            if s in flat:
                flat_records: list[Record] = []
                unlabeled += _list_flat(files, prefix, rec_split, flat_records, counts, s, gt_path,
                                        csv_paths.get(s), read_csv, tables, class_index, policy)
                listing.add_records(flat_records)
                layout[s if s is not None else "(root)"] = _flat_kind(gt_path, csv_paths.get(s))
            else:
                counts.stray.extend(prefix + f for f in files if _is_image(f))
                counts.non_image.extend(prefix + f for f in files if not _is_image(f))
                _list_class_tree(str(folder), prefix, rec_split, sorted(dirs), class_index, listing, counts)
                layout[s if s is not None else "(root)"] = "class folders"
    counts.report_bad(policy)  # links that cannot be followed, names that are not UTF-8
    if not len(listing) and not classes and not counts.stray:
        # an empty folder (or one of other files) is no dataset, as for every other format
        raise DatasetNotFoundError(
            f"{root}: no images found; expected class folders of images (<class>/*.jpg), optionally under "
            f"split folders ({', '.join(SPLIT_DIRS)}), or an ILSVRC2012 / Kaggle layout (docs/formats/imagenet.md)")

    # The records stay a compact listing (built on first use of ds.records) unless a step
    # below has to change them.
    records: list[Record] | _Listing = listing
    info: dict[str, Any] = {"layout": layout, "class_tables": tables.sources}
    if boxes:
        n_boxed, records = _attach_boxes(root, base, base_rel, split_dirs, wanted, listing, csv_paths,
                                         read_csv, annotations, class_index, policy, workers, progress)
        if n_boxed:
            info["box_convention"] = ("ILSVRC LOC numbers kept as they are (xmin, ymin, xmax, ymax read as "
                                      "0-based continuous); see docs/formats/imagenet.md")
    if read_sizes:
        records = _read_sizes(root, _built(records), policy, workers, progress)
    if validation_split is not None:
        records = _built(records)
        _seeded_split(records, validation_split, seed)
        if split is not None:
            records = [r for r in records if r.split == split]

    _report(root, counts, unlabeled, info, stray_folders)
    info["skipped"] = policy.count
    policy.summary("images")
    splits = None if records is listing else listing.split_ids(records)
    return Dataset(categories, records, splits=splits, info=info, root=root, format=NAME)


def _categories(tables: "_Tables", scans: Mapping[str | None, tuple[list[str], list[str]]],
                flat: set) -> tuple[list[str], dict[str, int], list[Category]]:
    """The classes (sorted union of the class folders of every non-flat split and the class
    tables' wnids), their index, and the categories (``extra["words"]`` from the tables)."""
    class_names = set(tables.words) | set(tables.ids.values())
    for s, (dirs, _) in scans.items():
        if s not in flat:
            class_names.update(dirs)
    classes = sorted(class_names)
    categories = [Category(i, c, extra={"words": tables.words[c]} if tables.words.get(c) else {})
                  for i, c in enumerate(classes)]
    return classes, {c: i for i, c in enumerate(classes)}, categories


def _wanted_splits(root: Path, split_dirs: Mapping[str | None, str], split: str | None,
                   validation_split: float | None, seed: int | None) -> list[str | None]:
    """The split folders to list (all, or the one ``split=`` asks for), the arguments checked."""
    if validation_split is not None:
        if not 0 < validation_split < 1:
            raise ValueError(f"validation_split must be between 0 and 1, found {validation_split}")
        if seed is None:
            raise ValueError("validation_split needs a seed (the same seed gives the same split everywhere)")
        if None not in split_dirs:
            raise ValueError(f"validation_split applies to a tree without split folders; {root} already has "
                             f"{', '.join(map(str, split_dirs))}; choose one with split=")
    if split is not None:
        valid = ["train", "validation"] if validation_split is not None else [s for s in split_dirs if s]
        if not valid:
            raise UnknownNameError(f"{root} has no split folders ({', '.join(SPLIT_DIRS)}), so split={split!r} "
                                   f"cannot be chosen; pass validation_split= and seed= to make train/validation")
        check_choice("split", split, valid)
    return [s for s in split_dirs if validation_split is not None or split is None or s == split]


def _scan_splits(base: Path, base_rel: str, split_dirs: Mapping[str | None, str], wanted: Sequence[str | None],
                 counts: _Counts, stray_folders: list[str]) -> dict[str | None, tuple[list[str], list[str]]]:
    """Split -> (class folders, files), each split folder scanned once (class folders, or a flat
    folder of images), the ones split= leaves out too: classes are numbered over the whole tree,
    whatever split= asks. Junk folders of the wanted splits go to ``stray_folders``."""
    scans: dict[str | None, tuple[list[str], list[str]]] = {}
    for s in split_dirs:
        folder = base / split_dirs[s] if split_dirs[s] else base
        prefix = base_rel + (f"{split_dirs[s]}/" if split_dirs[s] else "")
        dirs, files = _scan(str(folder), counts if split_dirs[s] and s in wanted else None, prefix)
        if not split_dirs[s]:  # the root itself holds the classes: its metadata folders are not classes
            dirs = [d for d in dirs if d not in _META_DIRS and not d.startswith("ILSVRC2012_devkit")]
        elif s in wanted:
            stray_folders += [prefix + d for d in dirs if d in _JUNK_DIRS]
        scans[s] = ([d for d in dirs if d not in _JUNK_DIRS], files)
    return scans


def _class_tables(root: Path, mapping: Any, parent: bool) -> "_Tables":
    """The wnid tables: the ``mapping=`` file, else LOC_synset_mapping.txt and map_clsloc.txt found."""
    tables = _Tables()
    if mapping is not None:
        _read_mapping(Path(mapping), tables)
    else:
        for name in (SYNSET_MAPPING_FILE, CLSLOC_FILE):
            found = _find(root, name, parent)
            if found is not None:
                _read_mapping(found, tables)
    return tables


def _read_id_table(root: Path, parent: bool, gt_path: Path, tables: "_Tables", needed: bool) -> None:
    """The ILSVRC2012_ID -> wnid table a ground-truth file needs, from meta.mat; its absence is an
    error when a flat split read here needs it (``needed``)."""
    meta = _find(root, META_FILE, parent)
    if meta is not None:
        _read_meta_mat(meta, tables)
    elif needed:
        looked = ", ".join(str(d) for d in _search_dirs(root, parent))
        raise MissingFileError(str(gt_path), f"the ground truth holds ILSVRC2012_IDs, which need a table "
                                             f"(meta.mat or map_clsloc.txt) to become wnids; none found "
                                             f"in {looked}; pass mapping=")


def _built(records: "list[Record] | _Listing") -> list[Record]:
    return records.build() if isinstance(records, _Listing) else records


def _label_files(root: Path, ground_truth, flat: set, split_dirs: dict,
                 parent: bool) -> tuple[Path | None, dict]:
    """The devkit ground truth (for flat val) and Kaggle LOC CSVs per split."""
    csv_paths: dict[str | None, Path] = {}
    gt: Path | None = None
    if ground_truth is not None:
        g = Path(ground_truth)
        if not g.is_file():
            raise MissingFileError(str(g), "ground-truth file not found")
        if not flat and g.suffix != ".csv":
            log.warning("%s: ground_truth=%s is not used: no split here is a flat folder of images "
                        "(class folders carry their labels)", root, g)
        if g.suffix == ".csv":
            target = next((s for s in flat if s in ("val", "validation")), None)
            target = target if target is not None else next(iter(flat), "val")
            csv_paths[target] = g
        else:
            gt = g
    for s in split_dirs:
        if s is None or s in csv_paths:
            continue
        name = "val" if s == "validation" else s
        found = _find(root, f"LOC_{name}_solution.csv", parent)
        if found is not None:
            csv_paths[s] = found
    if gt is None and any(s in flat for s in ("val", "validation", None)) and not any(
            s in csv_paths for s in flat):
        gt = _find(root, GROUND_TRUTH_FILE, parent)
    return gt, csv_paths


def _flat_kind(gt_path: Path | None, csv_path: Path | None) -> str:
    if csv_path is not None:
        return f"flat + {csv_path.name}"
    if gt_path is not None:
        return f"flat + {gt_path.name}"
    return "flat, no labels"


def _list_flat(files: list[str], prefix: str, split: str | None, records: list, counts: _Counts,
               split_key, gt_path: Path | None, csv_path: Path | None, read_csv, tables: _Tables,
               class_index: dict[str, int], policy: ErrorPolicy) -> int:
    """Records for a flat folder; labels from the LOC CSV or the devkit ground truth. Returns #unlabeled."""
    by_stem: dict[str, list] = read_csv(csv_path) if csv_path is not None else {}
    truth = _read_ground_truth(gt_path) if gt_path is not None and csv_path is None else None
    unlabeled = 0
    for name in sorted(files):
        if not _is_image(name):
            counts.non_image.append(prefix + name)
            continue
        stem = name[:name.rfind(".")]
        label = None
        try:
            if csv_path is not None:
                objs = by_stem.get(stem)
                if objs:
                    label = _wnid_index(objs[0][0], class_index, f"{csv_path}: {stem}")
            elif truth is not None:
                m = _VAL_NAME.match(stem)
                if m:
                    n = int(m.group(1))
                    if not 1 <= n <= len(truth):
                        raise InvalidAnnotationError(str(gt_path), f"{name} is val image {n}, but the file "
                                                                   f"has {len(truth)} lines")
                    ilsvrc_id = truth[n - 1]
                    wnid = tables.ids.get(ilsvrc_id)
                    if wnid is None:
                        raise InvalidAnnotationError(f"{gt_path}:{n}", f"ILSVRC2012_ID {ilsvrc_id} is not in the "
                                                                       f"class table ({', '.join(tables.sources)})")
                    label = class_index[wnid]
        except FormatError as err:
            policy.handle(err)
            continue
        if label is None:
            unlabeled += 1
        records.append(_record(prefix + stem, prefix + name, split, label))
    for r, rid in zip(records, _ids([r.path for r in records])):
        r.id = rid  # the same but where two files differ only by extension
    return unlabeled


def _wnid_index(wnid: str, class_index: dict[str, int], where: str) -> int:
    try:
        return class_index[wnid]
    except KeyError:
        raise InvalidAnnotationError(where, f"unknown wnid {wnid!r} (not a class folder nor in the class "
                                            f"table)") from None


def _attach_boxes(root: Path, base: Path, base_rel: str, split_dirs: dict, wanted: list, listing: _Listing,
                  csv_paths: dict, read_csv, annotations, class_index: dict[str, int], policy: ErrorPolicy,
                  workers, progress) -> tuple[int, list[Record] | _Listing]:
    """Give records their LOC boxes: from the split's LOC CSV, else from LOC XMLs.

    Returns the number of records boxed and the records: the listing itself,
    unbuilt, when there are no box files or none matched.
    """
    ann_root = None
    if annotations is not None:
        ann_root = Path(annotations)
        if not ann_root.is_dir():
            raise MissingFileError(str(ann_root), "annotations folder not found")
    else:
        for cand in (root / "ILSVRC" / "Annotations" / "CLS-LOC", root / "Annotations" / "CLS-LOC",
                     root / "Annotations"):
            if cand.is_dir():
                ann_root = cand
                break
    if ann_root is None and not any(s in csv_paths for s in wanted):
        return 0, listing
    records = listing.build()
    by_split: dict[str | None, dict[str, int]] = {}  # split -> path in its folder, no extension -> record
    for i, r in enumerate(records):
        s = _split_of(r, base_rel, split_dirs)
        rel = r.path[len(base_rel):]
        if split_dirs.get(s):
            rel = rel[len(split_dirs[s]) + 1:]
        by_split.setdefault(s, {})[rel[:rel.rfind(".")] if "." in rel else rel] = i
    ann_splits = ann_root is not None and any(d and (ann_root / d).is_dir() for d in split_dirs.values())
    boxed = 0
    for s in wanted:
        index = by_split.get(s, {})
        if not index:
            continue
        if s in csv_paths:
            rows = read_csv(csv_paths[s])
            stems = {rel[rel.rfind("/") + 1:]: i for rel, i in index.items()}
            for stem, objs in rows.items():
                i = stems.get(stem)
                if i is None:
                    continue
                try:
                    labels = [_wnid_index(w, class_index, f"{csv_paths[s]}: {stem}") for w, _ in objs]
                except FormatError as err:
                    policy.handle(err)
                    continue
                records[i].instances = Instances(boxes=[b for _, b in objs], labels=labels)
                boxed += 1
            continue
        if ann_root is None:
            continue
        if split_dirs[s] and (ann_root / split_dirs[s]).is_dir():
            folder = ann_root / split_dirs[s]
        elif ann_splits:  # Annotations/ has split folders, none for this split: none of its XMLs are this split's
            continue
        else:
            folder = ann_root
        todo = _match_xmls(_xml_index(folder), index)
        if not todo:
            continue
        results = parallel_map(_parse_xml_chunk, [p for _, p in todo], workers=workers,
                               desc="LOC XML", show_progress=progress)
        flat_results = [x for chunk in results for x in chunk]
        for (i, p), res in zip(todo, flat_results):
            if isinstance(res, FormatError):
                policy.handle(res)
                continue
            w, h, objs = res
            try:
                labels = [_wnid_index(o[0], class_index, p) for o in objs]
            except FormatError as err:
                policy.handle(err)
                continue
            r = records[i]
            r.instances = Instances(boxes=[o[1:5] for o in objs], labels=labels,
                                    difficult=[o[5] for o in objs],
                                    extra=[{"truncated": o[6], "pose": o[7]} for o in objs])
            if w > 0 and h > 0:
                r.width, r.height = w, h
            boxed += 1
    return boxed, (records if boxed else listing)


def _split_of(r: Record, base_rel: str, split_dirs: dict):
    if r.split is not None:
        return r.split
    if None in split_dirs:
        return None
    top = r.path[len(base_rel):].split("/", 1)[0]
    return next((s for s, d in split_dirs.items() if d == top), None)


def _read_sizes(root: Path, records: list, policy: ErrorPolicy, workers, progress) -> list:
    """Width/height from each image's header (EXIF-aware); bad images go through the policy."""
    todo = [i for i, r in enumerate(records) if not (r.width and r.height)]
    results = parallel_map(_size_chunk, [str(root / records[i].path) for i in todo], workers=workers,
                           desc="image headers", show_progress=progress)
    bad = set()
    for i, res in zip(todo, (x for chunk in results for x in chunk)):
        if isinstance(res, FormatError):
            policy.handle(res)
            bad.add(i)
            continue
        records[i].width, records[i].height = res
    return [r for i, r in enumerate(records) if i not in bad] if bad else records


def _seeded_split(records: list, fraction: float, seed: int) -> None:
    """Keras-style train/validation split, reproducible across machines.

    The record ids are sorted (the listing order depends on the file system),
    permuted by ``numpy.random.Generator(PCG64(seed))`` (a documented, stable
    stream, unlike Python's ``hash()``), and the last ``int(fraction * n)``
    become ``"validation"``, as Keras takes ``samples[-num_val:]``.
    """
    order = sorted(range(len(records)), key=lambda i: records[i].id)
    perm = np.random.Generator(np.random.PCG64(seed)).permutation(len(order))
    n_val = int(fraction * len(order))
    shuffled = [order[j] for j in perm]
    cut = len(shuffled) - n_val
    for k, i in enumerate(shuffled):
        records[i].split = "train" if k < cut else "validation"


def _report(root: Path, counts: _Counts, unlabeled: int, info: dict, stray_folders: list[str]) -> None:
    """Put what was not a class image into ``info`` and log one line per kind."""
    info.update(stray_files=len(counts.stray), non_image_files=len(counts.non_image),
                hidden_files=counts.hidden, nested_images=counts.nested, unlabeled=unlabeled,
                empty_classes=len(counts.empty_classes), stray_folders=stray_folders)
    if stray_folders:
        log.warning("%s: %d folder(s) that are neither splits nor classes, not listed: %s", root,
                    len(stray_folders), ", ".join(stray_folders[:5]))
    if counts.stray:
        log.warning("%s: %d image(s) outside any class folder, not listed: %s", root, len(counts.stray),
                    ", ".join(counts.stray[:5]))
    if counts.non_image:
        log.warning("%s: %d non-image file(s) skipped: %s", root, len(counts.non_image),
                    ", ".join(counts.non_image[:5]))
    if counts.nested:
        log.info("%s: %d image(s) in folders nested inside class folders, listed under their class "
                 "(as torchvision ImageFolder does)", root, counts.nested)
    if counts.empty_classes:
        log.info("%s: %d class folder(s) without images: %s", root, len(counts.empty_classes),
                 ", ".join(counts.empty_classes[:5]))
    if unlabeled:
        log.warning("%s: %d image(s) without a label (no ground truth found for them)", root, unlabeled)


# --------------------------------------------------------------------------- write
def _safe(name: str) -> str:
    """A folder name the reader reads back as the same class or split, inside OUT.

    ``/`` and ``\\`` become ``_``; ``.``, ``..``, dot names (skipped as hidden),
    archive junk (``__MACOSX``) and root metadata names (``Annotations``) get a
    leading ``_``; a name too long for a folder is cut with a hash
    (:func:`dsprep._checks.fit_name`).
    """
    name = fit_name(name.replace("/", "_").replace("\\", "_").replace("\0", "_"))
    if (not name or name[0] == "." or name in _JUNK_DIRS or name in _META_DIRS
            or name.startswith("ILSVRC2012_devkit")):
        name = "_" + name
    return name


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def write(dataset: Dataset, dest, *, images: str = "link", progress: bool | None = None,
          **options: Any) -> dict[str, Any]:
    """Write ``dest/<split>/<class name>/<file>`` (no ``<split>/`` level for records without one).

    Boxes are written as LOC XMLs ``dest/Annotations/<split>/<class>/<stem>.xml``
    (numbers as stored, see the box note in ``docs/formats/imagenet.md``), and
    the class list as ``dest/LOC_synset_mapping.txt`` (``name words``) so that
    parsing the output gives back every category with its words. Two images
    with the same file name in one class folder get their record id (``/`` ->
    ``__``) as file name.

    Returns:
        ``{"images", "objects", "lost": {what: count}}``: images without a
        label, images missing at the source, and what a class tree cannot
        hold (segmentations, keypoints, captions, masks, crowd flags).

    Example:
        >>> write(parse("ILSVRC2012"), Path("sorted"), images="link")  # doctest: +SKIP
    """
    dest = Path(dest)
    src_root = Path(dataset.root) if dataset.root is not None else Path(".")
    lost: dict[str, int] = {}

    def lose(what: str, n: int = 1) -> None:
        if n:
            lost[what] = lost.get(what, 0) + n

    lose("split memberships beyond each image's own split (overlapping splits: one folder per image)",
         other_split_memberships(dataset))
    # A split is a folder above the classes; the reader knows it by its name only.
    unreadable = sorted({r.split for r in dataset.records if r.split and not _is_split_name(_safe(r.split))})
    if unreadable:
        raise UnknownNameError(
            f"an imagenet tree holds its splits as folders named {', '.join(SPLIT_DIRS)} (any case, optionally "
            f"with a year: train2017); split(s) {', '.join(map(repr, unreadable))} would be read back as "
            f"classes. Rename them (dsprep split ... --ratios train=0.8,val=0.2), or write another format")
    # a class tree keeps a class's folder name and words; other category fields (LVIS frequency/synset...) are lost
    cat_fields = sorted({k for c in dataset.categories for k in (c.extra or {}) if k != "words"})
    lose(f"category fields ({', '.join(cat_fields)})",
         sum(any(k != "words" for k in (c.extra or {})) for c in dataset.categories))

    names = _class_folders(dataset, lose)

    used: set[str] = set()
    n_images = n_objects = 0
    from .._io import progress as bar

    for r in bar(dataset.records, total=len(dataset.records), desc="imagenet", enabled=progress):
        if r.label is None or r.label not in names:
            lose("images without a label")
            continue
        folder = (f"{_safe(r.split)}/" if r.split else "") + names[r.label]
        fname = r.path.rsplit("/", 1)[-1]
        rel = f"{folder}/{fname}"
        if rel in used:
            ext = fname[fname.rfind("."):] if "." in fname else ""
            rel = f"{folder}/{r.id.replace('/', '__')}{ext}"
        used.add(rel)
        if not place_image(src_root / r.path, dest, rel, images):
            lose("images missing at the source")
            continue
        if images == "none":
            output_path(dest, folder, what="class folder", folder=True)
        n_images += 1
        lose("source image ids", int(r.source_id is not None))
        inst = r.instances
        if r.mask_path:
            lose("semantic masks")
        if r.instance_mask_path:
            lose("instance masks")
        lose("captions", len(r.captions))
        if len(inst):
            keep = [i for i, lab in enumerate(inst.labels.tolist()) if lab in names]
            lose("objects with an unknown category", len(inst) - len(keep))
            lose("object segmentations", sum(1 for i in keep if inst.segmentation and inst.segmentation[i] is not None))
            lose("keypoints", len(keep) if inst.keypoints is not None else 0)
            lose("crowd flags", int(inst.iscrowd[keep].sum()) if keep else 0)
            lose("annotation ids", int((inst.ids[keep] >= 0).sum()) if keep else 0)
            if keep:
                stem = rel.rsplit("/", 1)[-1]
                stem = stem[:stem.rfind(".")] if "." in stem else stem
                xml = output_path(dest, f"Annotations/{folder}/{stem}.xml", what="LOC XML")
                _write_loc_xml(xml, r, inst, keep, names, stem, r.split or "")
                n_objects += len(keep)
    if all(not any(ch.isspace() for ch in names[c.id]) for c in dataset.categories):
        # The folder name is what a re-parse reads as the class; the table says the same.
        lines = [f"{names[c.id]} {c.extra.get('words') or (c.name if names[c.id] != c.name else '')}".rstrip()
                 for c in sorted(dataset.categories, key=lambda c: names[c.id])]
        output_path(dest, SYNSET_MAPPING_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        lose("category words and original names (names with spaces cannot go in LOC_synset_mapping.txt)",
             sum(1 for c in dataset.categories if c.extra.get("words") or names[c.id] != c.name))
    return {"images": n_images, "objects": n_objects, "lost": lost}


def _class_folders(dataset: Dataset, lose: Callable[..., None]) -> dict[int, str]:
    """Category id -> its class folder's name, and what the names and ids lose (``lose``)."""
    # Folder names: a "/" in a class name ("tv/monitor", labelme) cannot be one; two
    # names that become the same folder get their category id appended.
    names: dict[int, str] = {}
    for c in dataset.categories:
        folder = _safe(c.name)
        names[c.id] = f"{folder}_{c.id}" if folder in names.values() else folder
    lose("category names changed into folder names (kept as the words where there were none)",
         sum(1 for c in dataset.categories if names[c.id] != c.name))
    # a class tree numbers its classes 0..N-1 in sorted folder order (as ImageFolder does)
    index = {folder: i for i, folder in enumerate(sorted(names.values()))}
    lose("category ids (a class tree numbers its folders 0..N-1 in sorted order)",
         sum(1 for c in dataset.categories if c.id != index[names[c.id]]))
    lose("category supercategories", sum(1 for c in dataset.categories if c.supercategory))
    return names


def _write_loc_xml(path: Path, r: Record, inst: Instances, keep: list[int], names: dict[int, str],
                   stem: str, folder: str) -> None:
    from lxml import etree

    ann = etree.Element("annotation")
    etree.SubElement(ann, "folder").text = folder
    etree.SubElement(ann, "filename").text = stem  # ILSVRC: no extension
    src = etree.SubElement(ann, "source")
    etree.SubElement(src, "database").text = "ILSVRC_2012"
    size = etree.SubElement(ann, "size")
    etree.SubElement(size, "width").text = str(r.width)
    etree.SubElement(size, "height").text = str(r.height)
    etree.SubElement(size, "depth").text = "3"
    etree.SubElement(ann, "segmented").text = "0"
    for i in keep:
        extra = (inst.extra[i] if inst.extra and inst.extra[i] else {}) or {}
        obj = etree.SubElement(ann, "object")
        etree.SubElement(obj, "name").text = names[int(inst.labels[i])]
        etree.SubElement(obj, "pose").text = str(extra.get("pose") or "Unspecified")
        etree.SubElement(obj, "truncated").text = str(extra.get("truncated") or 0)
        etree.SubElement(obj, "difficult").text = "1" if inst.difficult[i] else "0"
        bb = etree.SubElement(obj, "bndbox")
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), inst.boxes[i].tolist()):
            etree.SubElement(bb, tag).text = _fmt(v)
    path.write_bytes(etree.tostring(ann, pretty_print=True, encoding="utf-8"))


