"""W4 weight-only (lowbit.quantize.w4.weight_only): MatMul weights in 4-bit blocks as
ONNX Runtime's MatMulNBits, round to nearest or GPTQ on the calibration data."""

from __future__ import annotations

from dataclasses import replace

from lowbit.quantize.w4.weight_only import quantize_weight_only
from lowbit.recipe.pipeline import Built, DeployContext, DeployState, Step
from lowbit.recipe.recipe import Recipe


def applies(recipe: Recipe) -> bool:
    return recipe.precision == "W4"


def run(context: DeployContext, state: DeployState) -> DeployState:
    settings = context.recipe.w4.settings()
    data = context.recipe.gptq_data
    if data is None:
        result = quantize_weight_only(state.model, settings)
    else:
        result = quantize_weight_only(state.model, settings,
                                      samples=context.stream(data, settings.samples),
                                      total_samples=min(len(context.data(data)),
                                                        settings.samples),
                                      memory_budget=context.budget)
    built = Built(result.model, tuple(result.quantized), tuple(result.left_float))
    unused = "--calibration-table is not used by W4" \
        if context.recipe.calibration_table is not None else None
    return replace(state, built=built, size_note=result.summary).noted(unused)


STEP = Step("w4", applies, run)
