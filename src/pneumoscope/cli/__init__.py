"""Command line: parses arguments and calls the library, nothing else (:mod:`.parser` the flags of
every command, :mod:`.commands` what each does, :mod:`.tables` the paper's tables as printed).

Errors a user can cause are printed as one line on stderr with exit code 2.
"""

from __future__ import annotations

import sys

from ..errors import PneumoscopeError, one_line
from .parser import build_parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "fold", None) is not None:  # one member of a cross-validated run
            from ..folders import fold_member

            args.run = str(fold_member(args.run, args.fold))
        args.func(args)
    except PneumoscopeError as exc:
        print(f"pneumoscope: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine said no (disk full, permissions, a vanished file): one line, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"pneumoscope: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pneumoscope: interrupted", file=sys.stderr)
        return 130
    return 0
