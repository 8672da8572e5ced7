"""The plan of a deploy: one frozen recipe, validated once, before anything is read.

    recipe = Recipe(precision="INT8", calibration_table=Path("work/model.calib"),
                    smooth=Smoothing(alpha=0.8), adaround=AdaRounding(iterations=500),
                    calibration_data=Path("calib.npz"))
    recipe = Recipe.from_options(quantize="INT8", calibration_table="work/model.calib")
    recipe = Recipe.from_dict(tomllib.load(file))            # lowbit.recipe.toml
    recipe.smooth_data, recipe.adaround_data                  # which data set each step reads

Every setting a deploy decides lives here: the precision, the INT8 formats and
weight grids, the preparation steps (SmoothQuant, cross-layer equalization, AdaRound,
bias correction, GPTQ) with their own settings, the mixed-precision table, the
validation gate and the engine. A mistake raises RecipeError whose message names each
setting as ``{section.field}``; ``from_options`` re-renders them as its keywords and the
CLI as its flags. Settings that do not apply to the precision are refused, not ignored.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from lowbit.analysis.validate import Tolerance
from lowbit.arguments import path as checked_path
from lowbit.arguments import shapes as checked_shapes
from lowbit.calibration.table import CalibrationTable
from lowbit.errors import ArgumentError, LowbitError, RecipeError
from lowbit.quantize.floats.convert import DEFAULT_KEEP_FLOAT
from lowbit.quantize.floats.convert import METHODS as FLOAT_METHODS
from lowbit.quantize.int8.settings import (
    ACTIVATION_TYPES,
    FORMATS,
    WEIGHT_BITS,
    WEIGHT_RANGES,
    QuantizeSettings,
)
from lowbit.quantize.prepare.equalize import RELU6_MODES
from lowbit.quantize.w4.blockwise import BLOCK_SIZES
from lowbit.quantize.w4.weight_only import ALGORITHMS, WeightOnlySettings
from lowbit.runtime.backends import BACKENDS

PRECISIONS = ("INT8", "F16", "BF16", "W4")
SMOOTH_WORDS = ("default", "auto", "off")
BIAS_SOURCES = ("table", "data", "off")
SPEED_CHECKS = ("guard", "off")

Shapes = Mapping[str, tuple[int, ...]] | Sequence[tuple[int, ...]]


@dataclass(frozen=True)
class Int8Options:
    """INT8 formats and grids (lowbit.quantize.int8.settings says what each means)."""

    activation: str = "uint8"
    per_channel: bool = True
    format: str = "qdq"
    weight_range: str = "auto"
    weight_bits: int = 8
    quantize_attention: bool = False
    dynamic: bool = False

    def __post_init__(self) -> None:
        _choice(self.activation, ACTIVATION_TYPES, "int8.activation")
        _flag(self.per_channel, "int8.per_channel")
        _choice(self.format, FORMATS, "int8.format")
        _choice(self.weight_range, WEIGHT_RANGES, "int8.weight_range")
        _choice(self.weight_bits, WEIGHT_BITS, "int8.weight_bits")
        _flag(self.quantize_attention, "int8.quantize_attention")
        _flag(self.dynamic, "int8.dynamic")

    def settings(self) -> QuantizeSettings:
        return QuantizeSettings(activation=self.activation, per_channel=self.per_channel,
                                format=self.format, weight_range=self.weight_range,
                                quantize_attention=self.quantize_attention,
                                weight_bits=self.weight_bits)


@dataclass(frozen=True)
class Smoothing:
    """SmoothQuant before static or dynamic INT8. ``alpha``: "default" (0.8 from the
    calibration table's channel ranges for a transformer's static INT8, else none), a
    number in [0, 1], "auto" (searched on ``data``) or "off". ``data``: samples to
    measure on (default: the recipe's calibration_data); a number without data uses the
    table's channel ranges."""

    alpha: float | str = "default"
    data: Path | None = None

    def __post_init__(self) -> None:
        alpha = self.alpha
        if isinstance(alpha, str) and alpha.strip().lower() in SMOOTH_WORDS:
            object.__setattr__(self, "alpha", alpha.strip().lower())
        else:
            try:
                value = float(alpha)
            except (TypeError, ValueError):
                raise RecipeError(f"{{smooth.alpha}} must be a number in [0, 1], 'auto' or "
                                  f"'off'; got {alpha!r}") from None
            if isinstance(alpha, bool) or math.isnan(value) or not 0.0 <= value <= 1.0:
                raise RecipeError(f"{{smooth.alpha}} must lie in [0, 1]; got {alpha!r}")
            object.__setattr__(self, "alpha", value)
        object.__setattr__(self, "data", _path(self.data, "smooth.data"))

    @property
    def off(self) -> bool:
        return self.alpha == "off"

    @property
    def asked(self) -> bool:
        """Whether the user asked for smoothing (not the transformer default)."""
        return self.alpha not in ("default", "off")


@dataclass(frozen=True)
class Equalization:
    """Cross-layer equalization of Conv pairs; ``data`` re-measures the ranges it changes
    (default: the AdaRound, bias-correction or calibration data)."""

    data: Path | None = None
    relu6: str = "bound"

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", _path(self.data, "equalize.data"))
        _choice(self.relu6, RELU6_MODES, "equalize.relu6")


@dataclass(frozen=True)
class AdaRounding:
    """Learned rounding on the first 128 samples of ``data`` (default: calibration_data)."""

    data: Path | None = None
    iterations: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", _path(self.data, "adaround.data"))
        _count(self.iterations, "adaround.iterations")


@dataclass(frozen=True)
class BiasCorrection:
    """``source`` "table" (the calibration table's input means, no data), "data" (the
    first 32 samples of ``data``) or "off"."""

    source: str = "table"
    data: Path | None = None

    def __post_init__(self) -> None:
        _choice(self.source, BIAS_SOURCES, "bias_correction.source")
        object.__setattr__(self, "data", _path(self.data, "bias_correction.data"))
        if (self.source == "data") != (self.data is not None):
            raise RecipeError("{bias_correction.source} 'data' and {bias_correction.data} "
                              "go together: give both or neither")


@dataclass(frozen=True)
class WeightOnly:
    """W4 (MatMulNBits): lowbit.quantize.w4.weight_only.WeightOnlySettings."""

    block_size: int = 32
    algorithm: str = "rtn"
    symmetric: bool = False
    act_order: bool = False
    float_embeddings: bool = False

    def __post_init__(self) -> None:
        _choice(self.block_size, BLOCK_SIZES, "w4.block_size")
        _choice(self.algorithm, ALGORITHMS, "w4.algorithm")
        _flag(self.symmetric, "w4.symmetric")
        _flag(self.act_order, "w4.act_order")
        _flag(self.float_embeddings, "w4.float_embeddings")
        if self.act_order and self.algorithm != "gptq":
            raise RecipeError("{w4.act_order} applies to {w4.algorithm} gptq only")

    def settings(self) -> WeightOnlySettings:
        return WeightOnlySettings(block_size=self.block_size, algorithm=self.algorithm,
                                  symmetric=self.symmetric, act_order=self.act_order,
                                  embeddings=not self.float_embeddings)


@dataclass(frozen=True)
class FloatConversion:
    """F16/BF16: ``method`` cast (F32 weights, Casts) or full (low-type weights);
    ``keep_float`` op types or node names that stay F32."""

    method: str = "cast"
    keep_io_types: bool = True
    keep_float: tuple[str, ...] = DEFAULT_KEEP_FLOAT

    def __post_init__(self) -> None:
        _choice(self.method, FLOAT_METHODS, "floats.method")
        _flag(self.keep_io_types, "floats.keep_io_types")
        if isinstance(self.keep_float, str) or not isinstance(self.keep_float, Sequence) \
                or not all(isinstance(k, str) and k.strip() for k in self.keep_float):
            raise RecipeError("{floats.keep_float} must be a list of op types or node names; "
                              f"got {self.keep_float!r}")
        object.__setattr__(self, "keep_float", tuple(k.strip() for k in self.keep_float))


@dataclass(frozen=True)
class Validation:
    """The gate: run ``data`` through the new model and compare each output with
    ``reference`` (default: the float model's outputs) at ``tolerance``."""

    data: Path | None = None
    reference: Path | None = None
    tolerance: Tolerance = field(default_factory=Tolerance)
    # the float original whose outputs on ``data`` are the reference (a model that
    # arrives quantized is validated against it)
    float_model: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", _path(self.data, "validation.data"))
        object.__setattr__(self, "reference", _path(self.reference, "validation.reference"))
        object.__setattr__(self, "float_model", _path(self.float_model,
                                                      "validation.float_model"))
        if self.float_model is not None and (self.reference is not None or self.data is None):
            raise RecipeError("{validation.float_model} is run on {validation.data} for the "
                              "reference outputs: give it with {validation.data} and without "
                              "{validation.reference}")
        tolerance: object = self.tolerance
        if isinstance(tolerance, str):
            text = tolerance
            tolerance = _wrapped(lambda: Tolerance.parse(text), "validation.tolerance")
        elif isinstance(tolerance, Sequence) and len(tolerance) == 2 \
                and all(isinstance(v, int | float) for v in tolerance):
            pair = (float(tolerance[0]), float(tolerance[1]))
            tolerance = _wrapped(lambda: Tolerance(*pair), "validation.tolerance")
        if not isinstance(tolerance, Tolerance):
            raise RecipeError("{validation.tolerance} must be 'cosine,euclid' text such as "
                              f"'0.99,0.90', a pair of numbers or a Tolerance; got {tolerance!r}")
        object.__setattr__(self, "tolerance", tolerance)
        if self.reference is not None and self.data is None:
            raise RecipeError("{validation.reference} needs {validation.data} (the inputs it "
                              "was made from)")


@dataclass(frozen=True)
class Recipe:
    """Everything a deploy decides (see the module docstring)."""

    precision: str = "INT8"
    calibration_table: Path | CalibrationTable | None = None  # a table object: Python only
    quantize_table: Path | None = None
    calibration_data: Path | None = None
    backend: str = "ort"
    input_shapes: Shapes | None = None
    int8: Int8Options = field(default_factory=Int8Options)
    smooth: Smoothing = field(default_factory=Smoothing)
    equalize: Equalization | None = None
    adaround: AdaRounding | None = None
    bias_correction: BiasCorrection = field(default_factory=BiasCorrection)
    w4: WeightOnly = field(default_factory=WeightOnly)
    floats: FloatConversion = field(default_factory=FloatConversion)
    validation: Validation = field(default_factory=Validation)
    memory_budget: str | int | None = None  # what a batch may hold (lowbit.runtime.memory)
    # "guard": time INT8 against float here and keep float what loses (steps/speed.py);
    # the environment's LOWBIT_SPEED ("off" on a CI machine, where timings mean nothing)
    # sets the default
    speed: str = field(default_factory=lambda: os.environ.get("LOWBIT_SPEED", "guard"))
    # the batch the guard times at, the one the model will run at (None: batch 1, and 8
    # where a run is quick)
    speed_batch: int | None = None
    # the fidelity to reach, e.g. "cos=0.995" (steps/target.py), on calibration_data
    target: str | None = None
    # a model that arrives quantized: strip its Q/DQ and quantize the float graph again
    # with calibration_table, instead of keeping its scales (lowbit.quantize.int8.imported)
    requantize: bool = False
    # with requantize and validation.float_model: the stripped graph's weights and biases
    # are the float original's (matched by node name and shape), not the dequantized ones
    float_weights: bool = False
    # set by deploy for a QDQ model without requantize: it keeps its own scales, so no
    # calibration table and none of lowbit's quantization settings apply
    keep_scales: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.precision, str) or self.precision.upper() not in PRECISIONS:
            raise RecipeError(f"{{precision}} must be one of {', '.join(PRECISIONS)}; "
                              f"got {self.precision!r}")
        object.__setattr__(self, "precision", self.precision.upper())
        for name in ("calibration_table", "quantize_table", "calibration_data"):
            value = getattr(self, name)
            if not (name == "calibration_table" and isinstance(value, CalibrationTable)):
                object.__setattr__(self, name, _path(value, name))
        _choice(self.backend, tuple(BACKENDS), "backend")
        _choice(self.speed, SPEED_CHECKS, "speed")
        _flag(self.requantize, "requantize")
        _flag(self.float_weights, "float_weights")
        _flag(self.keep_scales, "keep_scales")
        if self.target is not None:
            from lowbit.quantize.mixed.search import Target

            if not isinstance(self.target, str):
                raise RecipeError(f"{{target}} must be text such as 'cos=0.995'; got "
                                  f"{self.target!r}")
            if self.target.strip().lower() == "auto":
                object.__setattr__(self, "target", "auto")
            else:
                _wrapped(lambda: Target.parse(str(self.target)), "target")
        object.__setattr__(self, "input_shapes", _shapes(self.input_shapes))
        _size(self.memory_budget, "memory_budget")
        if self.speed_batch is not None and (isinstance(self.speed_batch, bool) or not
                                             isinstance(self.speed_batch, int)
                                             or self.speed_batch < 1):
            raise RecipeError(f"{{speed_batch}} must be a whole number ≥ 1; got "
                              f"{self.speed_batch!r}")
        if self.speed_batch is not None and self.speed != "guard":
            raise RecipeError("{speed_batch} sets the batch the speed guard times at: it "
                              "needs {speed} guard")
        for name, kind in _SECTIONS.items():
            value = getattr(self, name)
            if value is not None and not isinstance(value, kind):
                raise RecipeError(f"{{{name}}} must be a {kind.__name__}; got {value!r}")
        if self.float_weights and not (self.requantize and
                                       self.validation.float_model is not None):
            raise RecipeError("{float_weights} takes the weights of the float original that "
                              "a model arriving quantized was made from: give it with "
                              "{requantize} and {validation.float_model}")
        self._check_applies()
        self._check_data()

    # -- which data set each step reads -------------------------------------------------

    @property
    def adaround_data(self) -> Path | None:
        return None if self.adaround is None else (self.adaround.data or self.calibration_data)

    @property
    def smooth_data(self) -> Path | None:
        """Samples SmoothQuant measures on; None: the table's channel ranges."""
        return None if not self.smooth.asked else (self.smooth.data or self.calibration_data)

    @property
    def equalize_data(self) -> Path | None:
        if self.equalize is None:
            return None
        return (self.equalize.data or self.adaround_data or self.bias_correction.data
                or self.calibration_data)

    @property
    def gptq_data(self) -> Path | None:
        return self.calibration_data if self.w4.algorithm == "gptq" else None

    @property
    def static_int8(self) -> bool:
        return self.precision == "INT8" and not self.int8.dynamic

    def data_sets(self) -> dict[str, Path]:
        """Every data file or folder the recipe reads, by its field (a table given as an
        object is not a file)."""
        found = {"calibration_table": self.calibration_table,
                 "quantize_table": self.quantize_table,
                 "calibration_data": self.calibration_data, "smooth.data": self.smooth.data,
                 "equalize.data": self.equalize.data if self.equalize else None,
                 "adaround.data": self.adaround.data if self.adaround else None,
                 "bias_correction.data": self.bias_correction.data,
                 "validation.data": self.validation.data,
                 "validation.reference": self.validation.reference,
                 "validation.float_model": self.validation.float_model}
        return {name: path for name, path in found.items() if isinstance(path, Path)}

    # -- building ----------------------------------------------------------------------

    @classmethod
    def from_options(cls, base: Recipe | Mapping[str, Any] | None = None,
                     **options: Any) -> Recipe:
        """A recipe from deploy's flat keywords (``quantize="INT8"``,
        ``smooth=0.8``, ``adaround="calib.npz"``, ...; see OPTIONS), over ``base``.
        Errors name the keywords."""
        from lowbit.recipe.options import apply_options, keyword_for

        try:
            return apply_options(base or _defaults(), options)
        except RecipeError as err:
            raise err.renamed(keyword_for) from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        """A recipe from a TOML document's tables (lowbit.recipe.toml); unknown keys are
        refused with the known ones listed."""
        if not isinstance(data, Mapping):
            raise RecipeError(f"a recipe is a table of settings; got {data!r}")
        top = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in top:
                raise RecipeError(f"unknown recipe setting '{key}'; known: "
                                  f"{', '.join(sorted(top))}")
            kind = _SECTIONS.get(key)
            if kind is None or (value is None and key in _OPTIONAL_SECTIONS):
                values[key] = value
                continue
            if not isinstance(value, Mapping):
                raise RecipeError(f"{{{key}}} must be a table of settings; got {value!r}")
            known = {f.name for f in fields(kind)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise RecipeError(f"unknown setting '{key}.{unknown[0]}'; [{key}] knows "
                                  f"{', '.join(sorted(known))}")
            values[key] = kind(**value)
        return cls(**values)

    def with_resolved_smoothing(self, alpha: float | str) -> Recipe:
        return replace(self, smooth=replace(self.smooth, alpha=alpha))

    # -- checks ------------------------------------------------------------------------

    def _check_applies(self) -> None:
        """Settings of another precision are refused, not ignored."""
        if self.keep_scales:
            self._check_keeps_scales()
            return
        applies = {"INT8": ("int8", "smooth", "equalize", "adaround", "bias_correction",
                            "quantize_table", "calibration_table", "speed", "speed_batch",
                            "target", "requantize", "float_weights"),
                   "W4": ("w4",), "F16": ("floats",), "BF16": ("floats",)}[self.precision]
        for name in ("int8", "smooth", "equalize", "adaround", "bias_correction", "w4",
                     "floats", "quantize_table", "calibration_table", "speed", "speed_batch",
                     "target", "requantize", "float_weights"):
            if name in applies:
                continue
            value, default = getattr(self, name), getattr(_defaults(), name)
            if value == default:
                continue
            if self.precision == "W4" and name == "calibration_table":
                continue  # a table is harmless for W4: it reads none (noted at deploy)
            which = _first_difference(name, value, default)
            raise RecipeError(f"{{{which}}} applies to {_users(name)} only, not "
                              f"{self.precision}" + _hint(name, self.precision))
        if self.precision != "INT8":
            return
        if self.int8.dynamic:
            for which, given in (("equalize", self.equalize is not None),
                                 ("adaround", self.adaround is not None),
                                 ("int8.weight_bits", self.int8.weight_bits != 8)):
                if given:
                    raise RecipeError(f"{{{which}}} needs a calibration table: it does not "
                                      "combine with {int8.dynamic}")
            for which, given in (("quantize_table", self.quantize_table is not None),
                                 ("bias_correction.data", self.bias_correction.source == "data"),
                                 ("int8.format", self.int8.format != "qdq")):
                if given:
                    raise RecipeError(f"{{int8.dynamic}} does not combine with {{{which}}}")
        elif self.calibration_table is None:
            raise RecipeError("{precision} INT8 needs {calibration_table} (run lowbit "
                              "calibrate), or {int8.dynamic} for run-time activation ranges")

    def _check_keeps_scales(self) -> None:
        """A model that arrives quantized keeps its scales: lowbit's own quantization
        settings are refused, not ignored."""
        for f in fields(self):
            if f.name in _KEPT_WITH_SCALES:
                continue
            value, default = getattr(self, f.name), getattr(_defaults(), f.name)
            if value != default:
                which = _first_difference(f.name, value, default)
                raise RecipeError(f"{{{which}}} is a setting of lowbit's own quantization; "
                                  "the model arrives quantized (QDQ) and keeps its scales: "
                                  "give {requantize} with {calibration_table} to re-derive "
                                  "them")

    def _check_data(self) -> None:
        """Each algorithm that needs data has it, and data nothing reads is refused."""
        if self.adaround is not None and self.adaround_data is None:
            raise RecipeError("{adaround} needs a data set: {adaround.data} or "
                              "{calibration_data}")
        if self.equalize is not None and self.equalize_data is None:
            raise RecipeError("{equalize} needs a data set to re-measure the ranges it "
                              "changes: {equalize.data} (e.g. the calibration data), or "
                              "{adaround.data}, {bias_correction.data} or {calibration_data}")
        if self.smooth.alpha == "auto" and self.smooth_data is None:
            raise RecipeError("{smooth.alpha} auto scores each α on data: give "
                              "{smooth.data} or {calibration_data}")
        if self.smooth.data is not None and not self.smooth.asked:
            raise RecipeError("{smooth.data} is read only when {smooth.alpha} is a number "
                              "or auto")
        if self.target is not None and self.calibration_data is None:
            raise RecipeError("{target} is measured on data: give {calibration_data} (the "
                              "validation data stays for the gate)")
        if self.target is not None and self.int8.dynamic:
            raise RecipeError("{target} builds static INT8 models; it does not combine with "
                              "{int8.dynamic}")
        if self.precision == "W4":
            if self.w4.algorithm == "gptq" and self.calibration_data is None:
                raise RecipeError("{precision} W4 with {w4.algorithm} gptq needs "
                                  "{calibration_data} (inputs like those the model will see)")
            if self.w4.algorithm != "gptq" and self.calibration_data is not None:
                raise RecipeError("{calibration_data} is used by {w4.algorithm} gptq only; "
                                  "rtn needs no data")
            return
        data = self.calibration_data
        if data is not None and not (
                self.target is not None
                or (self.adaround is not None and self.adaround.data is None)
                or (self.smooth.asked and self.smooth.data is None)
                or (self.equalize is not None and self.equalize_data == data)):
            raise RecipeError(f"{{calibration_data}} {data} is not used: it feeds "
                              "{adaround}, {smooth.alpha}, {equalize} and {target} (INT8) "
                              "and "
                              "{w4.algorithm} gptq (W4), none of which is asked for (INT8 "
                              "activation ranges come from {calibration_table}: run lowbit "
                              "calibrate)")


_SECTIONS: dict[str, type] = {
    "int8": Int8Options, "smooth": Smoothing, "equalize": Equalization,
    "adaround": AdaRounding, "bias_correction": BiasCorrection, "w4": WeightOnly,
    "floats": FloatConversion, "validation": Validation}
_OPTIONAL_SECTIONS = ("equalize", "adaround")
#: what still applies to a model that keeps its own scales (Recipe.keep_scales)
_KEPT_WITH_SCALES = ("validation", "backend", "memory_budget", "speed", "speed_batch",
                     "input_shapes",
                     "keep_scales")


@functools.cache
def _defaults() -> Recipe:
    """Every field at its default (built without the cross-field checks, which a
    recipe without a calibration table fails)."""
    blank = Recipe.__new__(Recipe)
    for f in fields(Recipe):
        default = f.default_factory() if callable(f.default_factory) else f.default
        object.__setattr__(blank, f.name, default)
    return blank


def _users(name: str) -> str:
    return {"w4": "{precision} W4", "floats": "{precision} F16 and BF16"}.get(
        name, "{precision} INT8")


def _hint(name: str, precision: str) -> str:
    if name == "quantize_table" and precision in ("F16", "BF16"):
        return "; for F16/BF16, {floats.keep_float} names the ops that stay F32"
    if name == "quantize_table" and precision == "W4":
        return "; W4 quantizes every MatMul with a constant weight"
    return ""


def _first_difference(name: str, value: object, default: object) -> str:
    """The dotted name of the first field of section ``name`` that differs from its
    default (the section itself when it is a whole value such as a path)."""
    if value is None or default is None or not hasattr(value, "__dataclass_fields__"):
        return name
    for f in fields(value):  # type: ignore[arg-type]
        if getattr(value, f.name) != getattr(default, f.name):
            return f"{name}.{f.name}"
    return name


def _choice(value: object, choices: Sequence[object], name: str) -> None:
    if isinstance(value, bool) or value not in choices:
        raise RecipeError(f"{{{name}}} must be one of {', '.join(map(str, choices))}; "
                          f"got {value!r}")


def _flag(value: object, name: str) -> None:
    if not isinstance(value, bool):
        raise RecipeError(f"{{{name}}} must be true or false; got {value!r}")


def _count(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RecipeError(f"{{{name}}} must be a positive whole number; got {value!r}")


def _size(value: object, name: str) -> None:
    """None (the default budget), bytes, or a size such as "512M" or "2G"."""
    from lowbit.runtime.memory import parse_size

    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RecipeError(f"{{{name}}} must be a size such as 512M or 2G; got {value!r}")
    try:
        parse_size(value)
    except LowbitError:
        raise RecipeError(f"{{{name}}} must be a size of at least 1M, such as 512M or 2G; "
                          f"got {value!r}") from None


def _path(value: object, name: str) -> Path | None:
    """None, or lowbit.arguments.path (a str or os.PathLike a file system can hold)."""
    if value is None:
        return None
    try:
        return checked_path(value, name)
    except ArgumentError as err:
        raise RecipeError(err.template) from None


def _shapes(value: object) -> Shapes | None:
    """lowbit.arguments.shapes (names or a list, dims bounded, a str refused)."""
    try:
        return checked_shapes(value, "input_shapes")
    except ArgumentError as err:
        raise RecipeError(err.template) from None


def _wrapped(make: Callable[[], Any], name: str) -> Any:
    try:
        return make()
    except RecipeError:
        raise
    except LowbitError as err:
        raise RecipeError(f"{{{name}}}: {err}") from None
