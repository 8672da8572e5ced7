"""INT8 for transformer graphs: the linear layers in integer, the rest float on purpose.

    scope = transformer_scope(model)             # None for a graph without attention/LayerNorm
    scope.keep_float                             # {node name: why it stays float}
    scope.attention                              # the run-time × run-time MatMuls (Q·Kᵀ, P·V)
    result = quantize_int8(model, ranges, QuantizeSettings(quantize_attention=True))

A graph is a transformer when it has a LayerNormalization (or its decomposed
ReduceMean form) or a Softmax fed by a MatMul of two run-time tensors. There,
lowbit quantizes only what ONNX Runtime runs as integer matmuls: every MatMul/Gemm
with a constant weight (per output column) and, with
``QuantizeSettings.quantize_attention``, the attention MatMuls Q·Kᵀ and P·V. Large
embedding tables are stored int8 per channel and dequantized after the lookup
(``quantize_embeddings``: a smaller file, no arithmetic changes). Every other op stays
float, each with its reason:

* LayerNormalization divides by a per-token standard deviation, and its input (the
  residual stream) has a few channels far larger than the rest (Bondarenko et al.
  2021): one per-tensor 8-bit scale would flatten the others;
* Softmax outputs span orders of magnitude (already a rule: lowbit.quantize.int8.rules);
* GELU (the Erf form, x·½·(1+erf(x/√2)), or a Gelu op) has no integer kernel, and
  its output, the FFN's second input, mixes a long positive tail with small values;
* residual and bias Adds, the attention scaling and the mask arithmetic are cheap
  elementwise ops between float ops: quantizing them only adds Q/DQ pairs and error.
  The mask tensors ((1 − mask)·finfo.min) also fail the |x| ≥ 1e4 range guard, which
  the reason says when the table shows it.

The quantized MatMuls read their input through QuantizeLinear → DequantizeLinear and
give a float output, which ORT fuses into MatMulIntegerToFloat (3-D activation ×
2-D weight included). Float readers of a quantized tensor (the residual Add reading
a LayerNorm output that Q/K/V also read) read the float tensor itself, not its
dequantized copy, so the residual stream carries no rounding error. Where the MatMul
input has a fully static shape, ORT's MatMulAddFusion would turn MatMul + bias Add
into Reshape → float Gemm → Reshape and skip the integer kernel; it only takes a 1-D
bias there, so the bias is given the same values as [1, …, 1, N]
(``keep_bias_adds_apart``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from lowbit.calibration.observers import TensorRange
from lowbit.graph import FreshNames, infer_shapes_light

LINEAR_OPS = ("MatMul", "Gemm")
LAYERNORM_OPS = frozenset({"LayerNormalization", "SimplifiedLayerNormalization",
                           "SkipLayerNormalization", "RMSNormalization"})
GELU_OPS = frozenset({"Gelu", "FastGelu", "BiasGelu"})
SHAPE_OPS = frozenset({"Shape", "Size", "ConstantOfShape", "Range", "NonZero", "Equal",
                       "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "And", "Or", "Not"})
DATA_MOVEMENT = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten",
                           "Concat", "Split", "Slice", "Identity", "Expand"})

_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
           onnx.TensorProto.DOUBLE, onnx.TensorProto.UNDEFINED}

REASONS = {
    "layernorm": "LayerNorm kept float: it divides by each token's standard deviation, and "
                 "its input (the residual stream) has outlier channels one 8-bit scale flattens",
    "softmax": "Softmax kept float: its outputs span orders of magnitude",
    "gelu": "GELU kept float: no integer kernel, and its output mixes a long positive tail "
            "with small values",
    "residual": "residual/embedding Add kept float: the residual stream has outlier channels "
                "and feeds LayerNorm",
    "bias": "bias Add kept float: it follows the integer MatMul's float output",
    "mask": "attention-mask arithmetic kept float",
    "elementwise": "elementwise op kept float in a transformer: only the matmuls run as "
                   "integer kernels; quantizing it would only add Q/DQ pairs",
    "shape": "shape/index computation (not float data)",
    "movement": "data movement kept float: its reader is float (or quantizes after it)",
    "gather": "embedding lookup (Gather) kept float: a table read, no arithmetic",
    "attention": "attention MatMul (run-time × run-time) kept float; --quantize-attention "
                 "quantizes it",
    "other": "kept float in a transformer: only MatMul/Gemm are quantized",
}


@dataclass(frozen=True)
class TransformerScope:
    """What a transformer graph quantizes: node name → reason for each float node."""

    keep_float: dict[str, str]
    linear: tuple[str, ...]        # MatMul/Gemm nodes with a constant weight
    attention: tuple[str, ...]     # MatMul nodes with two run-time operands
    categories: dict[str, str] = field(default_factory=dict)  # node name → category

    def note(self, quantize_attention: bool, embeddings: int = 0) -> str:
        kinds = sorted({c for c in self.categories.values()
                        if c in ("layernorm", "softmax", "gelu", "residual", "mask")})
        att = (f"{len(self.attention)} attention MatMuls INT8" if quantize_attention
               else f"{len(self.attention)} attention MatMuls float (--quantize-attention)")
        tables = (f"; {embeddings} embedding table(s) stored int8 (per channel, "
                  "dequantized after the lookup)" if embeddings else "")
        return (f"transformer: {len(self.linear)} MatMul/Gemm with weights INT8 (per output "
                f"column), {att}; kept float: {', '.join(kinds) or 'nothing else'} and the "
                f"other elementwise ops (reasons above){tables}")


def transformer_scope(model: onnx.ModelProto, *, quantize_attention: bool = False,
                      ranges: Mapping[str, TensorRange] | None = None,
                      max_abs_range: float = 1e4) -> TransformerScope | None:
    """The float/INT8 split for a transformer graph, or None when ``model`` is not one."""
    graph = _Graph(model)
    attention = [n for n in graph.nodes if n.op_type == "MatMul" and n.name
                 and not any(graph.is_constant(x) for x in n.input[:2])]
    layernorm = {n.name for n in graph.nodes if n.op_type in LAYERNORM_OPS}
    layernorm |= _decomposed_layernorm(graph)
    attends = any(graph.reaches_softmax(n) for n in attention)
    if not layernorm and not attends:
        return None
    categories: dict[str, str] = {name: "layernorm" for name in layernorm}
    gelu = _gelu_nodes(graph)
    categories.update({name: "gelu" for name in gelu if name not in categories})
    linear = []
    for node in graph.nodes:
        if not node.name or node.name in categories:
            continue
        if node.op_type in LINEAR_OPS and len(node.input) > 1 and graph.is_constant(node.input[1]):
            linear.append(node.name)
            continue
        if node.op_type == "MatMul" and node in attention:
            if not quantize_attention:
                categories[node.name] = "attention"
            continue
        categories[node.name] = _category(node, graph, ranges, max_abs_range)
    keep = {name: REASONS[c] for name, c in categories.items()}
    if ranges:
        for name, category in categories.items():
            if category == "mask":
                keep[name] = _mask_reason(graph.by_name[name], ranges, max_abs_range)
    return TransformerScope(keep, tuple(linear), tuple(n.name for n in attention), categories)


def real_token_masks(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]]
                     ) -> list[np.ndarray | None]:
    """Per feed, the [batch, sequence] mask of a transformer's real tokens (its attention
    mask ≠ 0), or None: what scores of the model's outputs should look at, since nothing
    downstream reads the padded positions."""
    name = attention_mask_input(model)
    if name is None:
        return [None] * len(feeds)
    return [np.asarray(feed[name]).astype(bool) if name in feed else None for feed in feeds]


def real_tokens(value: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``value`` (float64) at the real tokens only, when its first two axes are the mask's
    [batch, sequence]; else all of it."""
    array = np.asarray(value, np.float64)
    if mask is not None and mask.ndim == 2 and array.shape[:2] == mask.shape:
        return array[mask]
    return array


