"""Conversion: parse one format, write another, always through records.

:func:`convert` is ``dsprep.convert``; :func:`write_dataset` writes records
in a format with the atomic-output rules (also used by ``dsprep split`` and
``dsprep synth``).

No torch here: the CLI's convert path must start fast.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from ._category_map import CATEGORY_MAP_FILE, category_map_text
from ._io import IMAGE_MODES
from ._outdir import atomic_output, check_output, claim_output, input_folders, write_manifest
from ._paths import output_path
from ._tar import unpack_files
from .errors import DatasetNotFoundError, OutputExistsError, OutputLockedError, UnknownNameError, check_choice
from .formats import get_format
from .records import CATEGORY_ID_POLICIES, Dataset

__all__ = ["CATEGORY_MAP_FILE", "convert", "merge_shards", "write_dataset"]

log = logging.getLogger(__name__)


def write_dataset(dataset: Dataset, to: str, out: str | os.PathLike, *, images: str = "link",
                  category_ids: str = "preserve", overwrite: bool = False, progress: bool | None = None,
                  inputs: Iterable[str | os.PathLike] = (), command: str = "write",
                  **write_options: Any) -> dict[str, Any]:
    """Write ``dataset`` as format ``to`` into ``out``, atomically.

    The category-id ``policy`` is applied first and the map
    ``{"policy", "categories": [{"name", "source_id", "id"}]}`` is written to
    ``out/category_map.json``. ``out`` follows the rules of docs/cli.md "Safety":
    it may not be, hold or lie inside a folder the dataset reads from (its root,
    image and mask folders, symlink targets; plus ``inputs``), an existing ``out``
    is replaced only with ``overwrite`` and only when dsprep wrote it (its
    ``dsprep-manifest.json``, which this writes, naming ``command``), and one run
    at a time writes it.

    Returns:
        The writer's report plus ``"category_map"``.

    Raises:
        OutputExistsError: ``out`` may not be written (the message says why).
        OutputLockedError: another run is writing ``out``.
    """
    fmt = get_format(to)
    _check_images(fmt, images)
    check_choice("category-id policy", category_ids, CATEGORY_ID_POLICIES)
    remapped, mapping = dataset.remap_categories(category_ids)
    cmap_text = category_map_text(dataset.categories, mapping, category_ids, dataset.format)
    folders = input_folders(dataset, inputs)
    if write_options.get("num_tasks") is not None:  # one task of a job array: OUT is shared, not swapped in
        report = _write_task_share(fmt, remapped, Path(out), images=images, overwrite=overwrite, progress=progress,
                                   cmap_text=cmap_text, inputs=folders, **write_options)
    else:
        with atomic_output(out, overwrite=overwrite, inputs=folders, command=command) as tmp:
            staged, staging, mode = _unpacked(remapped, tmp, images)
            # written first: a writer whose format holds names only (VOC) finds the ids kept there
            output_path(tmp, CATEGORY_MAP_FILE).write_text(cmap_text, encoding="utf-8")
            report = dict(fmt.write(staged, tmp, images=mode, progress=progress, **write_options) or {})
            if staging is not None:
                _settle_unpacked(tmp, staging, images)
    report["category_map"] = mapping
    lost: Mapping[str, int] = report.get("lost") or {}
    for what, n in sorted(lost.items()):
        if n:
            log.warning("%s cannot hold %s: %d dropped from the output (the input is unchanged)", to, what, n)
    return report


def convert(src_format: str, root: str | os.PathLike, to: str, out: str | os.PathLike, *,
            split: str | None = None, images: str = "link", category_ids: str = "preserve",
            overwrite: bool = False, workers: int | None = None, on_error: str = "raise",
            progress: bool | None = None, allow_outside_root: bool = False,
            parse_options: Mapping[str, Any] | None = None,
            write_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Convert the dataset at ``root`` from ``src_format`` to ``to``, writing ``out``.

    Args:
        src_format, to: format names (``dsprep.formats.FORMATS``).
        root: the source dataset (directory, or a COCO JSON file).
        out: the output directory; must not exist unless ``overwrite`` (docs/cli.md "Safety").
        split: convert only this split (default: every split found).
        images: ``link`` (symlinks), ``copy`` or ``none``.
        category_ids: ``preserve``, ``contiguous0`` or ``contiguous1``.
        workers: processes for parsing (default: all cores).
        on_error: ``raise`` (stop at the first bad item) or ``warn`` (skip and count).
        allow_outside_root: let paths named inside the dataset (a COCO ``file_name``...)
            leave the dataset's folders (a split tree of your own); by default such a
            path is a :class:`~dsprep.errors.PathEscapeError`.

    Returns:
        A summary: images, objects, categories, splits, seconds, lost, skipped.

    Raises:
        DatasetNotFoundError: ``root`` does not exist.
        FormatError: bad input (names the file and what was wrong).
        PathEscapeError: a path named inside the dataset leaves it.
        OutputExistsError: ``out`` exists and ``overwrite`` is False, or was not written by
            dsprep, or is, holds or lies inside a folder the input reads from.
        OutputLockedError: another run is writing ``out``.

    Example:
        >>> convert("voc", "VOCdevkit/VOC2012", "coco", "out/")  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    src = get_format(src_format)
    _check_images(get_format(to), images)
    check_choice("category-id policy", category_ids, CATEGORY_ID_POLICIES)
    root, out = Path(root), Path(out)
    if not root.exists():
        raise DatasetNotFoundError(f"{root}: no such file or directory (expected a {src_format} dataset)")
    # A source format may need options for a given target (Cityscapes reads instances only
    # when they will be written); explicit parse_options win.
    hook = getattr(src, "parse_options_for", None)
    options = {**(hook(to) if hook else {}), **dict(parse_options or {})}
    if allow_outside_root:
        options["allow_outside_root"] = True
    # OUT is checked and held before parsing (a refused or busy OUT fails at once), and
    # again with every folder the parsed records read from before writing. The tasks of a
    # job array share OUT: each checks where it is and holds only its own task's lock.
    task_share = (write_options or {}).get("num_tasks") is not None
    if task_share:
        check_output(out, inputs=input_folders(None, [root]), keep_existing=True)
    with contextlib.nullcontext() if task_share else claim_output(out, inputs=input_folders(None, [root]),
                                                                  overwrite=overwrite):
        dataset = src.parse(root, split=split, on_error=on_error, workers=workers, progress=progress, **options)
        if not isinstance(dataset, Dataset):  # a format bug, not user input
            raise TypeError(f"{src_format}.parse returned {type(dataset).__name__}, expected Dataset")
        missing = 0
        if on_error == "warn" and images != "none":
            dataset, missing = without_missing_images(dataset)
        report = write_dataset(dataset, to, out, images=images, category_ids=category_ids, overwrite=overwrite,
                               progress=progress, inputs=[root], command="convert", **dict(write_options or {}))
    return {
        "from": src_format, "to": to, "out": str(out),
        "images": len(dataset), "objects": dataset.num_objects(), "categories": len(dataset.categories),
        "splits": {k: len(v) for k, v in dataset.splits.items()},
        "lost": dict(report.get("lost") or {}),
        "skipped": int(dataset.info.get("skipped", 0)) + int(report.get("skipped") or 0) + missing,
        "missing_images": missing,
        "written": {k: report[k] for k in ("images", "objects", "shards", "bytes") if k in report},
        "seconds": round(time.perf_counter() - t0, 3),
    }



def without_missing_images(dataset: Dataset) -> tuple[Dataset, int]:
    """``on_error="warn"``: the records whose image file exists, and how many were left out
    (one warning names the count and the first). A dataset read from shards holds its
    images inside the tars: kept whole. Used by ``convert`` and ``dsprep split``."""
    if dataset.info.get("shard_files"):
        return dataset, 0
    base = Path(dataset.root if dataset.root is not None else ".")
    keep = [r for r in dataset.records if os.path.isfile(base / r.path)]
    missing = len(dataset.records) - len(keep)
    if not missing:
        return dataset, 0
    first = next(r for r in dataset.records if not os.path.isfile(base / r.path))
    log.warning("skipped %d records whose image file is missing (--on-error warn); first: %s (%s)", missing,
                first.id, base / first.path)
    kept = {r.id for r in keep}
    splits = {k: [i for i in v if i in kept] for k, v in dataset.splits.items()}
    return Dataset(dataset.categories, keep, splits=splits, info=dataset.info, root=dataset.root,
                   format=dataset.format), missing


def _check_images(fmt: Any, images: str) -> str:
    """``images`` is one of the target format's modes (``IMAGE_MODES`` of its module, else link/copy/none)."""
    return check_choice(f"--images mode (with --to {fmt.NAME})", images, getattr(fmt, "IMAGE_MODES", IMAGE_MODES))


