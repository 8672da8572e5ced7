"""Checks of a verb's arguments, made before anything is read or written.

    model = path(model, "model")                         # a str or os.PathLike
    num = count(num, "num", optional=True)               # None, or 1 .. MAX_COUNT
    percentile = number(percentile, "percentile", low=0, high=100, low_open=True)
    method = choice(method, METHODS, "method")
    input_shapes = shapes(input_shapes, "input_shapes")  # names or a list, dims bounded
    check_memory(batch * sample_bytes, "batches", "a batch of 100000000 samples")

Each raises :class:`lowbit.errors.ArgumentError` naming the argument as ``{name}``: a
Python caller reads the keyword it typed (``num``), the command line its flag
(``--num``; lowbit.cli renders it). Every bound is a constant here, so an absurd value
(10**30 samples, a 5,000-digit dimension) is one line naming the limit, never a
traceback or an allocation that cannot succeed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lowbit.errors import ArgumentError

MAX_COUNT = 2**31 - 1     # samples, repeats, classes, iterations: an int32
MAX_DIM = 2**31 - 1       # one dimension of an input shape (ONNX Runtime's practical limit)
MAX_RANK = 16             # dimensions of one input shape
MAX_INPUTS = 4096         # shapes in one input_shapes
MAX_THREADS = 1024        # engine threads
MAX_BINS = 1 << 16        # calibration histogram bins (each tensor keeps 2 x bins float64s)
MAX_NAME, MAX_PATH = 255, 4095  # bytes of a file name and of a path (Linux, macOS, Windows)


def path(value: Any, name: str) -> Path:
    """A file or folder path: a non-empty str or an os.PathLike."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ArgumentError(f"{{{name}}} must be a path (a str or os.PathLike); got "
                            f"{_shown(value)}")
    longest = max((len(os.fsencode(part)) for part in Path(value).parts), default=0)
    if longest > MAX_NAME or len(os.fsencode(value)) > MAX_PATH:
        raise ArgumentError(f"{{{name}}} {_shown(value)} is longer than a file system allows "
                            f"({MAX_NAME} bytes a name, {MAX_PATH} a path)")
    return Path(value)


def folder(value: Any, name: str) -> Path:
    """A path for a folder a verb writes into: not an existing file."""
    found = path(value, name)
    if found.exists() and not found.is_dir():
        raise ArgumentError(f"{{{name}}} {found} is a file; give a folder (new or existing) "
                            "for the files it writes")
    return found


def optional_path(value: Any, name: str) -> Path | None:
    return None if value is None else path(value, name)


def paths(value: Any, name: str) -> list[Path]:
    """A non-empty list of paths (not one str)."""
    if isinstance(value, str | os.PathLike) or not isinstance(value, Sequence) or not value:
        raise ArgumentError(f"{{{name}}} must be a list of file paths; got {_shown(value)}")
    return [path(item, name) for item in value]


def count(value: Any, name: str, *, minimum: int = 1, maximum: int = MAX_COUNT) -> int:
    """A whole number in [minimum, maximum] (a numpy integer counts; a bool, a str or a
    float does not)."""
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentError(f"{{{name}}} must be a whole number from {minimum} to {maximum}; "
                            f"got {_shown(value)}")
    if not minimum <= value <= maximum:
        raise ArgumentError(f"{{{name}}} must be from {minimum} to {maximum}; got "
                            f"{_number_text(value)}")
    return value


def optional_count(value: Any, name: str, *, minimum: int = 1,
                   maximum: int = MAX_COUNT) -> int | None:
    return None if value is None else count(value, name, minimum=minimum, maximum=maximum)


def threads(value: Any, name: str = "threads") -> int | None:
    """Engine threads: None (the engine's default) or 1 .. MAX_THREADS."""
    return optional_count(value, name, maximum=MAX_THREADS)


def number(value: Any, name: str, *, low: float = -math.inf, high: float = math.inf,
           low_open: bool = False) -> float:
    """A finite real number in [low, high] (or (low, high] with ``low_open``)."""
    if isinstance(value, np.integer | np.floating):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArgumentError(f"{{{name}}} must be a number; got {_shown(value)}")
    value = float(value)
    too_low = value <= low if low_open else value < low
    if not math.isfinite(value) or too_low or value > high:
        bracket = "(" if low_open else "["
        raise ArgumentError(f"{{{name}}} must lie in {bracket}{_number_text(low)}, "
                            f"{_number_text(high)}]; got {value!r}")
    return value


def flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise ArgumentError(f"{{{name}}} must be True or False; got {_shown(value)}")
    return bool(value)


def choice(value: Any, choices: Sequence[Any], name: str) -> Any:
    if isinstance(value, bool) or not _hashable(value) or value not in choices:
        raise ArgumentError(f"{{{name}}} must be one of {', '.join(map(str, choices))}; got "
                            f"{_shown(value)}")
    return value