def attention_mask_input(model: onnx.ModelProto) -> str | None:
    """The integer graph input that only reaches a Softmax through mask arithmetic (Unsqueeze,
    Cast, Sub, Mul, Add, Where, …): the attention mask, marking padding with 0. None when
    there is no such input, or more than one."""
    graph = _Graph(model)
    stops = {"Shape", "Size", "Gather", *LINEAR_OPS, *LAYERNORM_OPS}
    found = []
    for name in sorted(graph.graph_inputs):
        if graph.is_float(name):
            continue
        frontier, seen, reaches = [name], set(), False
        while frontier and not reaches:
            tensor = frontier.pop()
            for user in graph.consumers.get(tensor, []):
                if user.op_type == "Softmax":
                    reaches = True
                elif user.op_type not in stops and user.name not in seen:
                    seen.add(user.name)
                    frontier.extend(user.output)
        if reaches:
            found.append(name)
    return found[0] if len(found) == 1 else None


def keep_bias_adds_apart(model: onnx.ModelProto, scope: TransformerScope) -> onnx.ModelProto:
    """A copy of ``model`` whose 1-D bias after each linear MatMul with a static input of rank
    r ≥ 3 has shape [1, …, 1, N] (rank r): the same broadcast, but ORT's MatMulAddFusion,
    which turns MatMul + Add into Reshape → Gemm → Reshape when the input shape is static,
    only takes a 1-D bias there, and its float Gemm would bypass the integer
    MatMulIntegerToFloat kernel the Q/DQ pattern asks for."""
    graph = _Graph(model)
    linear = set(scope.linear)
    changes: dict[str, tuple[int, np.ndarray]] = {}  # Add node name → (bias index, new bias)
    for name in linear:
        node = graph.by_name[name]
        shape = graph.shapes.get(node.input[0])
        users = graph.consumers.get(node.output[0], [])
        if node.op_type != "MatMul" or not shape or len(shape) < 3 or None in shape \
                or len(users) != 1 or users[0].op_type != "Add" or not users[0].name:
            continue
        add = users[0]
        index = 1 if add.input[0] == node.output[0] else 0
        bias = graph.initializers.get(add.input[index])
        if bias is None or len(bias.dims) != 1:
            continue
        array = numpy_helper.to_array(bias)
        changes[add.name] = (index, array.reshape([1] * (len(shape) - 1) + [array.size]))
    if not changes:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    names = FreshNames.of(out)
    for node in out.graph.node:
        if node.name not in changes:
            continue
        index, array = changes[node.name]
        name = names.make(f"{node.input[index]}_{array.ndim}d")
        out.graph.initializer.append(numpy_helper.from_array(array, name))
        node.input[index] = name
    used = {x for n in out.graph.node for x in n.input}
    kept = [i for i in out.graph.initializer if i.name in used]
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept)
    return out


