"""Paths named by a dataset, and paths written into OUT: the one place that keeps both inside.

Every format calls these; no format builds a path from data any other way.

Reading (:func:`confine`): a path read from inside a dataset file (a COCO or
panoptic ``file_name``, a VOC ``ImageSets`` line; the formats to come: a YOLO
list line, a LabelMe ``imagePath``, a CVAT ``name``...) is relative to a folder
the format defines (the split's image folder, the VOC ``JPEGImages/``...). It
must stay inside that folder: an absolute path, or one whose ``..`` components
climb out of it, is a :class:`~dsprep.errors.PathEscapeError` naming the file,
the entry and where it resolved to, unless the caller passes
``allow_outside_root=True`` (CLI ``--allow-outside-root``) for a split tree
that is the user's own.

The check is *lexical*: ``..`` and absolute paths are judged on the text,
before any symlink is followed. A symlink inside the dataset (an image folder
that links to another disk) is the user's own arrangement and is followed; it
is not an escape. Backslashes count as separators too, so a Windows-written
``..\\..\\x`` is caught on any system.

Writing (:func:`output_path`, :func:`safe_relpath`): writers build every
output path from a relative name joined to OUT (the temporary folder being
written). :func:`output_path` checks, before anything is created, that the
path lies inside OUT (lexically) and that it would not be written through a
link placed earlier in the same run; :func:`safe_relpath` turns any record
path into a relative name that cannot climb (``../x.jpg`` -> ``__/x.jpg``).
No torch here (formats import this module).
"""
from __future__ import annotations

import functools
import os
import posixpath
import re
from pathlib import Path

from .errors import InvalidAnnotationError, PathEscapeError

__all__ = ["ALLOW_HINT", "checked_output_path", "confine", "escapes", "output_path", "safe_relpath"]

_DRIVE = re.compile(r"[A-Za-z]:(?:[/\\]|$)")  # C:\x, C:/x (a Windows absolute path)
_SEPARATORS = re.compile(r"[/\\]")
ALLOW_HINT = ("fix the entry, or pass --allow-outside-root (allow_outside_root=True in Python) "
              "if this split tree is your own")


def escapes(rel: str) -> bool:
    """Whether ``rel``, read lexically, leaves the folder it is relative to.

    True for an absolute path (``/x``, ``\\x``, ``C:\\x``) and for one whose ``..``
    components climb above its start (``../x``, ``a/../../x``; ``\\`` counts as a
    separator). ``a/../b`` stays inside.
    """
    if rel[:1] in ("/", "\\") or _DRIVE.match(rel):
        return True
    depth = 0
    for part in _SEPARATORS.split(rel):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part and part != ".":
            depth += 1
    return False


def confine(root: str | os.PathLike, rel: str, *, where: str, prefix: str = "", what: str = "file_name",
            allow_outside: bool = False) -> str:
    """Check a path read from inside a dataset and return it relative to ``root``.

    Args:
        root: the dataset root (``Dataset.root``: what record paths are relative to).
        rel: the path as the dataset file stores it, relative to ``root/prefix``.
        where: the file and entry that named it (``"annotations/x.json: image id 7"``).
        prefix: the folder ``rel`` is relative to and must stay inside, relative to
            ``root`` (``"train2017/"``, ``"JPEGImages/"``; ``""``: the root itself).
        what: what the entry is, for the message (``"file_name"``, ``"image id"``).
        allow_outside: the user's opt-in (``--allow-outside-root``): return an
            escaping path instead of raising.

    Returns:
        ``prefix + rel``; when ``rel`` holds ``..`` components or is absolute, that
        path normalised (``train/sub/../a.jpg`` -> ``train/a.jpg``; allowed
        escapes keep their ``..`` or stay absolute: ``root / path`` still opens them).

    Raises:
        PathEscapeError: ``rel`` leaves ``root/prefix`` and ``allow_outside`` is False.
            The message names ``where``, ``rel`` and the absolute place it resolved to.

    Example:
        >>> confine("coco", "a/../b.jpg", where="x.json: image id 1", prefix="train/")
        'train/b.jpg'
    """
    if ".." not in rel and rel[:1] not in ("/", "\\") and not _DRIVE.match(rel):
        return prefix + rel  # the usual name: nothing in it can climb
    if escapes(rel):
        if not allow_outside:
            base = os.path.abspath(os.path.join(root, prefix))
            resolved = os.path.normpath(os.path.join(base, rel.replace("\\", "/")))
            raise PathEscapeError(where, f"{what} {rel!r} resolves to {resolved}, outside {base}; "
                                         f"expected a path inside it ({ALLOW_HINT})")
        if rel[:1] in ("/", "\\") or _DRIVE.match(rel):
            return posixpath.normpath(rel.replace("\\", "/"))
    return posixpath.normpath(prefix + rel)


