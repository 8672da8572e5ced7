"""Errors raised by lowbit.

Every error a user can cause derives from :class:`LowbitError`; the CLI prints
its message on one line and exits with code 2 (bad input) without a traceback::

    try:
        lowbit.calibrate("model.onnx", dataset="calib.npz")
    except LowbitError as err:
        print(f"error: {err}")

Messages name the file, tensor or node, what was expected and what was found.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Self


class LowbitError(Exception):
    """Base class of every error lowbit raises for bad input or usage.

    A message may name the caller's arguments as ``{keyword}`` placeholders (a lower-case
    name in braces): they read as the Python keyword (``num``) by default, and the CLI
    renders them as its flags (``--num``) through :meth:`renamed`, so every caller reads
    the name they typed::

        raise DatasetError(f"{path} has no labels; give {{labels}}")
    """

    def __init__(self, template: object = "") -> None:
        self.template = str(template)
        super().__init__(self.rendered(lambda name: name))

    def rendered(self, name_of: Callable[[str], str]) -> str:
        return _PLACEHOLDER.sub(lambda match: name_of(match.group(1)), self.template)

    def renamed(self, name_of: Callable[[str], str]) -> Self:
        """The same error with its arguments named by ``name_of`` (a keyword, a flag)."""
        renamed = copy.copy(self)
        renamed.args = (self.rendered(name_of),)
        return renamed


class ModelError(LowbitError):
    """A model file is missing, unreadable, invalid or has an unsupported form."""


class DatasetError(LowbitError):
    """A data set is missing, empty, or does not match the model's inputs."""


class CalibrationError(LowbitError):
    """Calibration could not produce a usable table."""


class UnsupportedOpError(LowbitError):
    """An operator has no rule where one is required."""


class UsageError(LowbitError):
    """An option or argument has a value lowbit cannot use."""


def install_hint(extra: str) -> str:
    """How to install one of lowbit's optional extras, from a source checkout or an
    installed package (torch first, pinned, for the extras that pull it in)."""
    first = "pip install torch==2.13.0, then " if extra in ("torch", "bench") else ""
    return f"{first}pip install '.[{extra}]' in lowbit's source folder (or 'lowbit[{extra}]')"


class ArgumentError(UsageError):
    """An argument of a verb has a value lowbit cannot use (lowbit.arguments checks them
    before anything is read or written); the message names it as ``{keyword}``."""


class RecipeError(ArgumentError):
    """A recipe setting lowbit cannot use. The message names its settings as
    ``{section.field}`` placeholders, rendered as the recipe's own dotted names by
    default; the CLI renders them as its flags and the Python API as its keywords
    (``renamed``), so every caller reads the name they typed."""


_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*)\}")