def unshare_float_readers(model: onnx.ModelProto, quantized: set[str]) -> int:
    """Let nodes outside ``quantized`` read the float tensor a Q→DQ pair stands for
    instead of its dequantized copy; returns how many inputs were rewired (in place)."""
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    source: dict[str, str] = {}
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] in initializers:
            continue
        q = producer.get(node.input[0])
        if q is not None and q.op_type == "QuantizeLinear":
            source[node.output[0]] = q.input[0]
    outputs = {o.name for o in graph.output}
    rewired = 0
    for node in graph.node:
        if node.name in quantized or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for index, name in enumerate(node.input):
            if name in source:
                node.input[index] = source[name]
                rewired += 1
    # A DQ that nobody reads any more (and its Q) would be dead weight: drop them.
    used = {x for n in graph.node for x in n.input} | outputs
    dead = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.output[0] in source
            and n.output[0] not in used]
    for node in dead:
        graph.node.remove(node)
    used = {x for n in graph.node for x in n.input} | outputs
    for node in [n for n in graph.node if n.op_type == "QuantizeLinear"
                 and n.output[0] not in used]:
        graph.node.remove(node)
    return rewired


# -- graph reading ------------------------------------------------------------------------


class _Graph:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.nodes = list(model.graph.node)
        self.by_name = {n.name: n for n in self.nodes if n.name}
        self.initializers = {i.name: i for i in model.graph.initializer}
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self._constant: dict[str, bool] = {}
        try:
            inferred = infer_shapes_light(model).graph  # no weights serialized for it
        except Exception:  # noqa: BLE001 - types are a hint here; unknown means float
            inferred = model.graph
        values = [v for v in [*inferred.value_info, *inferred.input, *inferred.output]
                  if v.type.HasField("tensor_type")]
        self.types = {v.name: v.type.tensor_type.elem_type for v in values}
        self.shapes = {v.name: tuple(d.dim_value if d.HasField("dim_value") else None
                                     for d in v.type.tensor_type.shape.dim)
                       for v in values if v.type.tensor_type.HasField("shape")}
        self.graph_inputs = {v.name for v in model.graph.input} - set(self.initializers)

    def is_constant(self, name: str) -> bool:
        """An initializer, or computed from initializers and Constant nodes alone."""
        if not name:
            return True
        if name in self._constant:
            return self._constant[name]
        self._constant[name] = False  # cycles cannot occur in a valid graph; guard anyway
        node = self.producer.get(name)
        if name in self.initializers:
            value = True
        elif node is None:
            value = False  # a graph input
        elif node.op_type == "Constant":
            value = True
        else:
            value = bool(node.input) and all(self.is_constant(x) for x in node.input)
        self._constant[name] = value
        return value

    def is_float(self, name: str) -> bool:
        """Float data (or of unknown type, which is treated as float)."""
        return self.types.get(name, onnx.TensorProto.UNDEFINED) in _FLOATS

    def from_integer_input(self, node: onnx.NodeProto) -> bool:
        """Whether a float value of ``node`` is computed from an integer graph input (an
        attention mask) through data ops; embedding lookups (Gather of a constant table
        by token ids), Shape and the matmuls/LayerNorms end a path."""
        seen: set[str] = set()
        stack = list(node.input)
        while stack:
            name = stack.pop()
            if name in seen or not name or self.is_constant(name):
                continue
            seen.add(name)
            if name in self.graph_inputs:
                if not self.is_float(name):
                    return True
                continue
            producer = self.producer.get(name)
            if producer is None or producer.op_type in {"Shape", "Size", *LINEAR_OPS,
                                                         *LAYERNORM_OPS, "Softmax"}:
                continue
            if producer.op_type == "Gather" and self.is_constant(producer.input[0]):
                continue
            data = producer.input[:1] if producer.op_type in DATA_MOVEMENT else producer.input
            stack.extend(data)
        return False

    def constant_value(self, name: str) -> float | None:
        """The value of a scalar (or single-element) initializer / Constant, else None."""
        if name in self.initializers:
            array = numpy_helper.to_array(self.initializers[name])
        else:
            node = self.producer.get(name)
            if node is None or node.op_type != "Constant" or not node.attribute:
                return None
            attr = node.attribute[0]
            if attr.type != onnx.AttributeProto.TENSOR:
                return None
            array = numpy_helper.to_array(attr.t)
        return float(array.reshape(-1)[0]) if array.size == 1 else None

    def reaches_softmax(self, node: onnx.NodeProto, depth: int = 4) -> bool:
        """Whether the node's output reaches a Softmax within ``depth`` elementwise hops,
        or its input comes from a Softmax (P·V) within as many."""
        frontier = [node]
        for _ in range(depth):
            nxt = []
            for n in frontier:
                for out in n.output:
                    for user in self.consumers.get(out, []):
                        if user.op_type == "Softmax":
                            return True
                        nxt.append(user)
            frontier = nxt
        for name in node.input[:2]:
            producer = self.producer.get(name)
            for _ in range(depth):
                if producer is None:
                    break
                if producer.op_type == "Softmax":
                    return True
                producer = self.producer.get(producer.input[0]) if producer.input else None
        return False