# ----------------------------------------------------------------------------- records read from shards

UNPACKED = ".dsprep-unpacked"


def _unpacked(dataset: Dataset, tmp: Path, images: str) -> tuple[Dataset, Path | None, str]:
    """A dataset parsed from tar shards (``info["shard_files"]``), with its files extracted.

    The images and masks are extracted under ``tmp/.dsprep-unpacked`` at their original
    relative paths (only the masks and other files with ``images="none"``), so that every
    writer reads them as it reads a source tree. A file inside a tar cannot be linked to:
    the writer links to the extracted file, and :func:`_settle_unpacked` then moves it
    into the link's place. Returns the dataset to write, the folder (None when the dataset
    was not read from shards) and the images mode to hand the writer.
    """
    files = dataset.info.get("shard_files")
    if not files:
        return dataset, None, images
    staging = tmp / UNPACKED
    only = {"file"} if images == "none" else None
    unpack_files(dataset.root, files, staging, only)
    info = {k: v for k, v in dataset.info.items() if k not in ("shard_files", "shards_images")}
    staged = Dataset(dataset.categories, dataset.records, splits=dataset.splits, info=info, root=staging,
                     format=dataset.format)
    return staged, staging, ("link" if images in ("link", "copy") else images)


def _settle_unpacked(tmp: Path, staging: Path, images: str) -> None:
    """Replace each link the writer made into ``staging`` by the extracted file itself (moved the
    first time, copied for a second link to it), then remove ``staging``."""
    import shutil

    base = os.path.realpath(staging) + os.sep
    placed: dict[str, str] = {}
    for folder, dirs, names in os.walk(tmp):
        if Path(folder) == tmp and UNPACKED in dirs:
            dirs.remove(UNPACKED)
        for name in names + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            link = os.path.join(folder, name)
            if not os.path.islink(link):
                continue
            target = os.path.realpath(link)
            if not target.startswith(base):
                continue
            if target in placed:
                os.unlink(link)
                shutil.copyfile(placed[target], link)
            else:
                os.replace(target, link)
                placed[target] = link
    shutil.rmtree(staging, ignore_errors=True)
    if placed and images == "link":
        log.info("images inside tar shards cannot be symlinked: %d placed as files", len(placed))