def safe_relpath(path: str) -> str:
    """A relative name, derived from ``path``, that cannot leave the folder it is joined to.

    The path is normalised (``\\`` counts as a separator), a leading ``/`` (or drive)
    is dropped and each ``..`` that still climbs becomes ``__``: ``../../x.jpg`` ->
    ``__/__/x.jpg``, ``/data/x.jpg`` -> ``data/x.jpg``, ``a/../b.jpg`` -> ``b.jpg``.
    A name that is already plain is returned as is.

    Example:
        >>> safe_relpath("../imgs/./x.jpg")
        '__/imgs/x.jpg'
    """
    if ".." not in path and "\\" not in path and path[:1] != "/" and "./" not in path and "//" not in path \
            and not _DRIVE.match(path) and path not in ("", "."):
        return path
    parts = [p for p in posixpath.normpath(path.replace("\\", "/")).split("/") if p and p != "."]
    if parts and _DRIVE.match(parts[0]):
        parts[0] = parts[0][0]
    return "/".join("__" if p == ".." else p for p in parts) or "_"


def output_path(out: str | os.PathLike, rel: str, *, what: str = "output file", folder: bool = False,
                placing: bool = False) -> Path:
    """``out / rel`` for a file about to be written, checked first; its parent folders are made.

    Args:
        out: the folder being written (the run's temporary OUT).
        rel: the file's path relative to ``out``, built from names the data gave.
        what: what the file is, for the message (``"image"``, ``"split list"``).
        folder: ``rel`` is a folder to make (itself, not only its parents).
        placing: the caller (:func:`dsprep._io.place_image`) handles a file already at
            ``rel`` itself, never writing into it; only the folders above are checked.

    Raises:
        PathEscapeError: ``rel`` leaves ``out`` (absolute, or ``..`` climbing out), is
            ``out`` itself, or reaches through a link already placed in ``out`` (a
            file placed as a link is never written through: that would write the input).

    Example:
        >>> output_path(tmp, "annotations/instances_val.json")  # doctest: +SKIP
        PosixPath('.../annotations/instances_val.json')
    """
    return Path(checked_output_path(out, rel, what=what, folder=folder, placing=placing))


def checked_output_path(out: str | os.PathLike, rel: str, *, what: str = "output file", folder: bool = False,
                        placing: bool = False) -> str:
    """:func:`output_path` as a ``str`` (no ``Path`` built: a writer placing 100k images calls it per image)."""
    base = _absolute(os.fspath(out))
    if len(rel) > 63:  # 4 bytes a character at most: only a name this long can pass 255 bytes
        _check_name_lengths(rel, what)
    path = os.path.normpath(os.path.join(base, rel))
    if not path.startswith(base + os.sep):  # os.path's own rules: "..", absolute, and on Windows "\\" and drives
        raise PathEscapeError(str(rel), f"{what} would be written at {path}, outside the output folder {base}; "
                                        "a split, class or file name holds '..' or is absolute")
    parent = path if folder else os.path.dirname(path)
    if not placing and os.path.islink(path):
        raise PathEscapeError(str(rel), f"{what} {path} would be written through a link placed earlier in this "
                                        "output (two records name the same file); the input is never written to")
    _made_folder(base, parent, what)
    return path


_absolute = functools.lru_cache(maxsize=64)(os.path.abspath)
NAME_MAX = 255  # bytes in one file or folder name on Linux, macOS and Windows file systems


def _check_name_lengths(rel: str, what: str) -> None:
    """A named error, not ``OSError: File name too long``, for a name no file system holds (the
    writers shorten the names they make with ``_checks.fit_name``; this is the backstop)."""
    for part in rel.replace("\\", "/").split("/"):
        n = len(part.encode("utf-8", "surrogatepass"))
        if n > NAME_MAX:
            raise InvalidAnnotationError(rel[:80] + "...", f"{what} name {part[:40]!r}... is {n} bytes; a file "
                                         f"system holds {NAME_MAX} bytes a name (fix: shorten the name in the "
                                         "input)")


_MADE: dict[tuple[str, str], None] = {}  # (base, folder) checked and made; bounded below


def _made_folder(base: str, folder: str, what: str) -> None:
    """Make ``folder`` (below ``base``) after checking that, with every existing link followed,
    it is still below ``base``.

    Remembered: a writer puts thousands of files in one folder, and a folder made once
    stays a real folder for the rest of a run (nothing in a run replaces a folder by a
    link). A remembered folder that no longer exists (an API user deleted the output and
    wrote to the same path again in one process) is checked and made again; a failure is
    not remembered.
    """
    key = (base, folder)
    if key in _MADE and os.path.isdir(folder):
        return
    real_base = os.path.realpath(base)
    real = os.path.realpath(folder)
    if not (real == real_base or real.startswith(real_base + os.sep)):
        raise PathEscapeError(os.path.relpath(folder, base), f"{what} folder {folder} would be reached through a "
                                                             "link placed earlier in this output (one record names "
                                                             "a file inside another's); the input is never written to")
    try:
        os.makedirs(folder, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise PathEscapeError(os.path.relpath(folder, base), f"{what} folder {folder}: a file already written to this "
                                                             "output is in its way (one record's path names a file "
                                                             "inside another's)") from None
    if len(_MADE) >= 4096:
        _MADE.clear()
    _MADE[key] = None
