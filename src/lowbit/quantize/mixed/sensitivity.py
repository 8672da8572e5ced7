"""Per-op sensitivity: how much the network output gains when ONE op alone stays float.

    result = rank_sensitivity(model, table.ranges, QuantizeSettings(), samples, num=16)
    result.rows[0]          # LossRow(order=1, name="conv5", op_type="Conv", sqnr_db=31.2, ...)
    result.forward_passes   # cost in full-model forward passes (MAC-weighted)

For every op quantize_qdq quantizes with its own output range (Conv, Gemm, MatMul, Add,
Mul, Concat, pools, activations — not pure data movement), the measure is tpu-mlir
run_qtable's: SQNR (dB) and cosine of the network outputs against F32 when that op
alone is float and everything else INT8. Rows come best first: the op whose float-ness
helps most leads.

How it stays cheap. The model with op c float (M_c) differs from the all-INT8 model
(M_0) only in the nodes that read what c changed: the nodes that differ from M_0's
node of the same name, plus everything downstream of them. Everything upstream
computes the same tensors as M_0, so M_0 runs ONCE per sample with the tensors at
those boundaries exposed, and for each c only its suffix runs, fed from those stored
tensors. Candidates early in the graph cost nearly a full pass, late ones (the
classifier) almost nothing; on a chain the total is about half of the naive L passes.
``forward_passes`` counts honestly in full-model equivalents: every suffix run is
weighted by its share of the model's multiply-accumulates (elements for ops without
weights), plus one pass per sample each for the F32 reference and M_0.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import islice

import numpy as np
import onnx
import onnx_ir as ir
from onnx import helper

from lowbit.analysis.metrics import cosine
from lowbit.calibration.observers import TensorRange
from lowbit.errors import DatasetError
from lowbit.graph import infer_shapes_light, with_outputs
from lowbit.quantize.int8.qdq import quantize_qdq
from lowbit.quantize.int8.rules import OutputMode, rule_for
from lowbit.quantize.int8.scope import real_token_masks, real_tokens
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.quantize.mixed.deploy import deploy_mixed
from lowbit.quantize.mixed.qtable import LossRow
from lowbit.runtime.memory import MemoryBudget, RowStore
from lowbit.runtime.ort import create_session

log = logging.getLogger(__name__)

Sample = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class SensitivityResult:
    """Ranked rows, best first, and what they cost.

    forward_passes: full-model-equivalent forward passes (MAC-weighted; F32 reference and
    the INT8 model's one pass per sample included). runs: session.run calls of any size.
    """

    rows: list[LossRow]
    forward_passes: float
    runs: int
    samples: int


def candidate_ops(model: onnx.ModelProto, ranges: Mapping[str, TensorRange],
                  settings: QuantizeSettings, *,
                  skipped: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(name, op_type) of the ops quantize_qdq quantizes with their own output parameters."""
    result = quantize_qdq(model, ranges, settings, skipped=skipped)
    names = {node.name for node in model.graph.node}
    chosen = []
    for decision in result.quantized:
        rule = rule_for(ir.Node("", decision.op_type, []))
        if decision.name in names and rule is not None \
                and rule.output in (OutputMode.OWN, OutputMode.SHARED):
            chosen.append((decision.name, decision.op_type))
    return chosen


def rank_sensitivity(
    model: onnx.ModelProto,
    ranges: Mapping[str, TensorRange],
    settings: QuantizeSettings,
    samples: Iterable[Sample],
    *,
    num: int | None = None,
    precision: str = "F32",
    skipped: Mapping[str, str] | None = None,
    candidates: list[tuple[str, str]] | None = None,
    memory_budget: MemoryBudget | None = None,
    threads: int | None = None,
) -> SensitivityResult:
    """Rank the quantizable ops of ``model`` (canonical) by output SQNR when each alone is
    kept at ``precision``; uses the first ``num`` samples (all when None). The INT8
    model's tensors every suffix reads are kept per sample up to half ``memory_budget``
    and the rest in a temporary folder (lowbit.runtime.memory.RowStore). ``threads``:
    ONNX Runtime threads per session (None: its default). Ranking ``candidates`` in
    parts and sorting the rows of all parts as here gives the same ranking
    (lowbit.quantize.mixed.sharded runs the parts on workers)."""
    feeds = list(islice(samples, num)) if num is not None else list(samples)
    if not feeds:
        raise DatasetError("sensitivity ranking needs at least one sample")
    costs = node_costs(model)
    total_cost = sum(costs.values()) or 1.0
    reference_session = create_session(model, threads=threads)
    reference = [reference_session.run(None, dict(f)) for f in feeds]
    masks = real_token_masks(model, feeds)  # a transformer's padded positions not scored
    output_names = [o.name for o in reference_session.get_outputs()]
    passes, runs = float(len(feeds)), len(feeds)

    base = deploy_mixed(model, ranges, settings, {}, skipped=skipped).model
    ops = candidates if candidates is not None else candidate_ops(model, ranges, settings,
                                                                  skipped=skipped)
    suffixes = {}
    for name, _ in ops:
        mixed = deploy_mixed(model, ranges, settings, {name: precision}, skipped=skipped).model
        suffixes[name] = _suffix(base, mixed)
    base_tensors = _tensor_names(base)
    exposed = sorted({t for s in suffixes.values() if s is not None for t in s.inputs
                      if t in base_tensors} | set(output_names))
    budget = memory_budget or MemoryBudget.default()
    with RowStore(budget.bytes // 2) as base_values:
        _run_exposed(base, exposed, feeds, base_values, threads)
        passes += len(feeds)
        runs += len(feeds)
        measured, passes, runs = _measure_ops(model, ranges, settings, ops, suffixes,
                                              base_tensors, base_values, reference, masks,
                                              output_names, feeds, precision, skipped, costs,
                                              total_cost, passes, runs, threads)
    measured.sort(key=lambda row: (-row[2], -row[3]))  # stable: ties keep candidate order
    rows = [LossRow(order, name, op_type, sqnr, cos)
            for order, (name, op_type, sqnr, cos) in enumerate(measured, start=1)]
    return SensitivityResult(rows, passes, runs, len(feeds))


def _measure_ops(model: onnx.ModelProto, ranges: Mapping[str, TensorRange],
                 settings: QuantizeSettings, ops: list[tuple[str, str]],
                 suffixes: Mapping[str, _Suffix | None], base_tensors: set[str],
                 base_values: RowStore, reference: list[list[np.ndarray]],
                 masks: list[np.ndarray | None], output_names: list[str], feeds: list[Sample],
                 precision: str, skipped: Mapping[str, str] | None,
                 costs: Mapping[str, float], total_cost: float, passes: float, runs: int,
                 threads: int | None = None
                 ) -> tuple[list[tuple[str, str, float, float]], float, int]:
    """Each op's output SQNR and cosine with it alone kept at ``precision``."""
    measured: list[tuple[str, str, float, float]] = []
    for name, op_type in ops:
        suffix = suffixes[name]
        if suffix is None or not set(suffix.inputs) <= base_tensors:
            log.debug("%s: suffix not separable, running the whole mixed model", name)
            mixed = deploy_mixed(model, ranges, settings, {name: precision},
                                 skipped=skipped).model
            outputs = _run_full(mixed, output_names, feeds, threads)
            passes += len(feeds)
        else:
            outputs = _run_suffix(suffix, base_values, output_names, feeds, threads)
            passes += len(feeds) * sum(costs.get(n, 0.0) for n in suffix.nodes) / total_cost
        runs += len(feeds)
        sqnr, cos = _score(reference, outputs, masks)
        measured.append((name, op_type, sqnr, cos))
    return measured, passes, runs


# -- the suffix of a mixed model -------------------------------------------------------------


@dataclass(frozen=True)
class _Suffix:
    model: onnx.ModelProto | None   # None: no node differs from the INT8 model
    inputs: tuple[str, ...]         # boundary tensors, computed as in the INT8 model
    outputs: tuple[str, ...]        # graph outputs the suffix recomputes
    nodes: tuple[str, ...]          # its node names (for the cost count)


def _suffix(base: onnx.ModelProto, mixed: onnx.ModelProto) -> _Suffix | None:
    """The nodes of ``mixed`` that differ from ``base`` or read what they produce."""
    base_nodes = {node.name: node.SerializeToString() for node in base.graph.node}
    base_inits = {i.name: i.SerializeToString() for i in base.graph.initializer}
    inits = {i.name: i for i in mixed.graph.initializer}
    changed_values: set[str] = set()
    chosen: list[onnx.NodeProto] = []
    for node in mixed.graph.node:  # topological order
        differs = base_nodes.get(node.name) != node.SerializeToString()
        reads_changed = any(i in changed_values for i in node.input)
        reads_new_weight = any(i in inits and base_inits.get(i) != inits[i].SerializeToString()
                               for i in node.input)
        if _has_subgraph(node):
            return None
        if differs or reads_changed or reads_new_weight:
            chosen.append(node)
            changed_values.update(o for o in node.output if o)
    chosen = _grow_to_int8_boundary(mixed, chosen, set(inits))
    produced = {o for node in chosen for o in node.output}
    boundary = _boundary(chosen, produced, set(inits))
    outputs = tuple(o.name for o in mixed.graph.output if o.name in produced)
    if not chosen or not outputs:
        return _Suffix(None, (), (), ())
    used_inits = [inits[name] for node in chosen for name in node.input if name in inits]
    unique_inits = list({init.name: init for init in used_inits}.values())
    graph = helper.make_graph(
        chosen, "suffix",
        [onnx.ValueInfoProto(name=name) for name in boundary],
        [o for o in mixed.graph.output if o.name in produced], unique_inits)
    suffix = helper.make_model(graph, opset_imports=list(mixed.opset_import),
                               ir_version=mixed.ir_version)
    return _Suffix(suffix, tuple(boundary), outputs, tuple(n.name for n in chosen))


def _boundary(nodes: list[onnx.NodeProto], produced: set[str], inits: set[str]) -> list[str]:
    boundary: list[str] = []
    for node in nodes:
        for name in node.input:
            if name and name not in produced and name not in inits and name not in boundary:
                boundary.append(name)
    return boundary


def _grow_to_int8_boundary(model: onnx.ModelProto, chosen: list[onnx.NodeProto],
                           inits: set[str]) -> list[onnx.NodeProto]:
    """Pull producers into the suffix until every boundary tensor is a QuantizeLinear output
    or a graph input. ORT fuses DQ→op→Q only when no tensor inside is a graph output, so
    exposing int8 tensors keeps the INT8 model's kernels (and numerics) as they are."""
    producer = {o: node for node in model.graph.node for o in node.output if o}
    members = {id(node) for node in chosen}
    while True:
        produced = {o for node in model.graph.node if id(node) in members for o in node.output}
        pulled = False
        for name in _boundary([n for n in model.graph.node if id(n) in members], produced, inits):
            node = producer.get(name)
            if node is not None and node.op_type != "QuantizeLinear" and id(node) not in members:
                members.add(id(node))
                pulled = True
        if not pulled:
            return [node for node in model.graph.node if id(node) in members]


def _has_subgraph(node: onnx.NodeProto) -> bool:
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for a in node.attribute)


def _tensor_names(model: onnx.ModelProto) -> set[str]:
    names = {o for node in model.graph.node for o in node.output if o}
    return names | {i.name for i in model.graph.input}


# -- running ---------------------------------------------------------------------------------


def _run_exposed(model: onnx.ModelProto, names: list[str], feeds: list[Sample],
                 values: RowStore, threads: int | None = None) -> None:
    graph_inputs = {i.name for i in model.graph.input}
    session = create_session(with_outputs(model, [n for n in names if n not in graph_inputs]),
                             memory_pattern=False, threads=threads)
    fetch = [o.name for o in session.get_outputs()]
    for feed in feeds:
        row = dict(zip(fetch, session.run(fetch, dict(feed)), strict=True))
        row.update({k: v for k, v in feed.items() if k in graph_inputs})
        values.append(row)


def _run_full(model: onnx.ModelProto, output_names: list[str],
              feeds: list[Sample], threads: int | None = None) -> list[list[np.ndarray]]:
    session = create_session(model, threads=threads)
    return [session.run(output_names, dict(feed)) for feed in feeds]


def _run_suffix(suffix: _Suffix, base_values: RowStore, output_names: list[str],
                feeds: list[Sample], threads: int | None = None) -> list[list[np.ndarray]]:
    if suffix.model is None:
        return [[values[name] for name in output_names] for values in base_values]
    model = onnx.ModelProto()
    model.CopyFrom(suffix.model)
    example = base_values[0]
    for info in model.graph.input:  # typed from the stored tensors, batch axis left free
        array = example[info.name]
        shape = ["N", *array.shape[1:]] if array.ndim else []
        info.CopyFrom(helper.make_tensor_value_info(
            info.name, helper.np_dtype_to_tensor_dtype(array.dtype), shape))
    session = create_session(model, threads=threads)
    results = []
    for index in range(min(len(feeds), len(base_values))):
        values = base_values[index]
        got = dict(zip(suffix.outputs,
                       session.run(list(suffix.outputs), {n: values[n] for n in suffix.inputs}),
                       strict=True))
        results.append([got.get(name, values[name]) for name in output_names])
    return results


def _score(reference: list[list[np.ndarray]], outputs: list[list[np.ndarray]],
           masks: list[np.ndarray | None] | None = None) -> tuple[float, float]:
    """Pooled SQNR (dB) over every output of every sample; mean per-sample cosine; at the
    real tokens only where ``masks`` (lowbit.quantize.int8.scope.real_token_masks) say."""
    signal = noise = 0.0
    cosines = []
    for ref, out, mask in zip(reference, outputs, masks or [None] * len(reference),
                              strict=True):
        a = np.concatenate([real_tokens(r, mask).ravel() for r in ref])
        b = np.concatenate([real_tokens(o, mask).ravel() for o in out])
        signal += float(np.sum(a * a))
        noise += float(np.sum((a - b) ** 2))
        cosines.append(cosine(a, b))
    sqnr = math.inf if noise == 0.0 else (-math.inf if signal == 0.0
                                           else 10.0 * math.log10(signal / noise))
    return sqnr, float(np.mean(cosines))


def node_costs(model: onnx.ModelProto) -> dict[str, float]:
    """Rough cost per node: multiply-accumulates for weighted ops, output elements otherwise
    (symbolic dimensions count as 1)."""
    inferred = infer_shapes_light(model)
    shapes: dict[str, list[int]] = {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in dims]
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    costs = {}
    for node in model.graph.node:
        out = shapes.get(node.output[0]) if node.output else None
        elements = float(np.prod(out)) if out else 1.0
        costs[node.name] = elements * _reduction(node, weights)
    return costs


def _reduction(node: onnx.NodeProto, weights: Mapping[str, list[int]]) -> float:
    """Multiply-accumulates per output element of Conv / Gemm / MatMul with constant weights."""
    w = weights.get(node.input[1]) if len(node.input) > 1 else None
    if not w or len(w) < 2:
        return 1.0
    if node.op_type in ("Conv", "ConvTranspose"):
        return float(np.prod(w)) / max(w[0] if node.op_type == "Conv" else w[1], 1)
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return float(w[1] if trans_b else w[0])
    if node.op_type == "MatMul":
        return float(w[-2])
    return 1.0


__all__ = ["SensitivityResult", "candidate_ops", "node_costs", "rank_sensitivity"]