# ----------------------------------------------------------------------------- job arrays

def _check_task(num_tasks: Any, task_index: Any) -> tuple[int, int]:
    if task_index is None:
        raise UnknownNameError(f"--num-tasks {num_tasks} needs --task-index I (0 <= I < {num_tasks}): which "
                               "share of the chunks this invocation writes")
    n, i = int(num_tasks), int(task_index)
    if n < 1 or not 0 <= i < n:
        raise UnknownNameError(f"--task-index {i} of --num-tasks {n}: expected --num-tasks >= 1 and "
                               f"0 <= --task-index < {n}")
    return n, i


def _check_shared_out(fmt: Any, out: Path) -> None:
    """OUT of a job array: absent, an empty folder, or the output of the same kind these tasks write."""
    if not os.path.lexists(out):
        return
    if os.path.islink(out) or not out.is_dir():
        raise OutputExistsError(f"--out {out} exists and is not a folder; give a new --out")
    foreign = sorted(set(os.listdir(out)) - set(fmt.OUT_ENTRIES))
    if foreign:
        raise OutputExistsError(f"--out {out} holds {', '.join(foreign[:5])}, which a {fmt.NAME} job array does "
                                "not write: task-array invocations write into a new or empty folder (or one "
                                "they wrote); give another --out")


