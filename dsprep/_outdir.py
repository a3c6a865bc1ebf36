"""OUT, the folder a run writes: where it may be, what ``--overwrite`` may replace, one run at a time.

The rules (docs/cli.md, "Safety"):

- **Where.** OUT may not be, hold or lie inside a folder the input reads from
  (the dataset root, the folder of a COCO JSON, every image and mask folder,
  the real folders behind symlinked ones, and the folders symlinked images
  point into), nor be the current directory or one above it. Both the path as
  given and the path with its symlinks followed are checked.
- **Overwrite.** A run leaves ``OUT/dsprep-manifest.json`` (tool, version,
  command, argv, time, the top-level entries it wrote). An existing empty
  folder is used as OUT; any other existing OUT needs ``--overwrite``, which
  replaces it only when it holds that manifest and nothing the manifest does
  not list; anything else is refused with what the folder holds. A file or a
  symlink as OUT is refused (give the folder itself).
- **Atomic.** :func:`atomic_output` writes a temporary ``.OUT.tmp-XXXXXXXX``
  beside OUT (its manifest is written first, marking it as dsprep's) and
  renames it to OUT when complete. An error, Ctrl-C or SIGTERM removes it.
- **One run per OUT.** :func:`claim_output` holds ``fcntl.flock`` on
  ``.OUT.dsprep-lock`` beside OUT for the whole run, final rename included; a second
  run gets :class:`~dsprep.errors.OutputLockedError` at once. Holding the lock,
  a run knows no other run of OUT is alive, so it removes the temporary
  folders (and half-replaced ``.OUT.old-*`` ones) that a killed run left, with
  a warning; only folders holding a dsprep manifest (or nothing but its start)
  are removed. The lock file
  is removed when the run ends.

No torch here.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from .errors import OutputExistsError, OutputLockedError

__all__ = ["MANIFEST", "Terminated", "atomic_output", "check_output", "claim_output", "clear_output",
           "input_folders", "read_manifest", "write_manifest"]

log = logging.getLogger(__name__)

MANIFEST = "dsprep-manifest.json"
_MANIFEST_PART = MANIFEST + ".part"
_HELD: dict[str, int] = {}  # lock files this process holds -> nesting depth (claims nest: convert -> write)


class Terminated(SystemExit):
    """SIGTERM arrived while a run held OUT; raised so that its clean-up runs (exit status 143)."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


# ----------------------------------------------------------------------------- where OUT may be

def _abs(path: str | os.PathLike) -> str:
    return os.path.abspath(os.fspath(path))


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def input_folders(dataset: Any, extra: Iterable[str | os.PathLike] = ()) -> list[str]:
    """Every folder ``dataset`` reads from: its root, each image/mask folder, the real folders
    behind symlinked ones, and the folders that symlinked files in them point into.

    ``extra`` adds paths given on the command line (a COCO JSON counts as its folder).
    Cost: one ``scandir`` per image folder (symlinks are seen from the directory
    entries) and one ``readlink`` per symlinked image.
    """
    folders: set[str] = set()
    for p in extra:
        p = _abs(p)
        folders.add(p if os.path.isdir(p) else os.path.dirname(p))
    root = getattr(dataset, "root", None)
    base = _abs(root) if root is not None else ""
    if base:
        folders.add(base)
    subdirs: set[str] = set()
    if dataset is not None:
        for field in ("path", "mask_path", "instance_mask_path"):
            # Dataset.column reads a lazy listing (ImageNet) without building a Record per image
            subdirs.update(rel.rpartition("/")[0] for rel in dataset.column(field) if rel)
    for sub in subdirs:
        if not base and not sub:
            continue  # rootless records named relative to the working directory: that is not a dataset folder
        d = os.path.normpath(os.path.join(base, sub)) if base else _abs(sub)
        folders.add(d)
        folders.update(_link_targets(d))
    return sorted(folders | {os.path.realpath(f) for f in folders})


def _link_targets(folder: str) -> set[str]:
    """The folders that symlinked entries of ``folder`` point into (resolved)."""
    targets: set[str] = set()
    try:
        with os.scandir(folder) as it:
            for e in it:
                if e.is_symlink():
                    targets.add(os.path.dirname(os.path.join(folder, os.readlink(e.path))))
    except OSError:  # absent or unreadable: nothing is read from it either
        return set()
    return {os.path.realpath(t) for t in targets}


