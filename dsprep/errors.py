"""dsprep's exceptions and the on-error policy for bad input.

The tree::

    DsprepError
     +-- FormatError (ValueError)            bad input: where, expected, found
     |    +-- MalformedFileError             not parseable at all (XML/JSON syntax, not COCO)
     |    +-- InvalidAnnotationError         parseable, but a value is wrong (box, polygon, RLE, category)
     |    +-- MissingFileError (FileNotFoundError)   a file the annotation points at is absent
     |    +-- PathEscapeError                a path named in the data leaves its folder (or OUT)
     +-- DatasetNotFoundError (FileNotFoundError)    no dataset where we looked
     +-- UnknownNameError (ValueError)       unknown format/dataset/split/task; lists valid ones
     +-- OutputExistsError (FileExistsError) refusing to overwrite without ``overwrite=True``,
     |    |                                  or a folder dsprep did not write, or the input
     |    +-- OutputLockedError              another run is writing the same OUT
     +-- ReadError (OSError)                 a file or URL that could not be read, after retries

The second base keeps callers' ``except ValueError`` / ``except FileNotFoundError`` working.
"""
from __future__ import annotations

import difflib
import logging
from collections import Counter
from typing import Iterable

__all__ = [
    "DatasetNotFoundError",
    "DsprepError",
    "ErrorPolicy",
    "FormatError",
    "InvalidAnnotationError",
    "MalformedFileError",
    "MissingFileError",
    "OutputExistsError",
    "OutputLockedError",
    "PathEscapeError",
    "ReadError",
    "UnknownNameError",
    "check_choice",
]

log = logging.getLogger(__name__)


class DsprepError(Exception):
    """Base class of every error dsprep raises on purpose."""


class FormatError(DsprepError, ValueError):
    """Bad input. ``str(err)`` reads ``"<where>: <message>"``.

    Args:
        where: the file, plus line / annotation id where known
            (``"Annotations/000012.xml:17"``, ``"instances_val.json: annotation id 42"``).
        message: what was expected and what was found. Omitted, ``where`` is the whole
            message (how torch rebuilds an error raised in a DataLoader worker: from its text
            alone; it stays a ``FormatError`` of the same class instead of a ``RuntimeError``).
        kind: the ``dsprep validate`` problem kind it is reported under (a key of
            ``dsprep.validate.KINDS``; default: the class's, else ``"parse"``).
    """

    kind: str | None = None  # a subclass may name its own (the class default of the kind= argument)

    def __init__(self, where: str, message: str | None = None, *, kind: str | None = None):
        if message is None:
            where, message = "", str(where)
        self.where = str(where)
        self.message = message
        if kind is not None:
            self.kind = kind
        super().__init__(f"{self.where}: {message}" if self.where else message)

    def __reduce__(self):  # picklable across process pools (the kind travels as state)
        return (type(self), (self.where, self.message), {"kind": self.kind})


class MalformedFileError(FormatError):
    """The file cannot be read as the format at all."""


class InvalidAnnotationError(FormatError):
    """The file parses, but an annotation value is invalid."""


class MissingFileError(FormatError, FileNotFoundError):
    """A file that the dataset refers to does not exist."""


class PathEscapeError(FormatError):
    """A path named inside a dataset (a COCO ``file_name``, a VOC ``ImageSets`` line...) leaves
    the folder it is relative to, or an output name would leave OUT (:mod:`dsprep._paths`)."""

    kind = "path_escape"


class DatasetNotFoundError(DsprepError, FileNotFoundError):
    """No dataset was found; the message lists every place looked at."""


class UnknownNameError(DsprepError, ValueError):
    """An unknown format, dataset, split or task name."""


class OutputExistsError(DsprepError, FileExistsError):
    """OUT cannot be written: it exists and overwriting was not asked for, it is not a folder
    dsprep wrote (no manifest), or it is, holds or lies inside a folder the input reads from."""


class OutputLockedError(OutputExistsError):
    """Another dsprep run is writing the same OUT right now."""


class ReadError(DsprepError, OSError):
    """A file or URL could not be read (a remote shard, after its retries); the message names
    what was read, from where, and the last error."""