@contextlib.contextmanager
def _held(lock: Path, what: str) -> Iterator[None]:
    """``flock`` ``lock`` without waiting for the block; removed when released."""
    import fcntl

    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OutputLockedError(f"{what} is running right now ({lock} is locked); wait for it to end") from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def _task_lock(out: Path, num_tasks: int, task_index: int) -> Path:
    return out / "manifests" / f".task-{task_index:05d}-of-{num_tasks:05d}.lock"


def _running_tasks(out: Path) -> list[str]:
    """The tasks of a job array writing ``out`` right now (their lock files are held)."""
    import fcntl

    running = []
    for lock in sorted((out / "manifests").glob(".task-*.lock")):
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            running.append(lock.name[1:-5])
        finally:
            os.close(fd)
    return running


def _write_task_share(fmt: Any, dataset: Dataset, out: Path, *, images: str, overwrite: bool,
                      progress: bool | None, cmap_text: str, inputs: Iterable[str], num_tasks: Any,
                      task_index: Any = None, **write_options: Any) -> dict[str, Any]:
    """One invocation of a job array: its share of the chunks, written straight into the shared OUT.

    Each shard and manifest is written through a temporary file and a rename, so a task
    re-run after a crash replaces exactly its own files. The task holds a lock of its own
    (``OUT/manifests/.task-I-of-N.lock``): the same task started twice is refused, and
    ``dsprep shards merge`` refuses while any task runs. A finished OUT (``index.json``) is
    changed only with ``overwrite``, which first removes the index (merge again afterwards).
    """
    if not hasattr(fmt, "merge"):
        raise UnknownNameError(f"--num-tasks: --to {fmt.NAME} is written in one piece; only shards are written "
                               "by the tasks of a job array")
    n, i = _check_task(num_tasks, task_index)
    check_output(out, inputs=inputs, keep_existing=True)  # where OUT is: never the input, nor inside it
    _check_shared_out(fmt, out)
    out.mkdir(parents=True, exist_ok=True)
    with _held(_task_lock(out, n, i), f"task {i} of {n} writing {out}"):
        index = out / fmt.INDEX
        if index.exists():
            if not overwrite:
                raise OutputExistsError(f"{out} is complete ({fmt.INDEX} is there); re-running task {i} would change "
                                        "shards under it: pass --overwrite to rewrite this task's shards (the index "
                                        "is removed; run dsprep shards merge again after)")
            index.unlink()
        report = dict(fmt.write(dataset, out, images=images, progress=progress, num_tasks=n, task_index=i,
                                overwrite=overwrite, **write_options) or {})
        tmp = output_path(out, f".{CATEGORY_MAP_FILE}.tmp-{os.getpid()}")
        tmp.write_text(cmap_text, encoding="utf-8")
        os.replace(tmp, out / CATEGORY_MAP_FILE)
    return report


def merge_shards(out: str | os.PathLike, *, verify: bool = False) -> dict[str, Any]:
    """``dsprep shards merge OUT``: write ``OUT/index.json`` from the manifests of a job array's tasks.

    Holds OUT's lock (as every run writing OUT does) and refuses while a task holds its
    own; writes ``OUT/dsprep-manifest.json`` last, so that a later ``--overwrite`` may
    replace the folder.

    Raises:
        OutputLockedError: a task (or another run) is writing OUT.
        MissingFileError: a task's manifest or shard is missing (naming the task).
        MalformedFileError: manifests of different conversions, a shard of the wrong size.
    """
    fmt = get_format("shards")
    out = Path(out)
    if not out.is_dir():
        raise DatasetNotFoundError(f"{out}: no such folder (expected the --out of dsprep convert ... --to shards)")
    with claim_output(out, keep_existing=True):
        running = _running_tasks(out)
        if running:
            raise OutputLockedError(f"{out}: {', '.join(running)} still running; merge when every task has ended")
        index = fmt.merge(out, verify=verify)
        write_manifest(out, "shards merge", entries=[e for e in fmt.OUT_ENTRIES if (out / e).exists()])
    return index
