"""W4 weight-only (lowbit.quantize.w4.weight_only): MatMul weights in 4-bit blocks as
ONNX Runtime's MatMulNBits, round to nearest or GPTQ on the calibration data.

GPTQ's statistics are collected in this process, or as shards on the workers the
deploy names (``context.parallel``: lowbit.quantize.w4.hessian_shards)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import onnx

from lowbit.data.refs import DatasetRef
from lowbit.parallel import InlineExecutor, open_executor
from lowbit.quantize.w4.hessian import Hessians, collect_hessians
from lowbit.quantize.w4.hessian_shards import collect_hessians_sharded
from lowbit.quantize.w4.weight_only import (
    WeightOnlySettings,
    gptq_tensors,
    quantize_weight_only,
)
from lowbit.recipe.pipeline import Built, DeployContext, DeployState, Step
from lowbit.recipe.recipe import Recipe


def applies(recipe: Recipe) -> bool:
    return recipe.precision == "W4"


def run(context: DeployContext, state: DeployState) -> DeployState:
    settings = context.recipe.w4.settings()
    data = context.recipe.gptq_data
    hessians = None if data is None else _hessians(context, state.model, data, settings)
    result = quantize_weight_only(state.model, settings, hessians=hessians)
    built = Built(result.model, tuple(result.quantized), tuple(result.left_float))
    unused = "--calibration-table is not used by W4" \
        if context.recipe.calibration_table is not None else None
    return replace(state, built=built, size_note=result.summary).noted(unused)


def _hessians(context: DeployContext, model: onnx.ModelProto, data: Path,
              settings: WeightOnlySettings) -> Hessians | None:
    """GPTQ's input Hessians over the first ``settings.samples`` samples of ``data``: one
    pass here by default, shards on the deploy's workers when it names them. None where
    the model has nothing to quantize (quantize_weight_only then says why)."""
    tensors = gptq_tensors(model)
    if not tensors:
        return None
    count = min(len(context.data(data)), settings.samples)
    with open_executor(context.parallel, threads=None, samples=count) as executor:
        if isinstance(executor, InlineExecutor):  # as before: no copy of the model
            return collect_hessians(model, tensors, context.stream(data, settings.samples),
                                    total=count, memory_budget=context.budget)
        return collect_hessians_sharded(model, tensors, DatasetRef(str(data)), executor,
                                        num=count, memory_budget=context.budget)


STEP = Step("w4", applies, run)
