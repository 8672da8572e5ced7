"""An ONNX graph as a trainable torch module; with Q/DQ, a fake-quantized QAT student.

    student = TorchGraph(onnx.load("model.int8.onnx"), float_model=onnx.load("model.f32.onnx"))
    teacher = TorchGraph(onnx.load("model.f32.onnx"))      # the same interpreter, no Q/DQ
    logits, = student({"input": x})                          # torch tensors in and out
    qdq = student.export()                                   # the QDQ model, learned values
    names = shared_features(student, teacher)                # the same tensors in both
    student.tap(names); teacher.tap(names)                   # both also return those

A QDQ model lowbit deploy wrote (or one made elsewhere) already says which tensors are
quantized, how (uint8/int8 zero points, per-channel weights, shared scales of tied
tensors, Relus folded into their producer's range) and on which weight grid: the student
is that graph, run by lowbit.qat.ops, with every QuantizeLinear → DequantizeLinear pair a
fake quantization whose scale is learned (one parameter per scale initializer, so tied
tensors stay tied) and every weight DequantizeLinear a latent float weight fake-quantized
per channel on deploy's grid (QuantizeSettings.weight_grid: full ±127 where ONNX Runtime's
kernels are exact, paired or 7-bit where they saturate, ±7 for W4A8) with a learned
scale. Latent weights start from the float model's where it is given and its weights
round to the deployed integers (else from the dequantized integers); int32 biases are
learned as floats. ``export`` writes the learned values back into the same graph: new
integers, weight and activation scales, biases re-quantized to int32 with s_in·s_w (the
weight scale raised where the bias would overflow, as deploy does). The graph itself is
unchanged, so ONNX Runtime fuses it into the same kernels and it runs at the same speed.

``tap`` makes the module also return inner tensors after its outputs, for feature
distillation (lowbit.qat.distillation): ``shared_features`` names the tensors that both
models compute the same way (the same name, made by the same op type; a Conv whose Relu
or Clip deploy folded into its range took the activation's name, and is left out).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import ml_dtypes
import numpy as np
import onnx
import torch
from onnx import numpy_helper

from lowbit.errors import ModelError
from lowbit.graph import constant_arrays
from lowbit.qat.fake_quant import channel_view, fake_quant, fake_quant_weight
from lowbit.qat.ops import Constants, attrs, kernel_for
from lowbit.quantize.int8.params import (
    GRID_QMAX,
    QMIN_QMAX,
    WeightQuant,
    bias_safe_weight_scale,
    bias_scale,
    limit_pairs,
    quantize_bias,
    weight_kind,
)
from lowbit.quantize.int8.settings import QuantizeSettings

log = logging.getLogger(__name__)

WEIGHTED = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}
_NOT_COMPUTED = ("QuantizeLinear", "DequantizeLinear", "Constant")
# ops that move a quantized constant's integers before their DequantizeLinear
_MOVES = ("Gather", "Reshape", "Transpose", "Slice", "Squeeze", "Unsqueeze", "Flatten",
          "Identity")
BIASED = {"Conv": 2, "ConvTranspose": 2, "Gemm": 2}


@dataclass(frozen=True)
class ActivationQuant:
    """A QuantizeLinear → DequantizeLinear pair's learned scale (shared by every pair that
    uses the same scale initializer)."""

    scale: str  # the scale initializer
    zero_point: float
    qmin: int
    qmax: int


@dataclass(frozen=True)
class WeightSlot:
    """A weight DequantizeLinear: its integers, scale and zero-point initializers, the axis,
    the grid's qmax and, for the paired grid, the layout."""

    codes: str
    scale: str
    zero: str | None
    axis: int | None
    qmax: int
    pairs: str | None
    grid: str


@dataclass(frozen=True)
class BiasSlot:
    """An int32 bias DequantizeLinear and the scales it is the product of."""

    codes: str
    scale: str
    zero: str | None
    input_scale: str  # the activation scale initializer of the layer's input
    weight: str  # the weight's integer initializer (its WeightSlot)


def _key(name: str) -> str:
    """A parameter name torch accepts for an initializer name."""
    return re.sub(r"[^0-9A-Za-z_]", "_", name) or "_"