def check_choice(kind: str, value: str, valid: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``valid``, else raise :class:`UnknownNameError`.

    The message lists the valid values and suggests the nearest one, e.g.
    ``Unknown split 'vall'. Valid values are: train, val. Did you mean 'val'?``
    """
    valid = list(valid)
    if value in valid:
        return value
    msg = f"Unknown {kind} {value!r}. Valid values are: {', '.join(map(str, valid))}."
    close = difflib.get_close_matches(str(value), [str(v) for v in valid], n=1)
    if close:
        msg += f" Did you mean {close[0]!r}?"
    raise UnknownNameError(msg)


class ErrorPolicy:
    """What to do with a bad item: ``"raise"`` (default) or ``"warn"``.

    With ``"warn"`` the bad item is skipped and counted; :meth:`summary` logs a
    single warning with the count and the first ``show`` messages (5 by
    default). Parsers call :meth:`handle` from inside their ``except
    FormatError`` blocks. ``ErrorPolicy(policy)`` returns ``policy`` itself
    (``show=`` with it is refused: it would be ignored). ``quiet=True`` logs
    nothing: the caller reports every item itself (``dsprep validate``).

    :meth:`note` records what a parser accepts but ``dsprep validate`` should
    report (an ``iscrowd`` of 2 read as crowd, a VOC class missing from
    ``labelmap.txt``), in either mode; :meth:`summary` logs them too.

    Example:
        >>> policy = ErrorPolicy("warn")
        >>> try:
        ...     raise InvalidAnnotationError("a.xml", "xmax < xmin")
        ... except FormatError as err:
        ...     policy.handle(err)
        >>> policy.count
        1
    """

    MODES = ("raise", "warn")

    def __new__(cls, mode: "str | ErrorPolicy" = "raise", **kwargs):
        # ErrorPolicy(policy) returns that same policy, so a caller (``dsprep
        # validate``) can hand a parser a policy object where a mode string is
        # accepted and read every problem back from it afterwards.
        if isinstance(mode, ErrorPolicy):
            return mode
        return super().__new__(cls)

    def __init__(self, mode: "str | ErrorPolicy" = "raise", *, show: int | None = None, quiet: bool = False):
        if isinstance(mode, ErrorPolicy):
            if show is not None:
                raise TypeError(f"ErrorPolicy(policy, show={show}): a policy passed in is returned as it is, "
                                f"with its own show ({mode.show}); give show= where that policy is created")
            return
        self.mode = check_choice("on_error mode", mode, self.MODES)
        self.show = 5 if show is None else int(show)
        self.quiet = quiet  # summary() returns its line without logging it (validate reports every item)
        self.count = 0
        self.kinds: Counter[str] = Counter()
        self.examples: list[str] = []
        self.errors: list[FormatError] = []  # the first ``show`` errors themselves
        self.note_count: Counter[str] = Counter()
        self.notes: list[FormatError] = []  # the first ``show`` notes

    def handle(self, err: FormatError) -> None:
        """Re-raise ``err`` in raise mode; otherwise record it."""
        if self.mode == "raise":
            try:
                raise err
            finally:  # this frame would hold the error its own traceback holds: a cycle only the GC frees
                del err
        self.count += 1
        self.kinds[type(err).__name__] += 1
        if len(self.examples) < self.show:
            self.examples.append(str(err))
            # kept for what it says: its traceback's frames (and the file data their locals hold, a
            # memory-mapped JSON included) would live as long as the policy, in a cycle through it
            err.__traceback__ = err.__context__ = None
            self.errors.append(err)

    def note(self, kind: str, where: str, message: str) -> None:
        """Record something accepted as it is that ``validate`` reports as problem ``kind``."""
        self.note_count[kind] += 1
        if len(self.notes) < self.show:
            self.notes.append(InvalidAnnotationError(where, message, kind=kind))

    def merge(self, other: "ErrorPolicy") -> None:
        """Fold the counts of a worker's policy into this one."""
        self.count += other.count
        self.kinds.update(other.kinds)
        room = max(0, self.show - len(self.examples))
        self.examples.extend(other.examples[:room])
        self.errors.extend(other.errors[:room])
        self.note_count.update(other.note_count)
        self.notes.extend(other.notes[: max(0, self.show - len(self.notes))])

    def summary(self, what: str = "items") -> str | None:
        """Log (and return) one line summarising skipped items, or None if none.

        Notes, if any, get a line of their own (logged, not returned).
        """
        if self.note_count and not self.quiet:
            log.warning("accepted as they are, reported by dsprep validate: " + ", ".join(
                f"{n} {k}" for k, n in self.note_count.most_common()) + "; first: "
                + " | ".join(str(e) for e in self.notes[: min(self.show, 5)]))
        if not self.count:
            return None
        line = f"skipped {self.count} bad {what} (" + ", ".join(
            f"{n} {k}" for k, n in self.kinds.most_common()) + "); first: " + " | ".join(self.examples)
        if not self.quiet:
            log.warning(line)
        return line
