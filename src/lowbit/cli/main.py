"""The `lowbit` command: argument parsing and printing over lowbit's API.

    lowbit quantize model.onnx --data samples.npz -o out       # the whole flow at once
    lowbit transform model.onnx -o work/model.f32.onnx --test-data x.npz
    lowbit calibrate work/model.f32.onnx --data calib.npz --num 200 --method kl \
        -o work/model.calib
    lowbit deploy work/model.f32.onnx --quantize INT8 --calibration-table work/model.calib \
        --test-data x.npz --test-reference work/ref_outputs.npz --tolerance 0.99,0.90 \
        -o work/model.int8.onnx
    lowbit compare work/model.f32.onnx work/model.int8.onnx --data x.npz
    lowbit bench work/model.int8.onnx --vs work/model.f32.onnx --batch 1,32
    lowbit demo

Exit codes: 0 done; 1 done but a validation gate failed (the file is still
written); 2 bad input or usage (nothing written); 130, 143, 129 stopped by Ctrl-C,
SIGTERM or SIGHUP (no half-written or temporary file left, earlier files untouched).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from lowbit import __version__
from lowbit.atomic import Terminated, terminate_cleanly
from lowbit.cli.names import command_parser, for_command_line
from lowbit.cli.registry import COMMANDS, add_command
from lowbit.errors import LowbitError

EXIT_OK, EXIT_GATE_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class _HelpFormatter(argparse.HelpFormatter):
    """Every option with a real default shows it, unless its help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = getattr(action.default, "value", action.default)  # a cli.options.Default
        if (default not in (None, False, True, argparse.SUPPRESS)
                and action.option_strings and "default" not in text):
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, like every other usage error; the full usage is one --help away.
        sys.stderr.write(f"{self.prog}: error: {_one_line(message)} (see '{self.prog} --help')\n")
        raise SystemExit(EXIT_BAD_INPUT)


def _one_line(text: object) -> str:
    return " ".join(str(text).split("\n")).strip()


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given ``argv``, only the command it names gets its options (the others
    are listed by name and help), so ``lowbit --help`` imports nothing heavy."""
    parser = _Parser(prog="lowbit", description="Deploy trained neural networks at lower "
                     "precision: calibrate, quantize, validate against float, and benchmark.")
    parser.add_argument("--version", action="version", version=f"lowbit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what each stage does")
    parser.add_argument("--ops", action="append", metavar="FILE.py", default=[],
                        help="a Python file run before the command that registers custom "
                        "operators (lowbit.ops.python_op), so every command runs models that "
                        "use them; may be given more than once")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    chosen = None if argv is None else next((a for a in argv if a in COMMANDS), "")
    for command in COMMANDS.values():
        made = add_command(sub, command, full=chosen is None or chosen == command.name)
        # -v also after the command: lowbit deploy -v …
        made.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                          help="log what each stage does")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        with terminate_cleanly():  # SIGTERM/SIGHUP unwind like Ctrl-C: no temp files left
            if args.ops:
                from lowbit.ops.load import load_op_file

                for path in args.ops:
                    load_op_file(path)
            return int(args.run(args))
    except LowbitError as err:  # named as the command line spells its options
        err = for_command_line(err, command_parser(parser, args.command), args.command)
        sys.stderr.write(f"lowbit {args.command}: error: {_one_line(err)}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except Terminated as err:
        sys.stderr.write(f"lowbit {args.command}: stopped by {err.signal_name}; files being "
                         f"written were removed, earlier ones kept\n")
        return 128 + err.signum


if __name__ == "__main__":
    raise SystemExit(main())