def _decomposed_layernorm(graph: _Graph) -> set[str]:
    """Nodes of (x − mean(x)) / sqrt(mean((x − mean(x))²) + eps) · γ + β, as exporters
    for opsets below 17 write LayerNorm."""
    found: set[str] = set()
    for mean in graph.nodes:
        if mean.op_type != "ReduceMean" or not mean.input:
            continue
        for sub in graph.consumers.get(mean.output[0], []):
            if sub.op_type != "Sub" or sub.input[0] != mean.input[0]:
                continue
            found_chain = _variance_chain(graph, sub)
            if found_chain is None:
                continue
            region, tail = found_chain
            region |= {mean.name, sub.name}
            for _ in range(2):  # the affine Mul(γ) and Add(β)
                users = graph.consumers.get(tail.output[0], [])
                if len(users) == 1 and users[0].op_type in ("Mul", "Add") and any(
                        graph.is_constant(i) for i in users[0].input):
                    tail = users[0]
                    region.add(tail.name)
            found |= {name for name in region if name}
    return found


def _variance_chain(graph: _Graph, sub: onnx.NodeProto
                    ) -> tuple[set[str], onnx.NodeProto] | None:
    """Pow/Mul(d, d) → ReduceMean → Add(eps) → Sqrt [→ Reciprocal] → Div/Mul(d, ·) from
    d = x − mean(x): the names of those nodes and the final Div/Mul, or None."""
    d = sub.output[0]
    for square in graph.consumers.get(d, []):
        if square.op_type not in ("Pow", "Mul") or square is sub:
            continue
        if square.op_type == "Mul" and list(square.input) != [d, d]:
            continue
        chain, node = {square.name}, square
        for _ in range(5):
            users = graph.consumers.get(node.output[0], [])
            if len(users) != 1:
                break
            node = users[0]
            chain.add(node.name)
            if node.op_type in ("Div", "Mul") and d in node.input:
                return chain, node
            if node.op_type not in ("ReduceMean", "Add", "Sqrt", "Reciprocal"):
                break
    return None


