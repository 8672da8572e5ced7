"""Parse option values given on the command line into API types.

    parse_shapes("[[1,3,224,224]]")          # [(1, 3, 224, 224)]
    parse_shapes("input:1,3,224,224")        # {"input": (1, 3, 224, 224)}
    parse_shapes("[[1,3,224,224],[]]")       # a second input that is a scalar: ()
    parse_shapes("x:1,3,48,192;sr:")         # {"x": (1, 3, 48, 192), "sr": ()}
    parse_floats("123.675,116.28,103.53")    # (123.675, 116.28, 103.53)
"""

from __future__ import annotations

import json
import math

from lowbit.arguments import MAX_DIM, shapes
from lowbit.errors import ArgumentError, UsageError

MAX_TEXT = 65536  # characters of one option value that holds a list


def parse_shapes(text: str | None) -> dict[str, tuple[int, ...]] | list[tuple[int, ...]] | None:
    """Shapes from the option's text; checked as the API checks them (lowbit.arguments:
    whole numbers from 1 to MAX_DIM, at most MAX_RANK dims), so a 5,000-digit dim or
    60,000 brackets is one line naming the option."""
    if text is None:
        return None
    text = text.strip()
    shown = text if len(text) <= 60 else text[:40] + f"... ({len(text)} characters)"
    if len(text) > MAX_TEXT:
        raise ArgumentError(f"{{input_shapes}} is {len(text)} characters long; at most "
                            f"{MAX_TEXT}")
    if text.startswith("["):
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as err:  # bad JSON, a >4300-digit int, nesting
            raise ArgumentError(f"{{input_shapes}} '{shown}' is not a list such as "
                                "[[1,3,224,224]]") from err
        if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
            value = [value]
        if not (isinstance(value, list) and all(isinstance(s, list) for s in value)):
            raise ArgumentError(f"{{input_shapes}} '{shown}' must be a list of shapes")
        return shapes(value)
    parsed: dict[str, list[int]] = {}
    for part in text.split(";"):
        name, sep, dims = part.rpartition(":")
        if not sep or not name.strip():
            raise ArgumentError(f"{{input_shapes}} '{shown}': expected NAME:d0,d1,... or "
                                "[[d0,d1,...]]")
        try:
            parsed[name.strip()] = [int(v) for v in dims.split(",")] if dims.strip() else []
        except ValueError as err:
            raise ArgumentError(f"{{input_shapes}} '{shown}': dimensions must be whole "
                                f"numbers from 1 to {MAX_DIM}") from err
    return shapes(parsed)


def parse_floats(text: str | None, option: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError as err:
        raise UsageError(f"{option} '{text[:60]}' must be comma-separated numbers") from err
    if not all(math.isfinite(v) for v in values):
        raise UsageError(f"{option} '{text[:60]}' must be finite numbers")
    return values


def parse_ints(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError as err:
        raise UsageError(f"{option} '{text[:60]}' must be comma-separated integers") from err
    if any(not 0 < v <= MAX_DIM for v in values):
        raise UsageError(f"{option} '{text[:60]}' must be whole numbers from 1 to {MAX_DIM}")
    return values
