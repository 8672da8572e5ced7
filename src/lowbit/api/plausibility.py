"""Data that is valid but wrong: input ranges that contradict what the model expects.

    for warning in input_warnings("work/model.f32.onnx", table.ranges, "calib.npz"):
        log.warning(warning)       # "input 'input' spans 0..255 in calib.npz, but ..."

A data set of raw 0-255 pixels calibrates without error for a model whose meta file
records a 1/255 scale: every threshold is 255 times too large and deploy's validation
then fails with no hint. Two references tell such data apart, each checked on the
ranges calibration observes anyway (no extra pass over the data):

- the preprocessing the meta file records (lowbit.io.meta): value = (pixel - mean) x
  scale for pixels in 0..255 (a model with fused preprocessing takes the pixels);
- the reference inputs transform fed the float model (``ref_inputs.npz`` beside it).

A range whose magnitude differs from the expected one by more than :data:`FACTOR`
(an order of magnitude) is reported with the fix; so is an integer data set where the
reference inputs are float (and the other way round). Image folders are preprocessed
by lowbit itself, so only the reference inputs are compared for them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from lowbit.calibration.observers import TensorRange
from lowbit.calibration.table import CalibrationTable
from lowbit.data.datasets import npz_keys, read_array
from lowbit.data.images import ImageOptions
from lowbit.errors import LowbitError
from lowbit.io.meta import find_meta, load_meta_for

log = logging.getLogger(__name__)

FACTOR = 10.0  # magnitudes further apart than this are "orders of magnitude" apart
REFERENCE_INPUTS = "ref_inputs.npz"  # what transform writes beside its model by default


def input_warnings(model: str | Path, ranges: Mapping[str, TensorRange], data: str | Path, *,
                   dtypes: Mapping[str, np.dtype] | None = None,
                   preprocessed_by_lowbit: bool = False) -> list[str]:
    """What contradicts the model's expectations about the ranges ``ranges`` observed on
    ``data`` (and its stored ``dtypes``, per input): one sentence each, with the fix."""
    warnings = [] if preprocessed_by_lowbit else \
        _against_preprocessing(Path(model), ranges, str(data))
    told = {name for name in ranges if any(f"input '{name}' " in w for w in warnings)}
    return warnings + _against_reference(Path(model), ranges, str(data), dtypes or {}, told)


def table_warnings(model: str | Path, table: CalibrationTable | None) -> list[str]:
    """The calibration table's input ranges against the model's recorded preprocessing
    (a deploy whose validation fails because the table was made on raw pixels says so)."""
    if table is None:
        return []
    where = f"the calibration table ({table.method}, {table.num_samples} samples)"
    return [f"{warning}; then re-run lowbit calibrate"
            for warning in _against_preprocessing(Path(model), table.ranges, where)]


def expected_range(options: ImageOptions, fused: bool) -> tuple[float, float]:
    """The values pixels 0..255 become under ``options`` (or the pixels, when fused)."""
    if fused:
        return 0.0, 255.0
    channels = max(len(options.mean), len(options.scale))
    mean = np.broadcast_to(np.asarray(options.mean, dtype=np.float64), (channels,))
    scale = np.broadcast_to(np.asarray(options.scale, dtype=np.float64), (channels,))
    ends = np.concatenate([(0.0 - mean) * scale, (255.0 - mean) * scale])
    return float(ends.min()), float(ends.max())


def _against_preprocessing(model: Path, ranges: Mapping[str, TensorRange],
                           data: str) -> list[str]:
    try:
        meta = load_meta_for(model)
    except LowbitError as err:  # a broken meta file is reported where it is read
        log.debug("no preprocessing check: %s", err)
        return []
    if meta is None or meta.preprocessing is None or len(meta.inputs) != 1:
        return []
    name = meta.inputs[0].name
    if name not in ranges:
        return []
    low, high = expected_range(meta.preprocessing, meta.fused)
    seen = ranges[name]
    ratio = _ratio(seen.min, seen.max, low, high)
    if ratio is None:
        return []
    pre = meta.preprocessing
    recorded = ("fused preprocessing: the model takes raw pixels" if meta.fused else
                f"the preprocessing (pixel - {_numbers(pre.mean)}) x {_numbers(pre.scale)}")
    if ratio > 1:
        fix = ("the data looks like raw pixels: apply that preprocessing to it first, or "
               "give a folder of the images, which lowbit preprocesses as the meta file says")
    else:
        fix = ("the data looks preprocessed already; the model takes values like "
               f"{low:g}..{high:g}" + (" (uint8 pixels)" if meta.fused else ""))
    return [(f"input '{name}' spans {seen.min:g}..{seen.max:g} in {data}, but "
            f"{find_meta(model)} records {recorded}, which gives {low:g}..{high:g} "
            f"({_times(ratio)}): {fix}")]


def _against_reference(model: Path, ranges: Mapping[str, TensorRange], data: str,
                       dtypes: Mapping[str, np.dtype], told: set[str]) -> list[str]:
    """The ranges and dtypes against the reference inputs (a range only for the inputs
    not ``told`` about already)."""
    reference = model.parent / REFERENCE_INPUTS
    if not reference.is_file() or reference.resolve() == Path(data).resolve():
        return []
    warnings = []
    try:
        keys = set(npz_keys(reference))
        for name, seen in ranges.items():
            if name not in keys:
                continue
            array = read_array(reference, name)
            if array.size == 0 or array.dtype.kind not in "biuf":
                continue
            found = dtypes.get(name)
            if found is not None and _numeric_kind(found) != _numeric_kind(array.dtype):
                warnings.append(f"input '{name}' is {found} in {data} but {array.dtype} in the "
                                f"reference inputs {reference}: prepare the data as those were "
                                "prepared (the preprocessing in the model's meta file)")
                continue
            finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
            if finite.size == 0:
                continue
            low, high = float(finite.min()), float(finite.max())
            ratio = _ratio(seen.min, seen.max, low, high)
            if ratio is not None and name not in told:
                warnings.append(f"input '{name}' spans {seen.min:g}..{seen.max:g} in {data}, "
                                f"{_times(ratio)} as the {low:g}..{high:g} of the reference "
                                f"inputs {reference} the float model was checked on: prepare "
                                "the data as those were prepared (the preprocessing in the "
                                "model's meta file)")
    except LowbitError as err:  # an unreadable reference: nothing to compare with
        log.debug("no reference-input check: %s", err)
    return warnings


def _ratio(low: float, high: float, expected_low: float, expected_high: float) -> float | None:
    """How many times the magnitude of low..high exceeds the expected one (below 1: falls
    short), when more than FACTOR apart; else None."""
    seen = max(abs(low), abs(high))
    expected = max(abs(expected_low), abs(expected_high))
    if not np.isfinite(seen) or not np.isfinite(expected) or seen == 0 or expected == 0:
        return None
    ratio = seen / expected
    return ratio if ratio > FACTOR or ratio < 1 / FACTOR else None


def _times(ratio: float) -> str:
    return f"{ratio:.3g} times as wide" if ratio > 1 else f"1/{1 / ratio:.3g} as wide"


def _numeric_kind(dtype: np.dtype) -> str:
    return "float" if np.dtype(dtype).kind == "f" else "integer"


def _numbers(values: tuple[float, ...]) -> str:
    text = ",".join(f"{v:g}" for v in values)
    return text if len(values) == 1 else f"({text})"
