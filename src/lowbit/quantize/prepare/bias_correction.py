"""Bias correction: remove the per-channel mean shift that weight quantization causes.

    model, report = correct_biases(canonical, samples, QuantizeSettings())
    report.summary()    # "bias correction: 52 ops, mean |shift| 0.0123 removed"
    model, report = correct_biases_from_means(canonical, table.input_means,
                                              table.num_samples, QuantizeSettings())

Quantizing W to W_q changes each output channel c by (W_q − W)·x, whose mean over
the calibration data, E[(W_q − W)·x]_c, is a systematic shift (Nagel et al.,
data-free quantization). It is measured in one pass: for every Conv/Gemm/MatMul
with a constant weight (Conv, Gemm), a copy of the op with weight ΔW = W_q − W reads the same
input, and a ReduceMean keeps only its per-channel mean. The shifts are averaged
over the samples and subtracted from the float biases (a bias is added where the op
had none) before the model is quantized.

The op is linear in its input, so the same shift follows from the mean input each
kernel tap reads, which ``lowbit calibrate`` stores in the table: deploy then corrects
biases by default, without the data (``correct_biases_from_means``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lowbit.calibration.input_means import mean_input_ops, mean_shift
from lowbit.errors import DatasetError
from lowbit.graph import add_reduce, onnx_opset, schedule_probes, with_outputs
from lowbit.quantize.int8.params import WeightQuant, quantize_weight_on, weight_kind
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.runtime.ort import create_session

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BiasCorrection:
    ops: int
    mean_abs_shift: float
    max_abs_shift: float
    samples: int

    def summary(self) -> str:
        return (f"bias correction: {self.ops} ops on {self.samples} samples, mean |shift| "
                f"{self.mean_abs_shift:.3g} (max {self.max_abs_shift:.3g}) removed")


@dataclass(frozen=True)
class _Target:
    node: onnx.NodeProto
    weight: np.ndarray
    delta: np.ndarray


def correct_biases(model: onnx.ModelProto, samples: Iterable[Mapping[str, np.ndarray]],
                   settings: QuantizeSettings, *,
                   weights: Mapping[str, WeightQuant] | None = None
                   ) -> tuple[onnx.ModelProto, BiasCorrection]:
    """A copy of ``model`` (canonical) with biases corrected for weight quantization;
    ``weights`` (e.g. AdaRound's integers) replace round-to-nearest where given."""
    inits = {init.name: init for init in model.graph.initializer}
    targets = [t for t in (_target(node, inits, settings, weights or {})
                           for node in model.graph.node) if t]
    if not targets:
        return model, BiasCorrection(0, 0.0, 0.0, 0)
    probe = _probe_model(model, targets)
    session = create_session(probe, memory_pattern=False)
    del probe
    fetch = [f"lowbit_shift_{i}" for i in range(len(targets))]
    inputs = {i.name for i in session.get_inputs()}
    totals: list[np.ndarray] | None = None
    count = 0
    for sample in samples:
        values = session.run(fetch, {k: v for k, v in sample.items() if k in inputs})
        totals = values if totals is None else [a + b for a, b in zip(totals, values,
                                                                      strict=True)]
        count += 1
    if totals is None:
        raise DatasetError("bias correction needs samples; the data set has none")
    shifts = [t / count for t in totals]
    corrected = onnx.ModelProto()
    corrected.CopyFrom(model)
    nodes = {node.name: node for node in corrected.graph.node}
    for target, shift in zip(targets, shifts, strict=True):
        _apply(corrected, nodes[target.node.name], shift.astype(np.float32))
    flat = np.concatenate([np.abs(s).ravel() for s in shifts])
    report = BiasCorrection(len(targets), float(flat.mean()), float(flat.max()), count)
    log.info(report.summary())
    return corrected, report


def correct_biases_from_means(model: onnx.ModelProto, means: Mapping[str, np.ndarray],
                              samples: int, settings: QuantizeSettings, *,
                              weights: Mapping[str, WeightQuant] | None = None,
                              exclude: Iterable[str] = ()
                              ) -> tuple[onnx.ModelProto, BiasCorrection]:
    """As correct_biases, with the shifts computed from the mean input taps a calibration
    table holds (lowbit.calibration.input_means) instead of a pass over samples:
    E[op(x, ΔW)] = Σ ΔW · M, exact since the op is linear in x. Nodes in ``exclude``
    (kept float by a qtable) and nodes the table has no means for are left alone."""
    inits = {init.name: init for init in model.graph.initializer}
    ops = mean_input_ops(model)
    skip = set(exclude)
    corrected = onnx.ModelProto()
    corrected.CopyFrom(model)
    nodes = {node.name: node for node in corrected.graph.node}
    shifts = []
    for node in model.graph.node:
        target = None if node.name in skip or node.name not in means or node.name not in ops \
            else _target(node, inits, settings, weights or {})
        if target is None:
            continue
        op, m = ops[node.name], np.asarray(means[node.name])
        expected = (target.weight.shape[1] * _group(node), *op.kernel) \
            if op.op_type == "Conv" else (target.weight.shape[1 if _attr(node, "transB") else 0],)
        if m.shape != expected:
            log.warning("bias correction: the table's means for %s have shape %s, the op "
                        "reads %s; left uncorrected", node.name, m.shape, expected)
            continue
        shift = mean_shift(target.delta, op, m, group=_group(node),
                           trans_b=bool(_attr(node, "transB")))
        _apply(corrected, nodes[node.name], shift.astype(np.float32))
        shifts.append(shift)
    if not shifts:
        return model, BiasCorrection(0, 0.0, 0.0, samples)
    flat = np.abs(np.concatenate(shifts))
    report = BiasCorrection(len(shifts), float(flat.mean()), float(flat.max()), samples)
    log.info(report.summary())
    return corrected, report


def _group(node: onnx.NodeProto) -> int:
    return int(_attr(node, "group", 1))


def _target(node: onnx.NodeProto, inits: Mapping[str, onnx.TensorProto],
            settings: QuantizeSettings, given: Mapping[str, WeightQuant]) -> _Target | None:
    if node.domain not in ("", "ai.onnx") or len(node.input) < 2 or node.input[1] not in inits:
        return None
    weight = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
    if node.op_type == "Conv":
        axis = 0
    elif node.op_type == "Gemm" and weight.ndim == 2 and not _attr(node, "transA"):
        axis = 0 if _attr(node, "transB") else 1
        if _attr(node, "alpha", 1.0) != 1.0 or _attr(node, "beta", 1.0) != 1.0:
            return None
    else:
        return None
    axis_used = axis if settings.per_channel else None
    quant = given.get(node.input[1])
    if quant is None or quant.axis != axis_used or quant.q.shape != weight.shape:
        # The weights deploy will write (lowbit.quantize.int8.qdq picks them the same way).
        kind, layout = weight_kind(node.op_type, weight.shape, axis_used,
                                   int(_attr(node, "group", 1)))
        quant = quantize_weight_on(settings.weight_grid(kind), weight, axis_used, layout)
    shape = [1] * weight.ndim
    if settings.per_channel:
        shape[axis] = -1
    delta = quant.q.astype(np.float32) * quant.scale.reshape(shape) - weight
    return _Target(node, weight, delta.astype(np.float32))


def _attr(node: onnx.NodeProto, name: str, default: float = 0) -> float:
    for attr in node.attribute:
        if attr.name == name:
            return float(helper.get_attribute_value(attr))
    return default


def _probe_model(model: onnx.ModelProto, targets: list[_Target]) -> onnx.ModelProto:
    probe = with_outputs(model, [f"lowbit_shift_{i}" for i in range(len(targets))],
                         elem_type=TensorProto.FLOAT)
    graph = probe.graph
    graph.initializer.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64),
                                                     "lowbit_nc_rest"))
    for i, target in enumerate(targets):
        node = target.node
        delta, out, flat = f"lowbit_delta_{i}", f"lowbit_delta_out_{i}", f"lowbit_nc_{i}"
        graph.initializer.append(numpy_helper.from_array(target.delta, delta))
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        graph.node.append(helper.make_node(node.op_type, [node.input[0], delta], [out],
                                           **attrs))
        # [N, C, ...] → [N, C, rest] → mean over N and rest: one value per channel.
        graph.node.append(helper.make_node("Reshape", [out, "lowbit_nc_rest"], [flat]))
        add_reduce(graph, "ReduceMean", flat, f"lowbit_shift_{i}", [0, 2],
                   opset=onnx_opset(model))
    schedule_probes(graph, first=len(model.graph.node))  # each ΔW output freed at once
    return probe


def _apply(model: onnx.ModelProto, node: onnx.NodeProto, shift: np.ndarray) -> None:
    inits = {init.name: init for init in model.graph.initializer}
    if len(node.input) > 2 and node.input[2]:
        bias = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32)
        name = f"{node.input[2]}_corrected"
        new = np.broadcast_to(bias, shift.shape) - shift if bias.ndim <= 1 else bias - shift
    else:
        name = f"{node.name}_bias_corrected"
        new = -shift
    model.graph.initializer.append(numpy_helper.from_array(new.astype(np.float32), name))
    while len(node.input) < 3:
        node.input.append("")
    node.input[2] = name
