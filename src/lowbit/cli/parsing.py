"""Parse option values given on the command line into API types.

    parse_shapes("[[1,3,224,224]]")          # [(1, 3, 224, 224)]
    parse_shapes("input:1,3,224,224")        # {"input": (1, 3, 224, 224)}
    parse_shapes("[[1,3,224,224],[]]")       # a second input that is a scalar: ()
    parse_shapes("x:1,3,48,192;sr:")         # {"x": (1, 3, 48, 192), "sr": ()}
    parse_floats("123.675,116.28,103.53")    # (123.675, 116.28, 103.53)
"""

from __future__ import annotations

import json

from lowbit.errors import UsageError


def parse_shapes(text: str | None) -> dict[str, tuple[int, ...]] | list[tuple[int, ...]] | None:
    if text is None:
        return None
    text = text.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise UsageError(f"--input-shapes '{text}' is not a list such as [[1,3,224,224]]"
                             ) from err
        if value and all(isinstance(v, int) for v in value):
            value = [value]
        if not (isinstance(value, list) and all(isinstance(s, list) for s in value)):
            raise UsageError(f"--input-shapes '{text}' must be a list of shapes")
        return [_dims(s, text) for s in value]
    shapes: dict[str, tuple[int, ...]] = {}
    for part in text.split(";"):
        name, sep, dims = part.rpartition(":")
        if not sep or not name:
            raise UsageError(f"--input-shapes '{text}': expected NAME:d0,d1,... or [[d0,d1,...]]")
        shapes[name.strip()] = _dims(dims.split(",") if dims.strip() else [], text)
    return shapes


def _dims(values: object, text: str) -> tuple[int, ...]:
    """The dims of one shape; none at all is a scalar's shape."""
    try:
        dims = tuple(int(v) for v in values)  # type: ignore[attr-defined]
    except (TypeError, ValueError) as err:
        raise UsageError(f"--input-shapes '{text}': dimensions must be integers") from err
    if any(d <= 0 for d in dims):
        raise UsageError(f"--input-shapes '{text}': dimensions must be positive")
    return dims


def parse_floats(text: str | None, option: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError as err:
        raise UsageError(f"{option} '{text}' must be comma-separated numbers") from err


def parse_ints(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError as err:
        raise UsageError(f"{option} '{text}' must be comma-separated integers") from err
    if any(v <= 0 for v in values):
        raise UsageError(f"{option} '{text}' must be positive integers")
    return values
