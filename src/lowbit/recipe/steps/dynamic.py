"""Dynamic INT8 (lowbit.quantize.int8.dynamic): activations quantized at run time,
weights int8 offline; no calibration table."""

from __future__ import annotations

from dataclasses import replace

from lowbit.quantize.int8.dynamic import NOTE, quantize_dynamic
from lowbit.recipe.pipeline import Built, DeployContext, DeployState, Step
from lowbit.recipe.recipe import Recipe
from lowbit.recipe.steps.int8 import weight_grid_note


def applies(recipe: Recipe) -> bool:
    return recipe.precision == "INT8" and recipe.int8.dynamic


def run(context: DeployContext, state: DeployState) -> DeployState:
    result = quantize_dynamic(state.model, context.int8)
    built = Built(result.model, tuple(result.quantized), tuple(result.left_float))
    unused = "--calibration-table is not used by --dynamic" \
        if context.recipe.calibration_table is not None else None
    return replace(state, built=built).noted(NOTE, unused,
                                             weight_grid_note(context.int8, state.model))


STEP = Step("dynamic", applies, run)
