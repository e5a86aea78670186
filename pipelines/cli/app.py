"""`alliance-watch`: the command line. Each command's arguments and output live in its own module
of this package (the only place that parses arguments); this file only lists them. Errors the
user can fix print as one line and exit 2."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from pipelines.errors import AllianceWatchError

# name -> (module, one-line help). Modules are imported only for the command that runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("pipelines.cli.ingest", "ingest every new file of every configured clinic"),
    "detect": ("pipelines.cli.detect", "(re)compute rupture flags over all loaded sessions"),
    "digest": ("pipelines.cli.digest", "render (and send) the weekly digests due on a date"),
    "generate": (
        "pipelines.cli.generate",
        "write a synthetic multi-clinic dataset with ground truth",
    ),
    "evaluate": (
        "pipelines.cli.evaluate",
        "score the flags against the simulator's ground truth",
    ),
    "report": ("pipelines.cli.report", "write a self-contained HTML report for analysts"),
    "forget": ("pipelines.cli.forget", "erase every trace of one client (right to erasure)"),
    "calibrate": (
        "pipelines.cli.calibrate",
        "suggest a clinic's alert_budget from its clinicians' answers (changes nothing)",
    ),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser of every command; only the command named in `argv` gets its arguments."""
    parser = _Parser(
        prog="alliance-watch",
        description="Alliance Watch: validate, load and monitor clinic alliance/outcome data.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    wanted = next((a for a in argv if a in COMMANDS), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError:
                continue
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; its exit code, or 2 with one line for an error the user can fix."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    run = getattr(args, "_run", None)
    if run is None:
        print(f"alliance-watch: error: command {args.command!r} is not available", file=sys.stderr)
        return 2
    try:
        return int(run(args))
    except AllianceWatchError as e:
        print(f"alliance-watch {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        # a path the user gave cannot be used; the path is theirs, not clinic data
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        print(
            f"alliance-watch {args.command}: error:{where}: {e.strerror or type(e).__name__}",
            file=sys.stderr,
        )
        return 2
    except Exception as e:
        # Never print str(e): library messages can quote data values from a clinic file.
        if args.verbose:
            sys.stderr.write("".join(traceback.format_tb(e.__traceback__)))
        print(
            f"alliance-watch {args.command}: internal error: {type(e).__name__} "
            "(rerun with -v for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