def text(value: Any, name: str) -> str:
    """A non-empty str."""
    if not isinstance(value, str) or not value.strip():
        raise ArgumentError(f"{{{name}}} must be a non-empty string; got {_shown(value)}")
    return value


def optional_text(value: Any, name: str) -> str | None:
    return None if value is None else text(value, name)


def names(value: Any, name: str) -> tuple[str, ...] | None:
    """None or a list of non-empty names (not one str)."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence) \
            or not all(isinstance(item, str) and item.strip() for item in value):
        raise ArgumentError(f"{{{name}}} must be a list of names; got {_shown(value)}")
    return tuple(value)


def instance(value: Any, kind: type, name: str, what: str) -> Any:
    """``value`` when it is None or a ``kind`` (``what`` says how to make one)."""
    if value is not None and not isinstance(value, kind):
        raise ArgumentError(f"{{{name}}} must be {what}; got {_shown(value)}")
    return value


Shapes = dict[str, tuple[int, ...]] | list[tuple[int, ...]]


def shapes(value: Any, name: str = "input_shapes") -> Shapes | None:
    """Input shapes: a mapping from input names to shapes, or a list with one shape per
    input in order; each shape a list of whole numbers from 1 to MAX_DIM (an empty one
    is a scalar's). A str is refused (it is not seven one-letter shapes)."""
    if value is None:
        return None
    what = (f"{{{name}}} must map input names to shapes or list one shape per input, each "
            f"a list of whole numbers from 1 to {MAX_DIM}")
    if isinstance(value, Mapping):
        items = list(value.items())
        if not all(isinstance(key, str) and key for key, _ in items):
            raise ArgumentError(f"{what}; got names {_shown(list(value))}")
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        items = [(str(index), dims) for index, dims in enumerate(value)]
    else:
        raise ArgumentError(f"{what}; got {_shown(value)}")
    if not items or len(items) > MAX_INPUTS:
        raise ArgumentError(f"{what}; got {len(items)} shapes")
    checked = {key: _dims(dims, what) for key, dims in items}
    if isinstance(value, Mapping):
        return checked
    return list(checked.values())


def _dims(dims: Any, what: str) -> tuple[int, ...]:
    if isinstance(dims, str | bytes) or not isinstance(dims, Sequence) or len(dims) > MAX_RANK:
        raise ArgumentError(f"{what} (rank at most {MAX_RANK}); got {_shown(dims)}")
    out = []
    for dim in dims:
        if isinstance(dim, np.integer):
            dim = int(dim)
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= MAX_DIM:
            raise ArgumentError(f"{what}; got {_shown(dims)}")
        out.append(dim)
    return tuple(out)


# --------------------------------------------------------------------------- memory


def check_memory(need: int, name: str, what: str, budget: int | None = None) -> None:
    """Refuse, naming argument ``name``, a request whose memory ``need`` (bytes, an
    estimate made before anything is allocated) cannot fit (:func:`memory_refusal`)."""
    refusal = memory_refusal(need, what, budget)
    if refusal is not None:
        raise ArgumentError(f"{{{name}}}: {refusal}")


def memory_refusal(need: int, what: str, budget: int | None = None) -> str | None:
    """Why ``need`` bytes cannot fit, or None where they can: over ``budget`` when one is
    given, else over the memory the machine has available now. ``what`` says what needs
    them ("batch 100000000")."""
    limit, of = (budget, "the memory budget") if budget is not None else \
        (available_memory(), "the memory available")
    if limit is None or need <= limit:
        return None
    return (f"{what} would take about {format_size(need)}, more than {of} "
            f"({format_size(limit)})")


def available_memory() -> int | None:
    """What the machine has available now (Linux MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) << 10
    except (OSError, ValueError, IndexError):
        pass
    return None


def format_size(size: float) -> str:
    """``805306368`` -> ``768 MiB``."""
    for unit, scale in (("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20),
                        ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{int(size)} B"


# --------------------------------------------------------------------------- helpers


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _shown(value: Any) -> str:
    """A value as an error shows it: its repr, cut short (a 5,000-digit number or a
    60,000-character string stays one readable line)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _number_text(value)
    try:
        text = repr(value)
    except ValueError:  # it holds an int of more digits than str() converts
        return f"a {type(value).__name__} holding a number of over 4300 digits"
    return text if len(text) <= 80 else text[:60] + f"... ({len(text)} characters)"


def _number_text(value: float) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) >= 10**15:  # str() of a 5,000-digit int is itself an error
            digits = int(abs(value).bit_length() * math.log10(2)) + 1
            return f"{'-' if value < 0 else ''}a number of about {digits} digits"
        return str(value)
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:g}"
