"""Recipes as TOML files: what ``deploy --recipe`` reads and ``--print-recipe`` writes.

    recipe = read_recipe("int8.toml")
    text = recipe_text(recipe)        # every setting, defaults included
    write_recipe(recipe, "int8.toml")

A recipe file is a TOML document: top-level settings, then one table per section
(``[int8]``, ``[smooth]``, ``[equalize]``, ``[adaround]``, ``[bias_correction]``,
``[w4]``, ``[floats]``, ``[validation]``); a missing key takes its default, an
``[equalize]`` or ``[adaround]`` table turns that step on. Paths are relative to the
folder deploy runs in.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from lowbit.analysis.validate import Tolerance
from lowbit.atomic import write_text_atomic
from lowbit.calibration.table import CalibrationTable
from lowbit.errors import RecipeError
from lowbit.recipe.recipe import Recipe

HEADER = "# lowbit recipe v1"


def read_recipe(path: str | Path) -> Recipe:
    """The recipe in the TOML file at ``path``."""
    return parse_recipe(_text(Path(path)), str(path))


def read_recipe_document(path: str | Path) -> dict[str, Any]:
    """The TOML file at ``path`` as tables, not yet checked as a recipe (deploy applies its
    flags first: ``Recipe.from_options(read_recipe_document(path), **flags)``)."""
    try:
        return tomllib.loads(_text(Path(path)))
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"{path} is not valid TOML: {err}") from None


def _text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"recipe file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise RecipeError(f"cannot read the recipe {path}: {err}") from None
    return text


def parse_recipe(text: str, source: str = "the recipe") -> Recipe:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"{source} is not valid TOML: {err}") from None
    try:
        return Recipe.from_dict(data)
    except RecipeError as err:
        raise RecipeError(f"{source}: {err}") from None


def recipe_text(recipe: Recipe) -> str:
    """The recipe as a TOML document, every setting written out."""
    lines = [HEADER]
    tables: list[tuple[str, Any]] = []
    for f in fields(recipe):
        value = getattr(recipe, f.name)
        if isinstance(value, CalibrationTable):
            lines.append(f"# {f.name}: a table given in memory ({len(value.ranges)} tensors)")
        elif hasattr(value, "__dataclass_fields__"):
            tables.append((f.name, value))
        elif value is not None:
            lines.append(f"{f.name} = {_toml_value(value)}")
    for name, section in tables:
        lines += ["", f"[{name}]"]
        for g in fields(section):
            value = getattr(section, g.name)
            if value is not None:
                lines.append(f"{g.name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def write_recipe(recipe: Recipe, path: str | Path) -> Path:
    return write_text_atomic(Path(path), recipe_text(recipe))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        return json.dumps(value.as_posix(), ensure_ascii=False)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Tolerance):
        return f"[{value.cosine!r}, {value.euclid!r}]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")
