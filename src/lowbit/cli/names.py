"""Errors as a command-line user reads them: the API's keywords renamed to the flags.

    err = for_command_line(err, command_parser, "calibrate")   # "{num}" -> "--num"

lowbit's errors name the caller's arguments as ``{keyword}`` placeholders
(lowbit.errors.LowbitError). For the command line each keyword becomes the flag that
sets it, found in the command's own parser, so a renamed or aliased option is named as
``--help`` shows it: the action whose dest is the keyword; else the action with the
option ``--keyword`` (or ``--no-keyword``, for a switch the CLI turns off); a
positional argument by its metavar (``MODEL``). KEYWORDS lists the keywords whose
option has another name. A keyword no option sets is shown as ``--keyword``.
Deploy's recipe errors (RecipeError) name recipe fields; lowbit.cli.deploy renders them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from lowbit.errors import LowbitError, RecipeError

#: per command, API keyword -> the dest of the option that sets it (where they differ)
KEYWORDS: dict[str, dict[str, str]] = {
    "transform": {"input_names": "inputs", "output_names": "outputs"},
    "compare": {"reference_model": "reference", "test_model": "test"},
    "eval": {"metrics": "metric"},
    "report": {"variants": "models"},
    "bench": {"batches": "batch", "models": "model"},
    "classify": {"image": "input"},
    "quantize": {"dataset": "data"},
}
#: keywords set by several options
SHOWN = {"image_options": "--mean, --scale, --pixel-format, --resize and --crop"}
#: a data set is --data in every command (older spellings: hidden aliases)
_DATA_KEYWORDS = ("dataset", "inputs", "data")


def for_command_line(err: LowbitError, parser: argparse.ArgumentParser | None,
                     command: str | None) -> LowbitError:
    """``err`` with its keywords named as ``parser``'s options (RecipeErrors as they are:
    lowbit.cli.deploy names their fields)."""
    if isinstance(err, RecipeError) or parser is None:
        return err
    return err.renamed(flag_namer(parser, command))


def flag_namer(parser: argparse.ArgumentParser, command: str | None) -> Callable[[str], str]:
    """keyword -> the flag (or positional metavar) that sets it in ``parser``."""
    actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    by_dest: dict[str, argparse.Action] = {}
    for action in actions:  # the visible spelling over a hidden alias of the same dest
        current = by_dest.get(action.dest)
        if current is None or (current.help == argparse.SUPPRESS
                               and action.help != argparse.SUPPRESS):
            by_dest[action.dest] = action
    by_option = {option: action for action in actions for option in action.option_strings}
    aliases = KEYWORDS.get(command or "", {})

    def shown(action: argparse.Action) -> str:
        primary = by_dest.get(action.dest, action)
        if not primary.option_strings:
            metavar = primary.metavar if isinstance(primary.metavar, str) else None
            return metavar or primary.dest.upper()
        return primary.option_strings[0]

    def name_of(keyword: str) -> str:
        if keyword in SHOWN:
            return SHOWN[keyword]
        dest = aliases.get(keyword, keyword)
        if dest in by_dest:
            return shown(by_dest[dest])
        dashed = "--" + keyword.replace("_", "-")
        for option in (dashed, "--no-" + keyword.replace("_", "-")):
            if option in by_option:
                return shown(by_option[option])
        if keyword in _DATA_KEYWORDS and "data" in by_dest:
            return shown(by_dest["data"])
        return dashed

    return name_of


def command_parser(parser: argparse.ArgumentParser, command: str | None
                   ) -> argparse.ArgumentParser | None:
    """The sub-parser of ``command`` in lowbit's top-level ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found = action.choices.get(command or "")
            return found if isinstance(found, argparse.ArgumentParser) else None
    return None
