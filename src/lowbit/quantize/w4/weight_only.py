"""INT4 weight-only quantization: MatMul/Gemm weights to ONNX Runtime's MatMulNBits.

    settings = WeightOnlySettings(block_size=32, algorithm="gptq")
    result = quantize_weight_only(canonical, settings, samples=calibration_samples)
    result.model                       # MatMulNBits (com.microsoft, bits=4) nodes
    result.quantized, result.left_float  # NodeDecisions, the latter with reasons
    result.summary(before_bytes, after_bytes)  # "W4 weight-only: 36 MatMuls, block 32, ..."

Activations stay float; only the constant weights shrink (8× for F32, plus one scale
and one 4-bit zero point per block and column), which is what memory-bound MatMuls
(transformer layers at small batch) need. A node is rewritten when it is

- a MatMul whose B is a constant 2-D float32 initializer [K, N], or
- a Gemm with transA=0 and a constant 2-D B (transB and alpha folded into B) whose C,
  if any, is a constant vector of N (it becomes MatMulNBits' bias, times beta).

Everything else stays float with a reason (a B computed at run time, as attention's
Q·Kᵀ; a batched 3-D weight; a float16 weight). A K that is not a multiple of the block
size is padded inside the last block (see blockwise.py), never skipped.

``algorithm`` "rtn" rounds each weight to the nearest code; "gptq" needs calibration
samples and compensates each row's rounding error with the rows after it (gptq.py),
from input Hessians collected in one ORT pass (hessian.py) or, the caller's choice, as
shards on workers merged into the same sums (hessian_shards.py).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lowbit.errors import ArgumentError, UnsupportedOpError, UsageError
from lowbit.graph import FreshNames
from lowbit.quantize.int8.embeddings import quantize_embeddings
from lowbit.quantize.int8.qdq import NodeDecision
from lowbit.quantize.w4.blockwise import (
    BITS,
    BlockQuant,
    check_block_size,
    pack_nbits,
    quantize_blocks,
)
from lowbit.quantize.w4.gptq import DAMP, InverseHessian, gptq_quantize, inverse_hessian
from lowbit.quantize.w4.hessian import Hessians, collect_hessians, progress_bar
from lowbit.runtime.memory import MemoryBudget

log = logging.getLogger(__name__)

ALGORITHMS = ("rtn", "gptq")
MS_DOMAIN = "com.microsoft"
GPTQ_SAMPLES = 128


@dataclass(frozen=True)
class WeightOnlySettings:
    """How to quantize weights to 4 bits.

    block_size: rows of K per scale (16, 32, 64, 128 or 256). algorithm: "rtn" or
    "gptq". symmetric: no zero points (codes −7..7 around MatMulNBits' default 8)
    instead of a 4-bit zero point per block. act_order (GPTQ): visit K in decreasing
    input energy. damp (GPTQ): dampening, a fraction of mean(diag H). samples (GPTQ):
    the most calibration samples used. embeddings: also store large embedding tables
    (a Gather's constant [V, H]) as int8 per hidden channel, as static INT8 does.
    """

    block_size: int = 32
    algorithm: str = "rtn"
    symmetric: bool = False
    act_order: bool = False
    damp: float = DAMP
    samples: int = GPTQ_SAMPLES
    embeddings: bool = True  # large Gather tables stored int8 (lowbit.quantize.int8.scope)

    def __post_init__(self) -> None:
        check_block_size(self.block_size)
        if self.algorithm not in ALGORITHMS:
            raise UsageError(f"unknown weight-only algorithm '{self.algorithm}'; choose one of "
                             f"{', '.join(ALGORITHMS)}")
        if self.act_order and self.algorithm != "gptq":
            raise ArgumentError("{act_order} applies to {algorithm} gptq only")
        if not 0 < self.damp < 1:
            raise UsageError(f"GPTQ dampening must be in (0, 1), got {self.damp}")
        if self.samples <= 0:
            raise UsageError(f"GPTQ needs a positive number of samples, got {self.samples}")


@dataclass(frozen=True)
class WeightTarget:
    """A node to rewrite: its A input and B as [K, N] (a Gemm's transB and alpha folded in)."""

    node: onnx.NodeProto
    input: str
    weight: np.ndarray
    bias: np.ndarray | None


@dataclass(frozen=True)
class WeightOnlyResult:
    model: onnx.ModelProto
    quantized: tuple[NodeDecision, ...]
    left_float: tuple[NodeDecision, ...]
    settings: WeightOnlySettings
    samples: int = 0  # calibration samples GPTQ used
    embeddings: tuple[str, ...] = ()  # the Gather nodes whose tables went int8

    def summary(self, before_bytes: int, after_bytes: int) -> str:
        ops: dict[str, int] = {}
        for decision in self.quantized:
            ops[decision.op_type] = ops.get(decision.op_type, 0) + 1
        counted = " + ".join(f"{n} {op}{'s' if n != 1 else ''}" for op, n in ops.items())
        s = self.settings
        how = s.algorithm + (f" on {self.samples} samples" if s.algorithm == "gptq" else "")
        if s.act_order:
            how += ", act-order"
        tables = (f"; {len(self.embeddings)} embedding table(s) int8"
                  if self.embeddings else "")
        return (f"W4 weight-only: {counted}, block {s.block_size} "
                f"({'symmetric' if s.symmetric else 'asymmetric'}), {how}{tables}, file "
                f"{_size(before_bytes)} → {_size(after_bytes)}")


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 100_000 else f"{n_bytes / 1e3:.1f} kB"


WEIGHTED_NOT_MATMUL = ("Conv", "ConvTranspose")


def find_targets(model: onnx.ModelProto) -> tuple[list[WeightTarget], list[NodeDecision]]:
    """The MatMul/Gemm nodes whose weight can go to 4 bits, and the others with reasons."""
    inits = {init.name: init for init in model.graph.initializer}
    graph_inputs = {value.name for value in model.graph.input}
    targets: list[WeightTarget] = []
    left: list[NodeDecision] = []
    for node in model.graph.node:
        if node.domain in ("", "ai.onnx") and node.op_type in WEIGHTED_NOT_MATMUL:
            left.append(NodeDecision(node.name, node.op_type,
                                     "W4 weight-only covers MatMul/Gemm; its weights stay F32 "
                                     "(--quantize INT8 --weight-bits 4 gives 4-bit conv weights)"))
            continue
        if node.domain not in ("", "ai.onnx") or node.op_type not in ("MatMul", "Gemm"):
            continue
        found = _target(node, inits, graph_inputs)
        if isinstance(found, str):
            left.append(NodeDecision(node.name, node.op_type, found))
        else:
            targets.append(found)
    return targets, left


def _target(node: onnx.NodeProto, inits: Mapping[str, onnx.TensorProto],
            graph_inputs: set[str]) -> WeightTarget | str:
    b_name = node.input[1]
    if b_name not in inits or b_name in graph_inputs:
        return "B is not a constant initializer (computed or fed at run time)"
    b_init = inits[b_name]
    if b_init.data_type != TensorProto.FLOAT:
        return (f"B '{b_name}' is {TensorProto.DataType.Name(b_init.data_type)}; "
                "W4 takes float32 weights")
    if len(b_init.dims) != 2:
        return f"B '{b_name}' has shape {list(b_init.dims)}, not a 2-D [K, N] weight"
    weight = numpy_helper.to_array(b_init).astype(np.float32)
    if node.op_type == "MatMul":
        return WeightTarget(node, node.input[0], weight, None)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("transA", 0):
        return "Gemm with transA=1 has no MatMulNBits form"
    if attrs.get("transB", 0):
        weight = weight.T.copy()
    weight = weight * np.float32(attrs.get("alpha", 1.0))
    bias = None
    if len(node.input) > 2 and node.input[2]:
        c_name = node.input[2]
        if c_name not in inits or inits[c_name].data_type != TensorProto.FLOAT:
            return "Gemm's C is not a constant float32 initializer"
        c = numpy_helper.to_array(inits[c_name]).astype(np.float32)
        n = weight.shape[1]
        if c.size not in (1, n) or (c.ndim == 2 and c.shape[0] != 1) or c.ndim > 2:
            return f"Gemm's C has shape {list(c.shape)}, not a vector of N={n}"
        bias = np.broadcast_to(c.reshape(-1), (n,)) * np.float32(attrs.get("beta", 1.0))
        bias = bias.astype(np.float32)
    return WeightTarget(node, node.input[0], weight, bias)


def gptq_tensors(model: onnx.ModelProto) -> tuple[str, ...]:
    """The tensors whose Hessians GPTQ needs: the A input of every eligible MatMul/Gemm
    (once each; MatMuls that read one tensor share its Hessian)."""
    targets, _ = find_targets(model)
    return tuple(dict.fromkeys(t.input for t in targets))


def quantize_weight_only(model: onnx.ModelProto, settings: WeightOnlySettings, *,
                         samples: Iterable[Mapping[str, np.ndarray]] | None = None,
                         hessians: Hessians | None = None,
                         total_samples: int | None = None, progress: bool = True,
                         memory_budget: MemoryBudget | None = None) -> WeightOnlyResult:
    """A copy of ``model`` with every eligible MatMul/Gemm as a 4-bit MatMulNBits node.

    GPTQ reads its statistics from ``samples`` (collected here, in one pass) or takes
    ``hessians`` collected by the caller (of ``gptq_tensors``; e.g. as shards on
    workers, lowbit.quantize.w4.hessian_shards)."""
    targets, left = find_targets(model)
    if not targets:
        found = (f"; its {len(left)} MatMul/Gemm node(s) stay float: {left[0].reason}"
                 if left else "")
        raise UnsupportedOpError(
            "W4 found no MatMul or Gemm with a constant 2-D float32 weight to "
            f"quantize{found}")
    if samples is not None and hessians is not None:
        raise UsageError("give GPTQ samples or Hessians collected from them, not both")
    matrices: dict[str, np.ndarray] = {}
    used = 0
    if settings.algorithm == "gptq":
        if samples is not None:
            hessians = collect_hessians(model, [t.input for t in targets], samples,
                                        total=total_samples, progress=progress,
                                        memory_budget=memory_budget)
        if hessians is None:
            raise ArgumentError("{algorithm} gptq needs calibration samples ({calibration_data})")
        _check_hessians(hessians, targets)
        matrices, used = dict(hessians.hessians), hessians.samples
    out = onnx.ModelProto()
    out.CopyFrom(model)
    names = FreshNames.of(out)
    replacements: dict[str, list[onnx.NodeProto]] = {}
    inverses: dict[str, InverseHessian] = {}
    readers = Counter(t.input for t in targets)
    with progress_bar("GPTQ layers", progress and settings.algorithm == "gptq",
                      len(targets)) as advance:
        for target in targets:
            quant = _quantize(target, settings, matrices, inverses)
            replacements[target.node.output[0]] = [_nbits_node(out, target, quant, names)]
            readers[target.input] -= 1
            if not readers[target.input]:  # its last reader: free the K×K matrices
                inverses.pop(target.input, None)
                matrices.pop(target.input, None)
            advance(1)
    _replace_nodes(out, replacements)
    tables = {n.input[0] for n in out.graph.node if n.op_type == "Gather" and n.input}
    gathers = tuple(quantize_embeddings(out)) if settings.embeddings else ()
    _drop_unused_initializers(out, {t.node.input[1] for t in targets} | tables |
                                   {t.node.input[2] for t in targets if len(t.node.input) > 2})
    if not any(o.domain == MS_DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    quantized = tuple(NodeDecision(t.node.name, t.node.op_type) for t in targets)
    return WeightOnlyResult(out, quantized, tuple(left), settings, used, gathers)


def _check_hessians(hessians: Hessians, targets: list[WeightTarget]) -> None:
    """Hessians given by the caller cover every target's input."""
    missing = sorted({t.input for t in targets} - set(hessians.hessians))
    if missing:
        raise UsageError(f"GPTQ has no Hessian of '{missing[0]}' ({len(missing)} tensor(s) "
                         "missing); collect them for gptq_tensors(model)")


def _quantize(target: WeightTarget, settings: WeightOnlySettings,
              hessians: Mapping[str, np.ndarray], inverses: dict[str, InverseHessian]
              ) -> BlockQuant:
    if settings.algorithm == "gptq":
        if target.input not in inverses:  # factor once per input tensor (Q, K, V share one)
            inverses[target.input] = inverse_hessian(hessians[target.input],
                                                     damp=settings.damp,
                                                     act_order=settings.act_order)
        return gptq_quantize(target.weight, inverses[target.input], settings.block_size,
                             symmetric=settings.symmetric)
    return quantize_blocks(target.weight, settings.block_size, symmetric=settings.symmetric)


def _nbits_node(model: onnx.ModelProto, target: WeightTarget, quant: BlockQuant,
                names: FreshNames) -> onnx.NodeProto:
    packed = pack_nbits(quant)
    base = target.node.name or target.node.input[1]
    b = names.make(f"{base}_w4")
    scales = names.make(f"{base}_w4_scales")
    inputs = [target.input, b, scales]
    model.graph.initializer.append(numpy_helper.from_array(packed.b, b))
    model.graph.initializer.append(numpy_helper.from_array(packed.scales, scales))
    if packed.zeros is not None:
        zeros = names.make(f"{base}_w4_zeros")
        model.graph.initializer.append(numpy_helper.from_array(packed.zeros, zeros))
        inputs.append(zeros)
    if target.bias is not None:
        bias = names.make(f"{base}_w4_bias")
        model.graph.initializer.append(numpy_helper.from_array(target.bias, bias))
        inputs += [""] * (5 - len(inputs)) + [bias]  # A, B, scales, zero_points, g_idx, bias
    k, n = quant.shape
    return helper.make_node("MatMulNBits", inputs, [target.node.output[0]],
                            name=target.node.name, domain=MS_DOMAIN, K=k, N=n, bits=BITS,
                            block_size=quant.block_size)


def _replace_nodes(model: onnx.ModelProto, replacements: Mapping[str, list[onnx.NodeProto]]
                   ) -> None:
    nodes = []
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm") and node.output[0] in replacements:
            nodes.extend(replacements[node.output[0]])
        else:
            nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def _drop_unused_initializers(model: onnx.ModelProto, candidates: set[str]) -> None:
    used = set()

    def visit(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            used.update(node.input)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    visit(attr.g)
                for sub in attr.graphs:
                    visit(sub)

    visit(model.graph)
    used |= {o.name for o in model.graph.output}
    keep = [i for i in model.graph.initializer if i.name in used or i.name not in candidates]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