class TorchGraph(torch.nn.Module):
    """See the module docstring."""

    def __init__(self, model: onnx.ModelProto, *, float_model: onnx.ModelProto | None = None,
                 settings: QuantizeSettings | None = None) -> None:
        super().__init__()
        self.model = model
        graph = model.graph
        initializers = {init.name for init in graph.initializer}
        self.input_names = [v.name for v in graph.input if v.name not in initializers]
        self.output_names = [v.name for v in graph.output]
        self.taps: list[str] = []  # inner tensors also returned, after the outputs (tap)
        self.constants = Constants(constant_arrays(graph))
        # float initializers (weights of ops left float, shapes): fixed inputs of the steps
        self._fixed = {name: torch.from_numpy(np.array(value))
                       for name, value in self.constants.values.items()
                       if value.dtype.kind in "fiub"}
        self.activations: dict[str, ActivationQuant] = {}
        self.weights: dict[str, WeightSlot] = {}
        self.biases: dict[str, BiasSlot] = {}
        self.log_scales = torch.nn.ParameterDict()
        self.latent = torch.nn.ParameterDict()
        self._keys: dict[str, str] = {}
        self._settings = settings
        self._float_weights = _float_weights(float_model) if float_model is not None else {}
        self._steps: list[tuple[list[str], list[str], object]] = []
        consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
        for node in graph.node:
            for index, name in enumerate(node.input):
                consumers.setdefault(name, []).append((node, index))
        self._consumers = consumers
        producers = {out: node for node in graph.node for out in node.output}
        for node in graph.node:
            self._add(node, producers)
        self._last_use = _last_uses(self._steps, self.output_names)

    # -- building ----------------------------------------------------------------------

    def _param_key(self, name: str) -> str:
        key = self._keys.get(name)
        if key is None:
            key = _key(name)
            while key in self._keys.values():
                key += "_"
            self._keys[name] = key
        return key

    def _add(self, node: onnx.NodeProto, producers: Mapping[str, onnx.NodeProto]) -> None:
        if node.op_type == "QuantizeLinear":
            self._add_quantize(node)
        elif node.op_type == "DequantizeLinear" and node.input[0] in self.constants.values:
            self._add_constant_dequantize(node, producers)
        elif node.op_type == "DequantizeLinear" and self._moves_constant(node, producers):
            self._add_moved_dequantize(node, producers)
        elif node.op_type == "DequantizeLinear":
            source = producers.get(node.input[0])
            if source is None or source.op_type != "QuantizeLinear":
                raise ModelError(f"DequantizeLinear '{node.name}' reads neither a constant nor "
                                 "a QuantizeLinear; lowbit.qat reads QDQ models")
            if _params_of(node, self.constants) != _params_of(source, self.constants):
                raise ModelError(f"DequantizeLinear '{node.name}' uses other parameters than "
                                 f"its QuantizeLinear '{source.name}'")
            self._steps.append(([node.input[0]], [node.output[0]], lambda xs: [xs[0]]))
        elif node.op_type == "Constant":
            self._steps.append(([], [node.output[0]], kernel_for(node, self.constants)))
        else:
            inputs = list(node.input)
            self._steps.append((inputs, list(node.output), kernel_for(node, self.constants)))

    def _moves_constant(self, node: onnx.NodeProto,
                        producers: Mapping[str, onnx.NodeProto]) -> bool:
        """Whether a DequantizeLinear reads integers a data-movement op took from a constant
        (deploy's quantized embedding table: Gather(codes, ids) → DequantizeLinear)."""
        source = producers.get(node.input[0])
        return source is not None and source.op_type in _MOVES and \
            source.input[0] in self.constants.values

    def _add_moved_dequantize(self, node: onnx.NodeProto,
                              producers: Mapping[str, onnx.NodeProto]) -> None:
        """Rows of a quantized constant, dequantized with the model's own scale and zero
        point (kept as they are: not learned): per tensor, or per column of a table
        gathered along its first axis (the embedding table's per-hidden-unit scales)."""
        scale = self.constants.get(node.input[1])
        zero = self.constants.get(node.input[2]) if len(node.input) > 2 else None
        source = producers[node.input[0]]
        table = self.constants.values[source.input[0]]
        axis = attrs(node).get("axis", 1) % max(table.ndim, 1)
        per_column = source.op_type == "Gather" and attrs(source).get("axis", 0) == 0 \
            and axis == table.ndim - 1 > 0
        if scale is None or scale.size != 1 and not per_column:
            raise ModelError(f"DequantizeLinear '{node.name}': lowbit.qat dequantizes moved "
                             "integers per tensor, or per column of a gathered table, only")
        step = torch.from_numpy(scale.astype(np.float32).reshape(-1))
        point = torch.from_numpy((zero if zero is not None else np.zeros(1)).astype(
            np.float32).reshape(-1))
        self._steps.append(([node.input[0]], [node.output[0]],
                            lambda xs: [(xs[0].float() - point) * step]))

    def _add_quantize(self, node: onnx.NodeProto) -> None:
        scale_name = node.input[1]
        scale = self.constants.get(scale_name)
        zero = self.constants.get(node.input[2]) if len(node.input) > 2 else None
        if scale is None or scale.size != 1:
            raise ModelError(f"QuantizeLinear '{node.name}': lowbit.qat learns constant "
                             "per-tensor activation scales only")
        dtype = str(zero.dtype) if zero is not None else "uint8"
        if dtype not in QMIN_QMAX:
            raise ModelError(f"QuantizeLinear '{node.name}': {dtype} activations are not "
                             "supported by lowbit.qat (uint8 or int8)")
        qmin, qmax = QMIN_QMAX[dtype]
        point = float(zero.reshape(-1)[0]) if zero is not None else 0.0
        quant = ActivationQuant(scale_name, point, qmin, qmax)
        known = self.activations.setdefault(scale_name, quant)
        if known != quant:
            raise ModelError(f"QuantizeLinear '{node.name}' shares the scale '{scale_name}' "
                             "with another zero point or type")
        key = self._param_key(scale_name)
        if key not in self.log_scales:
            value = torch.tensor(float(scale.reshape(-1)[0]), dtype=torch.float32).log()
            self.log_scales[key] = torch.nn.Parameter(value)
        log_scale = self.log_scales[key]
        self._steps.append(([node.input[0]], [node.output[0]],
                            lambda xs: [fake_quant(xs[0], log_scale, point, qmin, qmax)]))

    def _add_constant_dequantize(self, node: onnx.NodeProto,
                                 producers: Mapping[str, onnx.NodeProto]) -> None:
        users = self._consumers.get(node.output[0], [])
        as_weight = [(u, i) for u, i in users if WEIGHTED.get(u.op_type) == i]
        as_bias = [(u, i) for u, i in users if BIASED.get(u.op_type) == i]
        if as_weight and len(as_weight) == len(users):
            self._add_weight(node, as_weight[0][0])
        elif as_bias and len(as_bias) == len(users):
            self._add_bias(node, as_bias[0][0], producers)
        else:  # a quantized constant operand: kept as it is
            value = torch.from_numpy(_dequantized(node, self.constants))
            self._steps.append(([], [node.output[0]], lambda xs: [value]))

    def _grid(self, user: onnx.NodeProto, shape: tuple[int, ...], axis: int | None,
              codes: np.ndarray) -> tuple[str, str | None]:
        group = int(attrs(user).get("group", 1)) if user.op_type == "Conv" else 1
        kind, layout = weight_kind(user.op_type, shape, axis, group)
        if self._settings is not None:
            return self._settings.weight_grid(kind), layout
        widest = int(np.abs(codes.astype(np.int64)).max(initial=0))
        return ("int4" if widest <= 7 else "reduced" if widest <= 63 else "full"), layout

    def _add_weight(self, node: onnx.NodeProto, user: onnx.NodeProto) -> None:
        codes = self.constants.get(node.input[0])
        scale = self.constants.get(node.input[1])
        zero = self.constants.get(node.input[2]) if len(node.input) > 2 else None
        assert codes is not None
        if scale is None:
            raise ModelError(f"DequantizeLinear '{node.name}': a weight scale computed at run "
                             "time cannot be learned")
        if zero is not None and np.any(zero.astype(np.int64) != 0):
            raise ModelError(f"DequantizeLinear '{node.name}': lowbit.qat learns symmetric "
                             "weights (zero point 0) only")
        axis = int(attrs(node).get("axis", 1)) % codes.ndim if scale.size > 1 else None
        grid, layout = self._grid(user, tuple(codes.shape), axis, codes)
        qmax = GRID_QMAX["reduced" if grid == "paired" and layout is None else grid]
        pairs = layout if grid == "paired" else None
        slot = WeightSlot(node.input[0], node.input[1],
                          node.input[2] if len(node.input) > 2 else None, axis, qmax, pairs, grid)
        self.weights[node.input[0]] = slot
        dequantized = _dequantized(node, self.constants)
        latent = self._float_weights.get((user.name, user.op_type))
        if latent is None or latent.shape != dequantized.shape or not _rounds_to(
                latent, codes, scale, axis, qmax):
            latent = dequantized
        else:  # AdaRound's (or the pairs') integers, not nearest: the student starts at them
            latent = _inside_cells(latent, codes, scale, axis, qmax)
        key = self._param_key(node.input[0])
        self.latent[key] = torch.nn.Parameter(torch.from_numpy(latent.astype(np.float32)))
        self.log_scales[self._param_key(node.input[1])] = torch.nn.Parameter(
            torch.from_numpy(np.log(scale.astype(np.float32).reshape(-1))))
        weight, log_scale = self.latent[key], self.log_scales[self._param_key(node.input[1])]
        self._steps.append(([], [node.output[0]], lambda xs: [
            fake_quant_weight(weight, log_scale, axis, qmax, pairs)]))

    def _add_bias(self, node: onnx.NodeProto, user: onnx.NodeProto,
                  producers: Mapping[str, onnx.NodeProto]) -> None:
        data = producers.get(user.input[0])
        weight = producers.get(user.input[1])
        source = producers.get(data.input[0]) if data is not None and data.op_type == \
            "DequantizeLinear" else None
        if source is None or source.op_type != "QuantizeLinear" or weight is None or \
                weight.op_type != "DequantizeLinear":
            value = torch.from_numpy(_dequantized(node, self.constants))
            self._steps.append(([], [node.output[0]], lambda xs: [value]))
            return
        self.biases[node.input[0]] = BiasSlot(node.input[0], node.input[1],
                                              node.input[2] if len(node.input) > 2 else None,
                                              source.input[1], weight.input[0])
        key = self._param_key(node.input[0])
        self.latent[key] = torch.nn.Parameter(torch.from_numpy(_dequantized(node,
                                                                            self.constants)))
        bias = self.latent[key]
        self._steps.append(([], [node.output[0]], lambda xs: [bias]))

    def step_sizes(self) -> list[tuple[torch.nn.Parameter, float]]:
        """Each latent weight and bias with the size of one of its quantization steps: a
        weight's mean scale; a bias's its layer's output step for a full-range input
        (s_in · mean s_w · 127). Adam moves a parameter by about its rate per update, so
        rates in these units suit every layer alike (weights' steps span 100x in a CNN)."""
        sizes: list[tuple[torch.nn.Parameter, float]] = []
        with torch.no_grad():
            weight_step = {slot.codes: float(self._weight_scale(slot).mean())
                           for slot in self.weights.values()}
            for slot in self.weights.values():
                sizes.append((self.latent[self._param_key(slot.codes)],
                              weight_step[slot.codes]))
            for b in self.biases.values():
                s_in = float(self.log_scales[self._param_key(b.input_scale)].exp())
                s_w = weight_step.get(b.weight, 0.0)
                sizes.append((self.latent[self._param_key(b.codes)], s_in * s_w * 127))
        return sizes

    # -- running -----------------------------------------------------------------------

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        values: dict[str, torch.Tensor | None] = dict(inputs)
        for index, (names, outputs, kernel) in enumerate(self._steps):
            args = [(values[name] if name in values else self._fixed.get(name)) if name
                    else None for name in names]
            for name, value in zip(outputs, kernel(args), strict=False):  # type: ignore[operator]
                values[name] = value
            for name in self._last_use.get(index, ()):
                values.pop(name, None)  # no longer read: its memory can go
        return [values[name] for name in [*self.output_names, *self.taps]]  # type: ignore[misc]

    def tap(self, names: Sequence[str]) -> None:
        """Also return the tensors ``names`` (after the outputs, in this order) from now on."""
        made = {name for _, outputs, _ in self._steps for name in outputs}
        missing = [name for name in names if name not in made]
        if missing:
            raise ModelError(f"no step of the graph makes {', '.join(missing[:3])}"
                             f"{' …' if len(missing) > 3 else ''}: nothing to tap")
        self.taps = list(names)
        self._last_use = _last_uses(self._steps, [*self.output_names, *self.taps])

    def producers(self) -> dict[str, str]:
        """Tensor name → the op type that makes it (Q/DQ pairs and constants left out)."""
        return {name: node.op_type for node in self.model.graph.node
                for name in node.output if name and node.op_type not in _NOT_COMPUTED}

    # -- export ------------------------------------------------------------------------

    def export(self) -> onnx.ModelProto:
        """The QDQ model with the learned scales, integers and biases."""
        out = onnx.ModelProto()
        out.CopyFrom(self.model)
        new: dict[str, np.ndarray] = {}
        with torch.no_grad():
            for name in self.activations:
                value = self.log_scales[self._param_key(name)].exp().numpy()
                new[name] = value.astype(np.float32).reshape(
                    self.constants.values[name].shape)
            scales = {w.codes: self._weight_scale(w) for w in self.weights.values()}
            for b in self.biases.values():  # raise a weight scale where a bias overflows
                if b.weight in scales:
                    bias = self.latent[self._param_key(b.codes)].numpy()
                    floor = bias_safe_weight_scale(bias, float(new[b.input_scale]))
                    weight_slot = self.weights[b.weight]
                    floor = floor if weight_slot.axis is not None else floor.max(initial=0.0)
                    scales[b.weight] = np.maximum(scales[b.weight], floor).astype(np.float32)
            for w in self.weights.values():
                codes, scale = self._weight_codes(w, scales[w.codes])
                new[w.codes] = codes
                new[w.scale] = scale.reshape(self.constants.values[w.scale].shape)
            for slot in self.biases.values():
                bias = self.latent[self._param_key(slot.codes)].numpy().astype(np.float32)
                s_in = float(new[slot.input_scale])
                s_w = np.broadcast_to(scales[slot.weight], bias.shape)
                new[slot.codes] = quantize_bias(bias, s_in, s_w)
                new[slot.scale] = bias_scale(s_in, s_w).reshape(
                    self.constants.values[slot.scale].shape)
        for init in out.graph.initializer:
            if init.name in new:
                init.CopyFrom(_tensor(new[init.name], init))
        return out

    def _weight_scale(self, slot: WeightSlot) -> np.ndarray:
        return self.log_scales[self._param_key(slot.scale)].exp().numpy().astype(np.float32)

    def _weight_codes(self, slot: WeightSlot, scale: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
        weight = self.latent[self._param_key(slot.codes)].numpy().astype(np.float32)
        view = channel_view(torch.from_numpy(scale), weight.ndim, slot.axis).numpy()
        codes = np.clip(np.rint(weight / view), -slot.qmax, slot.qmax)
        if slot.pairs is not None and slot.axis is not None:
            codes = limit_pairs(WeightQuant(codes.astype(np.int8), scale.reshape(-1), slot.axis),
                                weight, slot.pairs).q
        return codes, scale


def _tensor(values: np.ndarray, like: onnx.TensorProto) -> onnx.TensorProto:
    """``values`` stored as ``like`` is (its type: int8, int4, int32, float)."""
    if like.data_type == onnx.TensorProto.INT4:
        return numpy_helper.from_array(np.asarray(values).astype(ml_dtypes.int4), like.name)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(like.data_type)
    return numpy_helper.from_array(np.asarray(values).astype(dtype), like.name)



def _params_of(node: onnx.NodeProto, constants: Constants) -> tuple[bytes, ...]:
    return tuple(np.asarray(constants.get(name)).tobytes() if constants.get(name) is not None
                 else name.encode() for name in node.input[1:3])


def _dequantized(node: onnx.NodeProto, constants: Constants) -> np.ndarray:
    codes = constants.get(node.input[0])
    scale = constants.get(node.input[1])
    zero = constants.get(node.input[2]) if len(node.input) > 2 else None
    assert codes is not None and scale is not None
    q = codes.astype(np.float64)
    s = scale.astype(np.float64)
    z = zero.astype(np.float64) if zero is not None else np.zeros_like(s)
    if s.size > 1:
        axis = int(attrs(node).get("axis", 1)) % q.ndim
        s = channel_view(torch.from_numpy(s), q.ndim, axis).numpy()
        z = channel_view(torch.from_numpy(z), q.ndim, axis).numpy()
    return ((q - z) * s).astype(np.float32)


def _rounds_to(weight: np.ndarray, codes: np.ndarray, scale: np.ndarray, axis: int | None,
               qmax: int) -> bool:
    """Whether a float weight is the one the codes were rounded from (nearest, or up/down as
    AdaRound chooses): every code within one step of w / s, clipped values excepted."""
    view = channel_view(torch.from_numpy(scale.astype(np.float32)), weight.ndim, axis).numpy()
    ratio = weight / view
    inside = np.abs(ratio) < qmax
    return bool(np.all(np.abs(ratio - codes.astype(np.float32))[inside] <= 1.0 + 1e-3))


def _inside_cells(weight: np.ndarray, codes: np.ndarray, scale: np.ndarray, axis: int | None,
                  qmax: int) -> np.ndarray:
    """Latent weights that round to ``codes``: the float weight where it already rounds
    there (a code at ±qmax also keeps whatever lies beyond), the middle of the code's cell,
    q · s, where AdaRound rounded the other way. Not the cell's edge: a weight left a hair
    from the boundary flips back to nearest at the first update, and EfficientNet-Lite0's
    W4A8 student lost AdaRound's gain that way within four updates (KL 0.1 → 1.1)."""
    view = channel_view(torch.from_numpy(scale.astype(np.float32)), weight.ndim, axis).numpy()
    q = codes.astype(np.float32)
    ratio = weight / view
    kept = (np.abs(ratio - q) < 0.499) | ((q >= qmax) & (ratio >= q)) | \
        ((q <= -qmax) & (ratio <= q))
    return np.where(kept, weight, q * view).astype(np.float32)


def _float_weights(model: onnx.ModelProto) -> dict[tuple[str, str], np.ndarray]:
    """Each compute node's constant float weight, by (node name, op type)."""
    from lowbit.passes import canonicalize

    canonical, _ = canonicalize(model)
    values = {init.name: init for init in canonical.graph.initializer}
    found = {}
    for node in canonical.graph.node:
        if node.op_type in WEIGHTED and len(node.input) > 1 and node.input[1] in values:
            found[(node.name, node.op_type)] = numpy_helper.to_array(values[node.input[1]])
    return found


def _last_uses(steps: Sequence[tuple[list[str], list[str], object]], keep: Sequence[str]
               ) -> dict[int, list[str]]:
    """Step index → the values no later step reads (graph outputs kept)."""
    last: dict[str, int] = {}
    for index, (names, _, _) in enumerate(steps):
        for name in names:
            if name:
                last[name] = index
    freed: dict[int, list[str]] = {}
    for name, index in last.items():
        if name not in keep:
            freed.setdefault(index, []).append(name)
    return freed


def shared_features(student: TorchGraph, teacher: TorchGraph | onnx.ModelProto) -> list[str]:
    """The inner tensors ``student`` and ``teacher`` (a TorchGraph or the float ONNX model)
    both compute the same way: the same name made by the same op type in both, not a graph
    output, in the student's order.
    A Conv whose activation deploy folded into its quantization range took the
    activation's name (its float output is not yet clipped), so it is left out, as are
    integer tensors (shapes, positions); the tensors kept are the block outputs and
    linear layers' outputs."""
    model = teacher.model if isinstance(teacher, TorchGraph) else teacher
    theirs = teacher.producers() if isinstance(teacher, TorchGraph) else {
        name: node.op_type for node in teacher.graph.node for name in node.output if name}
    outputs = set(student.output_names)
    integers = _integer_tensors(model)
    return [name for name, op in student.producers().items()
            if theirs.get(name) == op and name not in outputs and name not in integers]


def _integer_tensors(model: onnx.ModelProto) -> set[str]:
    """The tensors ONNX's type inference says are not floating point (a transformer's
    shapes, positions and masks): matching them would only dilute the features' mean."""
    floating = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
                onnx.TensorProto.DOUBLE}
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except (onnx.shape_inference.InferenceError, ValueError):
        return set()  # nothing known: every shared tensor is matched
    return {info.name for info in inferred.graph.value_info
            if info.type.tensor_type.elem_type not in (0, *floating)}
