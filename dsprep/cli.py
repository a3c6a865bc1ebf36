"""The ``dsprep`` command line: ``dsprep convert | info | validate | split | show | synth | train | eval | shards``.

Each sub-command lives in ``dsprep/commands/<name>.py`` and exposes ``HELP``
(one line), ``DESCRIPTION`` (the ``--help`` text), ``add_arguments(parser)``
and ``run(args) -> int``. Command modules import heavy libraries (torch,
matplotlib) inside ``run`` only, so ``dsprep convert`` starts without them.

Exit codes: 0 success, 1 errors found by ``validate`` (warnings too with ``--strict``), 2 bad
input or usage, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM); both leave OUT as it was.

Messages are said in the CLI's words: a Python option a message suggests is shown as its
flag (:func:`dsprep.commands._common.cli_text`). ``convert``, ``info``, ``validate``,
``split``, ``show`` and ``train`` detect FORMAT when it is left out (:func:`dsprep.commands._common.resolve_source`).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from . import __version__
from ._outdir import Terminated
from .errors import DsprepError

__all__ = ["main"]

# Literal table: command name -> module. Order is the order of `dsprep --help`.
COMMANDS = {
    "convert": "dsprep.commands.convert",
    "info": "dsprep.commands.info",
    "validate": "dsprep.commands.validate",
    "split": "dsprep.commands.split",
    "show": "dsprep.commands.show",
    "synth": "dsprep.commands.synth",
    "train": "dsprep.commands.train",
    "eval": "dsprep.commands.eval",
    "shards": "dsprep.commands.shards",
}


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str | None:
        # Append "(default: X)" only where it says something: not after a help text that
        # states its default itself, nor for None (computed: the text says how) or a flag's False.
        help_text = action.help or ""
        if "default" in help_text or action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsprep", formatter_class=_Formatter,
        description="Prepare, convert, check and load ImageNet, COCO, PASCAL VOC and Cityscapes datasets.",
        epilog="Run 'dsprep COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"dsprep {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in COMMANDS.items():
        mod = importlib.import_module(modname)
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=_Formatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


class _CliLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        from .commands._common import cli_text

        level = "" if record.levelno == logging.INFO else record.levelname.lower() + ": "
        return f"dsprep: {level}{cli_text(record.getMessage())}"


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_CliLogFormatter())
    root = logging.getLogger("dsprep")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    root.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    _setup_logging(args.verbose)
    from .commands._common import cli_text, resolve_source

    try:
        resolve_source(args)  # FORMAT left out: detected from ROOT (info, validate, convert, split, show, train)
        return int(args._run(args) or 0)
    except DsprepError as err:  # said as the CLI says it: the flags, not the Python options
        print(f"dsprep {args.command}: error: {cli_text(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dsprep {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated as stop:  # SIGTERM while OUT was held: its temporary folder is already removed
        print(f"dsprep {args.command}: terminated", file=sys.stderr)
        return int(stop.code)
    except BrokenPipeError:  # `dsprep info ... | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
