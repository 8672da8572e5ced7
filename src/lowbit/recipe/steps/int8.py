"""Static INT8 (lowbit.quantize.int8.static), or mixed precision with a qtable
(lowbit.quantize.mixed.deploy): the table's ranges, QDQ or QOperator."""

from __future__ import annotations

from dataclasses import replace

import onnx

from lowbit.graph import onnx_opset
from lowbit.quantize.int8.params import weight_kind
from lowbit.quantize.int8.qdq import QuantizeResult, stores_int4
from lowbit.quantize.int8.qoperator import to_qoperator
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.quantize.int8.static import quantize_int8
from lowbit.quantize.mixed.deploy import deploy_mixed
from lowbit.quantize.mixed.qtable import read_qtable
from lowbit.recipe.pipeline import Built, DeployContext, DeployState, Step
from lowbit.recipe.recipe import Recipe


def applies(recipe: Recipe) -> bool:
    return recipe.static_int8


def run(context: DeployContext, state: DeployState) -> DeployState:
    table, settings = state.table, context.int8
    assert table is not None  # static INT8: the recipe requires a table
    result: QuantizeResult
    if context.recipe.quantize_table is not None:
        mixed = deploy_mixed(state.model, table.ranges, settings,
                             read_qtable(context.recipe.quantize_table),
                             skipped=table.skipped, weights=state.weights)
        result, notes = mixed, list(mixed.notes)
    else:
        result, notes = quantize_int8(state.model, table.ranges, settings,
                                      skipped=table.skipped, weights=state.weights)
    model = to_qoperator(result.model) if settings.format == "qoperator" else result.model
    built = Built(model, tuple(result.quantized), tuple(result.left_float),
                  tuple(result.removed), dict(result.float_tensors))
    state = replace(state, built=built).noted(table.summary(), *notes)
    if settings.weight_bits == 4:
        state = state.noted(w4a8_note(state.model, settings))
    return state.noted(weight_grid_note(settings, state.model))


def w4a8_note(model: onnx.ModelProto, settings: QuantizeSettings) -> str:
    depthwise = sum(settings.weight_grid(kind) != "int4"
                    for kind in _weight_kinds(model, settings.per_channel))
    kept = (f"; {depthwise} depthwise Conv weight(s) keep 8 bits (a 4-bit grid costs them "
            "most accuracy, and they are few weights)") if depthwise else ""
    clipped = f"least-squares clipped per {'channel' if settings.per_channel else 'tensor'}"
    if stores_int4(model, settings):
        return (f"W4A8: weights 4-bit (−7..7, {clipped}) stored as int4{kept}; ONNX "
                "Runtime has no int4 Conv/Gemm kernel, so it dequantizes them and runs "
                "those ops in float")
    why = "--format qoperator" if settings.format != "qdq" else \
        f"opset {onnx_opset(model)} has no int4 DequantizeLinear (21 has)"
    return (f"W4A8: weights 4-bit (−7..7, {clipped}) stored as int8 ({why}){kept}; ONNX "
            "Runtime runs them in its int8 kernels: INT8 speed and size, 4-bit accuracy")


def _weight_kinds(model: onnx.ModelProto, per_channel: bool) -> list[str]:
    """The kind (lowbit.quantize.int8.params.weight_kind) of each MatMul, Gemm and Conv
    weight that is an initializer, as the quantizer sees it."""
    inits = {init.name: tuple(init.dims) for init in model.graph.initializer}
    kinds = []
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm", "Conv") or len(node.input) < 2 \
                or node.input[1] not in inits:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        axis = 1 if node.op_type == "MatMul" or (node.op_type == "Gemm" and not
                                                 attrs.get("transB", 0)) else 0
        kind, _ = weight_kind(node.op_type, inits[node.input[1]],
                              axis if per_channel else None, int(attrs.get("group", 1)))
        kinds.append(kind)
    return kinds


def weight_grid_note(settings: QuantizeSettings, model: onnx.ModelProto) -> str | None:
    """Which weights use which grid on this CPU, for the kinds of weights the model has;
    None where every weight keeps 8 bits (no reduced range)."""
    if not settings.reduced_range:
        return None
    kinds: dict[str, str] = {}
    for kind in _weight_kinds(model, settings.per_channel):
        kinds.setdefault(kind, settings.weight_grid(kind) if settings.per_channel
                         else "reduced")
    words = {"paired": "8 bits with every pair of K rows (2i, 2i+1) at most 128 in magnitude",
             "full": "8 bits (no pair sums)", "reduced": "7 bits (−63..63)"}
    names = {"DepthwiseConv": "depthwise Conv"}
    by_grid: dict[str, list[str]] = {}
    for kind, grid in kinds.items():
        by_grid.setdefault(grid, []).append(names.get(kind, kind))
    which = "; ".join(f"{', '.join(sorted(k))} {words.get(g, g)}"
                      for g, k in sorted(by_grid.items())) or "7 bits (−63..63)"
    return (f"weights: {which}: ONNX Runtime's uint8×int8 kernels on this CPU (x86 without "
            "VNNI) add pairs of products in a saturating int16, which full-range int8 "
            "weights overflow; --weight-range full for a target with VNNI or ARM")


STEP = Step("int8", applies, run)
