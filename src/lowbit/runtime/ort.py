"""Run ONNX models on ONNX Runtime's CPU provider.

    runner = OrtRunner("model.onnx", threads=2)
    outputs = runner.run({"input": x})          # dict name -> array
    names = runner.output_names

Sessions are created from a path or from serialized bytes, so an in-memory
model (calibration with every tensor exposed) never touches the disk.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from lowbit.errors import ModelError
from lowbit.graph import declared_precision
from lowbit.ops.custom import explain_ort_error
from lowbit.ops.python import extensions_library
from lowbit.runtime.backends import graph_precision
from lowbit.runtime.isa import PAIRED_KINDS, forced_isa
from lowbit.spec import named_dim_conflict

log = logging.getLogger(__name__)

ModelSource = str | Path | bytes | onnx.ModelProto

# ORT's graph optimization levels by the names lowbit's options use.
ORT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def create_session(
    model: ModelSource,
    *,
    threads: int | None = None,
    optimized_model_path: str | Path | None = None,
    enable_profiling: bool = False,
    graph_optimization: bool = True,
    optimization_level: str | None = None,
    memory_pattern: bool = True,
) -> ort.InferenceSession:
    """Create a CPU inference session; a model ORT cannot load raises ModelError.

    ``optimization_level`` ("disable", "basic", "extended", "all"; see ORT_LEVELS)
    sets ORT's graph optimization level; None keeps ORT's default (all), or
    disable when ``graph_optimization`` is False. ``memory_pattern`` False stops ORT
    from planning one block per input shape on top of the buffers its first run left
    in the arena (which doubles the peak of a batch): for runs over a data set, whose
    memory lowbit.runtime.memory budgets.
    """
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Workers stop spinning when a run returns (ORT's default spins on): a session left
    # spinning holds cores while the next one runs. On this project's 2-core machine, an
    # EfficientNet-Lite0 edge map's float run took 12 ms instead of 6 ms for the first
    # 50 ms after an INT8 session's run, and every timed comparison interleaves sessions.
    # A session's own runs are not slower for it (6.1 ms alone, with or without).
    options.add_session_config_entry("session.force_spinning_stop", "1")
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    if enable_profiling:
        options.enable_profiling = True
    if not memory_pattern:
        options.enable_mem_pattern = False
    if not graph_optimization:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if optimization_level is not None:
        options.graph_optimization_level = ORT_LEVELS[optimization_level]
    library = extensions_library()
    if library is not None:  # a Python custom op is registered: ORT calls it through this
        options.register_custom_ops_library(library)
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises several unrelated exception types
        where = "the in-memory model" if isinstance(source, bytes) else source
        custom = explain_ort_error(str(err), where)
        if custom is not None:  # a custom op nothing registered: say how to register it
            raise ModelError(custom) from err
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"ONNX Runtime cannot load {where}: {first_line}") from err


class OrtRunner:
    """A loaded model that maps input dicts to output dicts."""

    def __init__(self, model: ModelSource, *, threads: int | None = None,
                 memory_pattern: bool = True) -> None:
        self.session = create_session(model, threads=threads, memory_pattern=memory_pattern)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        # ORT's CPU provider has no per-kernel precision query: report what the graph declares.
        self.precision_used = graph_precision(model)

    def run(
        self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        names = list(output_names) if output_names is not None else self.output_names
        try:
            values = self.session.run(names, dict(feeds))
        except Exception as err:
            first_line = str(err).strip().splitlines()[0]
            shapes = {i.name: i.shape for i in self.session.get_inputs()}
            conflict = named_dim_conflict(shapes, feeds)
            hint = (f" ({conflict}: ONNX Runtime takes a named dim to have one size)"
                    if conflict else "")
            raise ModelError(f"running the model failed: {first_line}{hint}") from err
        return dict(zip(names, values, strict=True))


def check_run(session: ort.InferenceSession, feeds: Mapping[str, np.ndarray],
              where: str) -> None:
    """One run of ``session`` whose failure (a model ORT loads but cannot run on these
    feeds, or one with no outputs) is a ModelError naming ``where``; a caller that then
    times raw ``session.run`` calls knows they work."""
    if not session.get_outputs():
        raise ModelError(f"{where} has no graph outputs: there is nothing to run")
    try:
        session.run(None, dict(feeds))
    except Exception as err:  # ORT raises several unrelated exception types
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ModelError(f"running {where} failed: {first_line}") from err


def u8s8_layouts() -> frozenset[str]:
    """``probe_u8s8_layouts()``, or what LOWBIT_FORCE_ISA says (lowbit.runtime.isa):
    its ``pairs``, else with ``vnni=0`` the layouts of AVX2 / AVX-512 CPUs (every kind of
    PAIRED_KINDS), with ``vnni=1`` none (exact kernels need no pairs)."""
    forced = forced_isa()
    if forced.pairs is not None:
        return forced.pairs
    if forced.vnni is not None:
        return frozenset() if forced.vnni else PAIRED_KINDS
    return probe_u8s8_layouts()


@functools.cache
def probe_u8s8_layouts() -> frozenset[str]:
    """Which of ONNX Runtime's uint8×int8 kernels on this CPU lowbit's paired 8-bit weights
    (lowbit.quantize.int8.params.quantize_weight_paired) fit: "MatMul", "Gemm" and "Conv" where
    the kernel saturates in the int16 sum of K rows 2i and 2i+1 and nowhere else (a Conv's
    K runs over kernel rows, columns, then input channels), and "DepthwiseConv" where a
    depthwise Conv is exact with full-range weights (its kernel sums in int32).

    Each is told by tiny QDQ models of all-255 inputs and weights 127: a pair must
    saturate (255·254 > 32767), two rows that are not a pair must not. A CPU with VNNI
    saturates nowhere and gets an empty set here (``int8_saturates`` covers it)."""
    found = set()
    pair, split = _matmul_value([127, 127, 0, 0]), _matmul_value([0, 127, 127, 0])
    if _saturated(pair, 64770) and not _saturated(split, 64770):
        found.add("MatMul")
    pair, split = _gemm_value([127, 127, 0, 0]), _gemm_value([0, 127, 127, 0])
    if _saturated(pair, 64770) and not _saturated(split, 64770):
        found.add("Gemm")
    # 3 input channels, 3×3 kernel: K index 3·(3·kh + kw) + c. Rows 2 and 3 (tap 0's
    # channel 2, tap 1's channel 0) are a pair across taps; rows 1 and 2 are not.
    pair, split = _conv_value({2: 127, 3: 127}), _conv_value({1: 127, 2: 127})
    if _saturated(pair, 64770) and not _saturated(split, 64770):
        found.add("Conv")
    if not _saturated(_depthwise_value(), 255 * 127 * 9):
        found.add("DepthwiseConv")
    log.info("ONNX Runtime U8S8 layouts: int16 pairs of K rows (2i, 2i+1) in %s; depthwise "
             "Conv %s", ", ".join(sorted(found - {"DepthwiseConv"})) or "none",
             "exact" if "DepthwiseConv" in found else "saturates")
    return frozenset(found)


def _saturated(value: float, exact: float) -> bool:
    return abs(value - exact) > 0.1 * exact


def _qdq_probe(op: helper.NodeProto, x_shape: list[int], weight: np.ndarray,
               out_scale: float | None, weight_axis: int | None = None) -> float:
    """The first output value of ``op`` on an all-255 uint8 input and int8 ``weight``
    (scales 1), as a QDQ graph ONNX Runtime fuses into its integer kernel; with
    ``out_scale`` the output goes through QuantizeLinear/DequantizeLinear too."""
    w_scale = np.ones(weight.shape[0], np.float32) if weight_axis == 0 else \
        np.array(1.0, np.float32)
    w_zero = np.zeros(w_scale.shape, np.int8)
    dequantize = helper.make_node("DequantizeLinear", ["w", "w_scale", "w_zero"], ["wd"])
    if weight_axis is not None:
        dequantize.attribute.append(helper.make_attribute("axis", weight_axis))
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "one", "zero_u8"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "one", "zero_u8"], ["xd"]),
        dequantize,
        op,
    ]
    inits = [numpy_helper.from_array(np.array(1.0, np.float32), "one"),
             numpy_helper.from_array(np.array(0, np.uint8), "zero_u8"),
             numpy_helper.from_array(weight.astype(np.int8), "w"),
             numpy_helper.from_array(w_scale, "w_scale"),
             numpy_helper.from_array(w_zero, "w_zero")]
    out = "y"
    if out_scale is not None:
        inits.append(numpy_helper.from_array(np.array(out_scale, np.float32), "out_scale"))
        nodes += [helper.make_node("QuantizeLinear", ["y", "out_scale", "zero_u8"], ["yq"]),
                  helper.make_node("DequantizeLinear", ["yq", "out_scale", "zero_u8"], ["out"])]
        out = "out"
    graph = helper.make_graph(nodes, "u8s8_probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    session = create_session(model, threads=1)
    feeds = {"x": np.full(x_shape, 255.0, np.float32)}
    return float(np.asarray(session.run(None, feeds)[0]).ravel()[0])


def _matmul_value(rows: list[int]) -> float:
    weight = np.array(rows, np.int8).reshape(-1, 1)
    return _qdq_probe(helper.make_node("MatMul", ["xd", "wd"], ["y"]), [1, 1, len(rows)],
                      weight, None)


def _gemm_value(rows: list[int]) -> float:
    weight = np.array(rows, np.int8).reshape(1, -1)  # [N, K], transB
    return _qdq_probe(helper.make_node("Gemm", ["xd", "wd"], ["y"], transB=1),
                      [1, len(rows)], weight, None)


def _conv_value(rows: dict[int, int]) -> float:
    flat = np.zeros(27, np.int8)  # K order (kh, kw, c) for a [1, 3, 3, 3] weight
    for index, value in rows.items():
        flat[index] = value
    weight = flat.reshape(3, 3, 3).transpose(2, 0, 1)[None]
    # Output scale 512: 64770 reads back as 65024, a saturated 32767 as 32768.
    return _qdq_probe(helper.make_node("Conv", ["xd", "wd"], ["y"]), [1, 3, 3, 3], weight,
                      512.0, weight_axis=0)


def _depthwise_value() -> float:
    weight = np.full((2, 1, 3, 3), 127, np.int8)
    # Output scale 2048: 291465 reads back as 290816; pair sums saturated give ~163453.
    return _qdq_probe(helper.make_node("Conv", ["xd", "wd"], ["y"], group=2), [1, 2, 3, 3],
                      weight, 2048.0, weight_axis=0)


def int8_saturates() -> bool:
    """``probe_int8_saturates()``, or ``not vnni`` where LOWBIT_FORCE_ISA forces it
    (lowbit.runtime.isa): what chooses the weight grids."""
    forced = forced_isa().vnni
    return probe_int8_saturates() if forced is None else not forced


@functools.cache
def probe_int8_saturates() -> bool:
    """Whether ONNX Runtime's uint8×int8 kernels on this CPU saturate with full-range
    int8 weights (the real kernels, whatever LOWBIT_FORCE_ISA says).

    x86 CPUs without VNNI (AVX2, plain AVX-512) multiply with VPMADDUBSW, which adds
    each pair of uint8·int8 products into a saturating int16: 255·127 + 255·127 =
    64770 does not fit. A one-pixel QDQ Conv with two such input channels tells:
    the exact answer is 64770, a saturating kernel gives 32767."""
    value = _qdq_probe(helper.make_node("Conv", ["xd", "wd"], ["y"]), [1, 2, 1, 1],
                       np.full((1, 2, 1, 1), 127, np.int8), 512.0)
    # 64770/512 rounds to 127 (65024); 32767/512 to 64 (32768).
    saturates = value < 64770 - 512
    log.info("ONNX Runtime U8S8 probe: %.0f (exact 64770): %s", value,
             "saturates: weights use 7 bits or int16-safe pairs" if saturates else "exact")
    return saturates


def cannot_run(model: onnx.ModelProto, *, run: bool = True) -> str | None:
    """None when ORT's CPU provider loads (and, with ``run``, runs) ``model``; else one line.

    The run feeds zeros, with symbolic dimensions set to 1.
    """
    options = ort.SessionOptions()
    options.log_severity_level = 3  # ORT warns about every F16 node it wraps in Casts
    try:
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        if run:
            session.run(None, {i.name: _zeros(i) for i in session.get_inputs()})
    except Exception as err:  # noqa: BLE001 (ORT raises unrelated types; any means "no")
        precision = declared_precision(model).name
        return _ort_reason(str(err), precision if precision in ("F16", "BF16")
                           else "this model's")
    return None


def _ort_reason(message: str, precision: str) -> str:
    found = re.search(r"Could not find an implementation for (\w+)\((\d+)\) node with name "
                      r"'([^']*)'", message)
    if found:
        op, version, node = found.groups()
        return (f"ONNX Runtime's CPU provider has no {precision} kernel for {op} (opset {version}, "
                f"node '{node}'); run it with --backend openvino")
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return "ONNX Runtime cannot run the model: " + (lines[0] if lines else "unknown error")


_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
               "tensor(bfloat16)": ml_dtypes.bfloat16, "tensor(double)": np.float64,
               "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_,
               "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


def _zeros(node_arg: object) -> np.ndarray:
    shape = [d if isinstance(d, int) and d >= 0 else 1 for d in node_arg.shape]  # type: ignore[attr-defined]
    dtype = _ORT_DTYPES.get(node_arg.type, np.float32)  # type: ignore[attr-defined]
    return np.zeros(shape, dtype=dtype)