def _gelu_nodes(graph: _Graph) -> set[str]:
    """Gelu ops, and the Erf form x·½·(1 + erf(x/√2)) in its usual orders:
    [Div √2 | Mul 1/√2] → Erf → Add 1 → Mul x → Mul ½, or Mul(½x, 1 + erf(·))."""
    found = {n.name for n in graph.nodes if n.op_type in GELU_OPS and n.name}
    for erf in graph.nodes:
        if erf.op_type != "Erf":
            continue
        pre = graph.producer.get(erf.input[0])
        if pre is None or pre.op_type not in ("Div", "Mul") or \
                graph.constant_value(pre.input[1]) is None:
            continue
        x = pre.input[0]
        users = graph.consumers.get(erf.output[0], [])
        if len(users) != 1 or users[0].op_type != "Add":
            continue
        add = users[0]
        users = graph.consumers.get(add.output[0], [])
        if len(users) != 1 or users[0].op_type != "Mul":
            continue
        merge = users[0]
        other = next((i for i in merge.input if i != add.output[0]), "")
        region = {pre.name, erf.name, add.name, merge.name}
        if other == x:
            users = graph.consumers.get(merge.output[0], [])
            if len(users) == 1 and users[0].op_type == "Mul" and any(
                    graph.constant_value(i) is not None for i in users[0].input):
                region.add(users[0].name)
        else:
            half = graph.producer.get(other)
            if half is None or half.op_type != "Mul" or x not in half.input:
                continue
            region.add(half.name)
        found |= {name for name in region if name}
    return found


def _category(node: onnx.NodeProto, graph: _Graph, ranges: Mapping[str, TensorRange] | None,
              max_abs_range: float) -> str:
    op = node.op_type
    if op == "Softmax":
        return "softmax"
    if op == "Gather" and node.input and graph.is_constant(node.input[0]):
        return "gather"
    if not any(graph.is_float(o) for o in node.output):
        return "shape"
    if graph.from_integer_input(node) or _reaches_limit(node, ranges, max_abs_range):
        return "mask"
    if op == "Add":
        runtime = [x for x in node.input if not graph.is_constant(x)]
        if len(runtime) == 2:
            return "residual"
        producer = graph.producer.get(runtime[0]) if runtime else None
        if producer is not None and producer.op_type in LINEAR_OPS:
            return "bias"
        return "elementwise"
    if op in DATA_MOVEMENT:
        return "movement"
    if op in ("Mul", "Div", "Sub", "Pow", "Sqrt", "Tanh", "Sigmoid", "Relu", "Where", "Erf"):
        return "elementwise"
    return "other"


def _reaches_limit(node: onnx.NodeProto, ranges: Mapping[str, TensorRange] | None,
                   limit: float) -> bool:
    if not ranges:
        return False
    for name in node.output:
        rng = ranges.get(name)
        if rng is not None and max(abs(rng.min), abs(rng.max)) >= limit:
            return True
    return False


def _mask_reason(node: onnx.NodeProto, ranges: Mapping[str, TensorRange],
                 limit: float) -> str:
    for name in [*node.output, *node.input]:
        rng = ranges.get(name)
        if rng is not None and max(abs(rng.min), abs(rng.max)) >= limit:
            return (f"{REASONS['mask']}: '{name}' spans [{rng.min:.3g}, {rng.max:.3g}], "
                    f"beyond the |x| ≥ {limit:g} guard")
    return REASONS["mask"]
