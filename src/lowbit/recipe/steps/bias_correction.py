"""Bias correction for static INT8 (lowbit.quantize.prepare.bias_correction): the
per-channel mean shift weight rounding causes, removed from the biases; from the
calibration table's input means (no data) or measured on a data set."""

from __future__ import annotations

from dataclasses import replace

from lowbit.calibration.table import CalibrationTable
from lowbit.quantize.mixed.qtable import read_qtable
from lowbit.quantize.prepare.bias_correction import correct_biases, correct_biases_from_means
from lowbit.recipe.pipeline import DeployContext, DeployState, Step
from lowbit.recipe.recipe import Recipe

BIAS_CORRECTION_SAMPLES = 32


def applies(recipe: Recipe) -> bool:
    return recipe.static_int8 and recipe.bias_correction.source != "off"


def run(context: DeployContext, state: DeployState) -> DeployState:
    recipe = context.recipe
    if recipe.bias_correction.data is not None:
        corrected, report = correct_biases(
            state.model, context.stream(recipe.bias_correction.data, BIAS_CORRECTION_SAMPLES),
            context.int8, weights=state.weights)
        return replace(state, model=corrected, uncorrected=state.model).noted(report.summary())
    assert state.table is not None  # static INT8: the recipe requires a table
    return _from_table(context, state, state.table)


def _from_table(context: DeployContext, state: DeployState,
                table: CalibrationTable) -> DeployState:
    model = state.model
    inits = {init.name for init in model.graph.initializer}
    if not any(node.op_type in ("Conv", "Gemm") and len(node.input) > 1
               and node.input[1] in inits for node in model.graph.node):
        return state.noted("bias correction: nothing to correct (no Conv or Gemm with "
                           "constant weights)")
    if state.changed_inputs is not None:
        return state.noted(f"no bias correction from the calibration table: "
                           f"{state.changed_inputs} changes the layers' inputs; pass "
                           "--bias-correction DATASET")
    if not table.input_means:
        return state.noted("no bias correction: the calibration table holds no input means "
                           "(made with --no-input-means, by an older lowbit or by tpu-mlir); "
                           "pass --bias-correction DATASET or re-run lowbit calibrate")
    kept: set[str] = set()
    if context.recipe.quantize_table is not None:
        qtable = read_qtable(context.recipe.quantize_table)
        kept = {name for name, p in qtable.precisions.items() if p != "INT8"}
    corrected, report = correct_biases_from_means(model, table.input_means, table.num_samples,
                                                  context.int8, weights=state.weights,
                                                  exclude=kept)
    if report.ops == 0:
        return replace(state, model=corrected, uncorrected=state.model).noted(
            "bias correction: nothing to correct (no quantized Conv or Gemm with a constant "
            "weight and the table's input means)")
    return replace(state, model=corrected, uncorrected=state.model).noted(
        f"{report.summary()}, from the calibration table's input means")


STEP = Step("bias_correction", applies, run)
