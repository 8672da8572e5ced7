"""SmoothQuant before INT8 (lowbit.quantize.prepare.smoothquant): activation outliers
moved into the weights; by default a transformer's static INT8 is smoothed at α 0.8
from the table's channel ranges, with no data."""

from __future__ import annotations

from dataclasses import replace

import onnx

from lowbit.calibration.table import CalibrationTable
from lowbit.errors import ArgumentError
from lowbit.quantize.int8.scope import transformer_scope
from lowbit.quantize.prepare.smoothquant import (
    DEFAULT_ALPHA,
    SMOOTH_SAMPLES,
    smooth_for_int8,
    smooth_from_table,
)
from lowbit.recipe.pipeline import DeployContext, DeployState, Step
from lowbit.recipe.recipe import Recipe

NO_CHANNEL_RANGES = (
    "no SmoothQuant: the calibration table holds no channel ranges (made with "
    "--no-channel-ranges, by an older lowbit or by tpu-mlir); re-run lowbit calibrate, or "
    "pass --smooth ALPHA --smooth-data DATASET")


def applies(recipe: Recipe) -> bool:
    return recipe.precision == "INT8" and not recipe.smooth.off


def run(context: DeployContext, state: DeployState) -> DeployState:
    recipe = context.recipe
    dynamic = recipe.int8.dynamic
    alpha = recipe.smooth.alpha
    if alpha == "default":
        if dynamic or recipe.int8.weight_bits != 8 or state.table is None \
                or transformer_scope(state.model) is None:
            return state
        done = smooth_from_table(state.model, state.table, DEFAULT_ALPHA)
        if done is None:
            return state.noted(NO_CHANNEL_RANGES)
        return _smoothed(state, done[0].model, done[1], (
            f"{done[0].summary()}; from the calibration table's channel ranges (the default "
            "for transformers; --smooth off turns it off)"))
    data = recipe.smooth_data
    if data is None and isinstance(alpha, float) and state.table is not None:
        done = smooth_from_table(state.model, state.table, alpha)
        if done is not None:
            return _smoothed(state, done[0].model, None if dynamic else done[1],
                             f"{done[0].summary()}; from the calibration table's channel ranges")
    if data is None:
        raise ArgumentError("{smooth} needs {smooth_data} or {calibration_data} (e.g. "
                         "the calibration data), or for a number α a calibration table with "
                         "channel ranges (lowbit calibrate writes them): SmoothQuant needs "
                         "per-channel activation maxima")
    samples = context.samples(data, SMOOTH_SAMPLES, "SmoothQuant")
    outcome = smooth_for_int8(state.model, None if dynamic else state.table, samples, alpha,
                              context.int8, dynamic=dynamic, memory_budget=context.budget)
    return _smoothed(state, outcome.result.model, outcome.table, outcome.summary())


def _smoothed(state: DeployState, model: onnx.ModelProto, table: CalibrationTable | None,
              note: str) -> DeployState:
    changed = "SmoothQuant" if model is not state.model else state.changed_inputs
    return replace(state, model=model, table=table, changed_inputs=changed).noted(note)


STEP = Step("smooth", applies, run)
