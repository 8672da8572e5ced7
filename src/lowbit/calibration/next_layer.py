"""Choose among `auto`'s candidate thresholds by the error they cause at the next layer.

    choices = score_next_layer(model, feeds, observers)   # {tensor: NextLayerChoice}
    for name, choice in choices.items():
        observers[name].override = choice.threshold

The histogram score of ``AutoObserver`` treats every element's error alike. What a
quantized activation really changes is the output of the op that reads it, and there
clipping errors (all of one sign, correlated across a patch) add up where rounding
errors (independent) partly cancel. Where that op is cheap to run alone — the tensor's
only reader is a Conv, Gemm or MatMul with a constant weight, possibly behind a chain
of single-reader data-movement ops (Flatten, Reshape, MaxPool, …) — each candidate
threshold is scored by Σ (op(x̂) − op(x))² over a few stored samples, where x̂ is x
fake-quantized as deploy's default does (uint8, asymmetric over
[max(min, −T), min(max, T)]) and the op keeps its float weights (the weight's own
rounding error is the same for every candidate). The candidate with the least error
wins. Other tensors (read by an Add, by several ops, graph outputs) keep the
histogram's choice.

Cost: one extra run of the model on the stored samples, with the scored tensors
fetched one sample at a time, then one small ONNX Runtime session per scored tensor
that runs its next op on (candidates + 1) copies of each sample.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from lowbit.calibration.derived import DATA_MOVEMENT
from lowbit.calibration.observers import AutoObserver, Observer
from lowbit.quantize.params import activation_params, dequantize, quantize
from lowbit.runtime.ort import create_session

log = logging.getLogger(__name__)

SCORED_OPS = frozenset({"Conv", "Gemm", "MatMul"})


@dataclass(frozen=True)
class NextLayerChoice:
    """The threshold the next op's output error chose, and what the histogram chose."""

    tensor: str
    next_op: str
    threshold: float
    histogram_threshold: float
    errors: tuple[float, ...]  # next-op squared error per candidate, candidates' order


@dataclass(frozen=True)
class _Chain:
    """Nodes from the scored tensor to (and including) the op whose output is compared."""

    tensor: str
    nodes: tuple[onnx.NodeProto, ...]

    @property
    def output(self) -> str:
        return self.nodes[-1].output[0]


def find_chains(model: onnx.ModelProto, tensors: Sequence[str]) -> dict[str, _Chain]:
    """For each tensor, the chain to a single Conv/Gemm/MatMul reader with a constant
    weight, through single-reader data-movement ops whose other inputs are constants."""
    graph = model.graph
    constants = {init.name for init in graph.initializer}
    outputs = {value.name for value in graph.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in set(node.input):
            readers.setdefault(name, []).append(node)
    chains = {}
    for tensor in tensors:
        nodes: list[onnx.NodeProto] = []
        current = tensor
        while current not in outputs and len(readers.get(current, [])) == 1:
            node = readers[current][0]
            if node.domain not in ("", "ai.onnx") or not node.input or node.input[0] != current:
                break
            others = [name for name in node.input[1:] if name]
            if node.op_type in SCORED_OPS and others and others[0] in constants \
                    and all(name in constants for name in others):
                chains[tensor] = _Chain(tensor, (*nodes, node))
                break
            if node.op_type not in DATA_MOVEMENT or len(node.output) != 1 \
                    or not all(name in constants for name in others):
                break
            nodes.append(node)
            current = node.output[0]
    return chains


def score_next_layer(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]],
                     observers: Mapping[str, Observer], *, threads: int | None = None
                     ) -> dict[str, NextLayerChoice]:
    """Score every AutoObserver's candidates by the next op's output error on ``feeds``
    (a few batch-1 samples, the model's inputs) and return the choices made."""
    autos = {name: obs for name, obs in observers.items()
             if isinstance(obs, AutoObserver) and obs.count and np.isfinite(obs.min)
             and np.isfinite(obs.max) and obs.max > obs.min}
    chains = find_chains(model, list(autos))
    if not chains or not feeds:
        return {}
    candidates = {name: autos[name].candidates() for name in chains}
    errors = {name: np.zeros(len(candidates[name])) for name in chains}
    inputs = {value.name for value in model.graph.input}
    names = [name for name in chains if name not in inputs]
    fetch_model = onnx.ModelProto()
    fetch_model.CopyFrom(model)
    known = {value.name for value in fetch_model.graph.output}
    fetch_model.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
                                    for name in names if name not in known)
    session = create_session(fetch_model, threads=threads) if names else None
    scorers = {name: create_session(_chain_model(model, chain), threads=threads)
               for name, chain in chains.items()}
    for sample in feeds:
        values = {name: np.asarray(sample[name], np.float32) for name in chains
                  if name in inputs}
        if session is not None:
            values.update(zip(names, session.run(names, dict(sample)), strict=True))
        for name, x in values.items():
            obs, scorer = autos[name], scorers[name]
            (reference,) = scorer.run(None, {"x": x})
            reference = reference.astype(np.float64)
            for index, threshold in enumerate(candidates[name]):
                (y,) = scorer.run(None, {"x": _fake_quantize(x, obs.min, obs.max, threshold)})
                errors[name][index] += float(((y.astype(np.float64) - reference) ** 2).sum())
    choices = {}
    for name, chain in chains.items():
        best = int(np.argmin(errors[name]))
        choices[name] = NextLayerChoice(name, chain.nodes[-1].op_type,
                                        float(candidates[name][best]),
                                        autos[name].histogram_threshold(),
                                        tuple(float(e) for e in errors[name]))
    changed = sum(c.threshold != c.histogram_threshold for c in choices.values())
    log.info("auto: next-layer error scored %d tensors on %d samples, %d changed",
             len(choices), len(feeds), changed)
    return choices


def _fake_quantize(x: np.ndarray, lo: float, hi: float, threshold: float) -> np.ndarray:
    """x through uint8 QuantizeLinear→DequantizeLinear over the range deploy would use."""
    params = activation_params(max(lo, -threshold), min(hi, threshold), "uint8")
    return dequantize(quantize(x, params), params)


def _chain_model(model: onnx.ModelProto, chain: _Chain) -> onnx.ModelProto:
    """A model of the chain alone: input "x" (any batch), output the scored op's output."""
    graph = model.graph
    needed = {name for node in chain.nodes for name in node.input[1:] if name}
    inits = [init for init in graph.initializer if init.name in needed]
    nodes = []
    for node in chain.nodes:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        if copy.input[0] == chain.tensor:
            copy.input[0] = "x"
        nodes.append(copy)
    scored = helper.make_graph(
        nodes, "next_layer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(chain.output, TensorProto.FLOAT, None)], inits)
    out = helper.make_model(scored, opset_imports=list(model.opset_import))
    out.ir_version = model.ir_version
    return out
