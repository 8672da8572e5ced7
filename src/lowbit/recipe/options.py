"""deploy's flat keywords (and, with dashes, its flags) onto the recipe's fields.

    apply_options(Recipe(), {"quantize": "INT8", "smooth": 0.8})
    keyword_for("smooth.alpha")          # "smooth": the keyword that sets the field

One table, OPTIONS: each keyword with the field it sets and how its value reads.
Values keep the forms deploy has always taken (``adaround`` a data set or True,
``bias_correction`` a data set or False, ``smooth`` a number, "auto" or "off").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from lowbit.errors import RecipeError


@dataclass(frozen=True)
class Option:
    """A keyword: the recipe field it sets (``section.name`` or a top-level name) and
    how its value becomes the field's (``read``: value → {field: value})."""

    keyword: str
    field: str
    read: Callable[[Any], dict[str, Any]] | None = None

    def values(self, value: Any) -> dict[str, Any]:
        return self.read(value) if self.read is not None else {self.field: value}


def _bias(value: Any) -> dict[str, Any]:
    if value is False:
        return {"bias_correction.source": "off", "bias_correction.data": None}
    if value is True or value is None:
        return {"bias_correction.source": "table", "bias_correction.data": None}
    return {"bias_correction.source": "data", "bias_correction.data": value}


def _smooth(value: Any) -> dict[str, Any]:
    if value is None:
        return {"smooth.alpha": "default"}
    return {"smooth.alpha": "off" if value is False else value}


def _section_switch(section: str) -> Callable[[Any], dict[str, Any]]:
    """``equalize``/``adaround``: False or None off, True on with the shared data, a
    data set on with that data."""
    def read(value: Any) -> dict[str, Any]:
        if value is None or value is False:
            return {section: None}
        if value is True:
            return {section: {}, f"{section}.data": None}
        return {section: {}, f"{section}.data": value}
    return read


def _keep_float(value: Any) -> dict[str, Any]:
    if value is None:
        from lowbit.quantize.floats.convert import DEFAULT_KEEP_FLOAT

        return {"floats.keep_float": DEFAULT_KEEP_FLOAT}
    return {"floats.keep_float": value}


OPTIONS: dict[str, Option] = {option.keyword: option for option in (
    Option("quantize", "precision"),
    Option("calibration_table", "calibration_table"),
    Option("quantize_table", "quantize_table"),
    Option("calibration_data", "calibration_data"),
    Option("backend", "backend"),
    Option("memory_budget", "memory_budget"),
    Option("input_shapes", "input_shapes"),
    Option("test_input", "validation.data"),
    Option("test_reference", "validation.reference"),
    Option("float_model", "validation.float_model"),
    Option("tolerance", "validation.tolerance",
           lambda v: {"validation.tolerance": v if v is not None else "0.99,0.90"}),
    Option("activation", "int8.activation"),
    Option("per_channel", "int8.per_channel"),
    Option("format", "int8.format"),
    Option("weight_range", "int8.weight_range"),
    Option("weight_bits", "int8.weight_bits"),
    Option("quantize_attention", "int8.quantize_attention"),
    Option("dynamic", "int8.dynamic"),
    Option("smooth", "smooth.alpha", _smooth),
    Option("smooth_data", "smooth.data"),
    Option("equalize", "equalize", _section_switch("equalize")),
    Option("equalize_relu6", "equalize.relu6"),
    Option("adaround", "adaround", _section_switch("adaround")),
    Option("adaround_iterations", "adaround.iterations"),
    Option("bias_correction", "bias_correction.source", _bias),
    Option("block_size", "w4.block_size"),
    Option("algorithm", "w4.algorithm"),
    Option("symmetric_weights", "w4.symmetric"),
    Option("act_order", "w4.act_order"),
    Option("float_embeddings", "w4.float_embeddings"),
    Option("float_method", "floats.method"),
    Option("keep_io_types", "floats.keep_io_types"),
    Option("keep_float", "floats.keep_float", _keep_float),
    Option("speed", "speed"),
    Option("speed_batch", "speed_batch"),
    Option("target", "target"),
    Option("requantize", "requantize"),
    Option("float_weights", "float_weights"),
    Option("keep_scales", "keep_scales"),
)}
ALIASES = {"method": "float_method"}  # deploy's old name for the F16/BF16 method

#: fields set by a keyword other than the one named like them
_KEYWORD_OF_FIELD = {"equalize.data": "equalize", "adaround.data": "adaround",
                     "bias_correction.data": "bias_correction", "smooth": "smooth"}


def keyword_for(field_name: str) -> str:
    """The keyword that sets ``field_name`` (a dotted recipe field)."""
    if field_name in _KEYWORD_OF_FIELD:
        return _KEYWORD_OF_FIELD[field_name]
    for option in OPTIONS.values():
        if option.field == field_name:
            return option.keyword
    return field_name


def apply_options(base: Any, options: Mapping[str, Any]) -> Any:
    """``base`` (a Recipe, or a recipe file's tables not yet checked) with the keywords in
    ``options`` applied, validated once: a file that needs a flag's setting is fine."""
    from lowbit.recipe.recipe import Recipe, _defaults

    unknown = sorted(set(options) - set(OPTIONS) - set(ALIASES))
    if unknown:
        raise RecipeError(f"unknown deploy option '{unknown[0]}'; known: "
                          f"{', '.join(sorted(OPTIONS))}")
    given = {ALIASES.get(keyword, keyword): value for keyword, value in options.items()}
    tree = _as_tree(base) if not isinstance(base, Mapping) else _merged(_defaults(), base)
    for keyword in [k for k in OPTIONS if k in given]:  # a section before its settings
        for name, new in OPTIONS[keyword].values(given[keyword]).items():
            section, _, key = name.partition(".")
            if not key:
                tree[section] = new
                continue
            if tree.get(section) is None:
                if new == _default_of(section, key):
                    continue  # a section's default setting while the section is off
                raise RecipeError(f"{{{name}}} applies to {{{section}}}, which is not asked "
                                  "for")
            tree[section][key] = new
    return Recipe.from_dict(tree)


def _merged(defaults: Any, document: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults' tree with a recipe file's settings over it (unknown keys are left for
    Recipe.from_dict to refuse)."""
    tree = _as_tree(defaults)
    for key, value in document.items():
        if isinstance(value, Mapping) and isinstance(tree.get(key), dict):
            tree[key] = {**tree[key], **value}
        elif isinstance(value, Mapping) and key in ("equalize", "adaround"):
            tree[key] = dict(value)
        else:
            tree[key] = value
    return tree


def _as_tree(recipe: Any) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for f in fields(recipe):
        value = getattr(recipe, f.name)
        if hasattr(value, "__dataclass_fields__"):
            value = {g.name: getattr(value, g.name) for g in fields(value)}
        tree[f.name] = value
    return tree


def _default_of(section: str, key: str) -> Any:
    from lowbit.recipe.recipe import AdaRounding, Equalization

    kind = {"equalize": Equalization, "adaround": AdaRounding}.get(section)
    return getattr(kind(), key) if kind is not None else None