def _check_location(out: str, inputs: Sequence[str]) -> None:
    """OUT is not the cwd or above it, and neither is, holds nor lies inside an input folder."""
    spellings = {_abs(out), os.path.realpath(out)}
    cwd = os.path.realpath(os.getcwd())
    for o in spellings:
        if _within(cwd, o):
            raise OutputExistsError(f"--out {out} is {'the current directory' if o == cwd else 'a folder above the current directory'} "
                                    f"({o}); replacing it would remove what you are working in. Give a new "
                                    "folder, e.g. --out converted/")
    for f in inputs:  # replacing an input is the worse outcome: named first
        for o in spellings:
            if _within(f, o):
                raise OutputExistsError(f"--out {out} would replace the input {f} (it {'is' if f == o else 'holds'} "
                                        "that folder); choose a folder outside the input")
    for f in inputs:
        for o in spellings:
            if _within(o, f):
                raise OutputExistsError(f"--out {out} is inside the input folder {f}: the input is never written "
                                        "to. Choose a folder outside it")


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """``folder``'s dsprep manifest, or None when there is none (or it is not dsprep's)."""
    try:
        doc = json.loads(Path(folder, MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("tool") != "dsprep" or not isinstance(doc.get("entries"), list):
        return None
    return doc


def _describe(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(sorted(names)[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _check_replaceable(out: str, overwrite: bool) -> None:
    """An existing OUT is used only when it is an empty folder, or replaced with ``overwrite`` when
    dsprep wrote it."""
    if not os.path.lexists(out):
        return
    if os.path.islink(out) or not os.path.isdir(out):
        kind = "a symlink" if os.path.islink(out) else "a file"
        raise OutputExistsError(f"{out} exists and is {kind}; dsprep writes (and with --overwrite replaces) "
                                "only folders. Give another --out (or the folder itself)")
    entries = os.listdir(out)
    if not entries:
        return  # an empty folder loses nothing
    if not overwrite:
        raise OutputExistsError(f"{out} already exists; pass --overwrite (overwrite=True) to replace it")
    manifest = read_manifest(out)
    if manifest is None:
        raise OutputExistsError(f"--overwrite: {out} holds {len(entries)} entries ({_describe(entries)}) and no "
                                f"{MANIFEST}: dsprep replaces only a folder it wrote itself. Give another --out, "
                                "or move or delete that folder yourself")
    foreign = sorted(set(entries) - set(manifest["entries"]) - {MANIFEST, _MANIFEST_PART})
    if foreign:
        raise OutputExistsError(f"--overwrite: {out} was written by dsprep {manifest.get('command', '')}, but also "
                                f"holds {_describe(foreign)}, which dsprep did not write; move "
                                f"{'it' if len(foreign) == 1 else 'them'} out first")


def check_output(out: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (), overwrite: bool = False,
                 keep_existing: bool = False) -> None:
    """Refuse an OUT that the rules above forbid; creates and changes nothing.

    Args:
        out: the output folder.
        inputs: the folders the input reads from (:func:`input_folders`).
        overwrite: whether an existing OUT may be replaced (it must be dsprep's).
        keep_existing: an existing OUT is continued, not replaced (``train --resume``).

    Raises:
        OutputExistsError: naming OUT, the rule and what to do.
    """
    out = _abs(out)
    _check_location(out, [_abs(p) for p in inputs])
    if not keep_existing:
        _check_replaceable(out, overwrite)


# ----------------------------------------------------------------------------- manifest

def write_manifest(folder: str | os.PathLike, command: str, entries: Iterable[str] | None = None) -> None:
    """Write ``folder/dsprep-manifest.json``; ``entries`` default to what ``folder`` holds now."""
    # the package root sets __version__ before it imports any module: read, not imported (layers)
    version = getattr(sys.modules.get("dsprep"), "__version__", "unknown")
    names = sorted(set(entries if entries is not None else os.listdir(folder)) - {MANIFEST})
    doc = {"tool": "dsprep", "version": version, "command": command, "argv": list(sys.argv),
           "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "entries": names}
    part = Path(folder, _MANIFEST_PART)  # written whole, then renamed: never a half manifest
    part.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(part, Path(folder, MANIFEST))


def clear_output(out: str | os.PathLike) -> None:
    """Remove what the manifest of ``out`` lists (checked by :func:`check_output` before)."""
    manifest = read_manifest(out) or {"entries": []}
    for name in manifest["entries"]:
        if not name or "/" in name or name in (".", ".."):
            continue
        path = os.path.join(out, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)


# ----------------------------------------------------------------------------- one run per OUT

def _lock_path(out: str) -> str:
    parent, name = os.path.split(out)
    return os.path.join(os.path.realpath(parent), f".{name}.dsprep-lock")  # a name no one else uses


def _acquire(lock: str, out: str) -> int | None:
    """``flock`` the lock file without waiting; the file may be unlinked by its last holder meanwhile.
    None where there is no ``flock`` (Windows): runs are not serialised there."""
    try:
        import fcntl
    except ImportError:
        return None

    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip()
            os.close(fd)
            raise OutputLockedError(f"{out} is being written by another dsprep run right now"
                                    f"{f' (pid {holder})' if holder else ''}; wait for it to finish, or choose "
                                    "another --out") from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            return fd
        os.close(fd)  # the holder removed the file between our open and our lock: take the new one


def _remove_stale(out: str) -> None:
    """Remove ``.OUT.tmp-*`` / ``.OUT.old-*`` that killed runs left (the lock says none is alive)."""
    parent, name = os.path.split(out)
    pattern = re.compile(rf"\.{re.escape(name)}\.(tmp|old)-[0-9a-f]{{8}}")
    try:
        candidates = [e for e in os.scandir(parent) if pattern.fullmatch(e.name)]
    except OSError:
        return
    for e in candidates:
        # dsprep's: it holds a manifest, or nothing yet but the start of one (killed right after mkdir)
        if e.is_dir(follow_symlinks=False) and (read_manifest(e.path) is not None
                                               or set(os.listdir(e.path)) <= {_MANIFEST_PART}):
            shutil.rmtree(e.path, ignore_errors=True)
            log.warning("removed %s, left by an interrupted dsprep run", e.path)
        else:
            log.warning("%s looks like an interrupted run's temporary folder but holds no %s; not removed "
                        "(delete it yourself if it is a leftover)", e.path, MANIFEST)


class _SigtermState:
    """While a run holds OUT, SIGTERM raises :class:`Terminated`, except inside a critical
    section (the final rename, a clean-up), where it is held back until the section ends."""

    critical = 0
    pending = False


def _on_sigterm(signum: int, frame: Any) -> None:
    if _SigtermState.critical:
        _SigtermState.pending = True
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the clean-up it starts is not cut short
    raise Terminated()


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """A section SIGTERM does not cut (it takes effect when the section ends)."""
    _SigtermState.critical += 1
    try:
        yield
    finally:
        _SigtermState.critical -= 1
    if _SigtermState.pending and not _SigtermState.critical:
        _SigtermState.pending = False
        _on_sigterm(signal.SIGTERM, None)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while the block runs (main thread, default handler only)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _SigtermState.pending = False


@contextlib.contextmanager
def claim_output(out: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (), overwrite: bool = False,
                 keep_existing: bool = False) -> Iterator[Path]:
    """Check OUT (:func:`check_output`), then hold it for the block: lock, stale clean-up, SIGTERM.

    Nested claims of the same OUT in one process (``convert`` claims before parsing,
    :func:`atomic_output` again before writing) re-check but do not re-lock.
    Creates OUT's parent folders (where the lock file lives), never OUT itself.

    Yields:
        OUT as an absolute path.

    Raises:
        OutputExistsError: the rules refuse OUT.
        OutputLockedError: another run holds OUT.
    """
    out = _abs(out)
    inputs = [_abs(p) for p in inputs]
    check_output(out, inputs=inputs, overwrite=overwrite, keep_existing=keep_existing)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    lock = _lock_path(out)
    if lock in _HELD:
        _HELD[lock] += 1
        try:
            yield Path(out)
        finally:
            _HELD[lock] -= 1
        return
    fd = _acquire(lock, out)
    _HELD[lock] = 1
    try:
        with _sigterm_raises():
            # re-checked under the lock: another run may have written OUT since the first check
            check_output(out, inputs=inputs, overwrite=overwrite, keep_existing=keep_existing)
            _remove_stale(out)
            yield Path(out)
    finally:
        del _HELD[lock]
        if fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(lock)  # while still held: a run waiting on this file then retries on a new one
            os.close(fd)


@contextlib.contextmanager
def atomic_output(out: str | os.PathLike, *, overwrite: bool = False, inputs: Iterable[str | os.PathLike] = (),
                  command: str = "write") -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success it gets its manifest and becomes ``out``.

    On any exception (SIGTERM included, see :func:`claim_output`) the temporary
    folder is removed and ``out`` is left as it was.

    Raises:
        OutputExistsError: ``out`` exists and may not be replaced, or is an input folder.
        OutputLockedError: another run is writing ``out``.
    """
    with claim_output(out, inputs=inputs, overwrite=overwrite) as target:
        tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with _uninterrupted():
                tmp.mkdir()
                write_manifest(tmp, command, entries=())  # marks the folder as dsprep's while it is written
            yield tmp
            write_manifest(tmp, command)
        except BaseException:
            with _uninterrupted():
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        with _uninterrupted():
            _swap(tmp, target)


def _swap(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``, moving a previous ``out`` (checked replaceable) aside first."""
    if not os.path.lexists(out):
        tmp.rename(out)
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
