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
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from lowbit.errors import ModelError
from lowbit.runtime.backends import graph_precision

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
) -> ort.InferenceSession:
    """Create a CPU inference session; a model ORT cannot load raises ModelError.

    ``optimization_level`` ("disable", "basic", "extended", "all"; see ORT_LEVELS)
    sets ORT's graph optimization level; None keeps ORT's default (all), or
    disable when ``graph_optimization`` is False.
    """
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    if enable_profiling:
        options.enable_profiling = True
    if not graph_optimization:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if optimization_level is not None:
        options.graph_optimization_level = ORT_LEVELS[optimization_level]
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises several unrelated exception types
        where = "the in-memory model" if isinstance(source, bytes) else source
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"ONNX Runtime cannot load {where}: {first_line}") from err


class OrtRunner:
    """A loaded model that maps input dicts to output dicts."""

    def __init__(self, model: ModelSource, *, threads: int | None = None) -> None:
        self.session = create_session(model, threads=threads)
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
            raise ModelError(f"running the model failed: {first_line}") from err
        return dict(zip(names, values, strict=True))


@functools.cache
def matmul_pairs_saturate() -> bool:
    """Whether ONNX Runtime's uint8×int8 MatMul on this CPU saturates exactly in the int16
    sums of K rows (2i, 2i+1), and only there: the layout lowbit's paired 8-bit weights
    (lowbit.quantize.params.quantize_weight_paired) are made for.

    Three QDQ MatMuls of one all-255 row with K = 4 tell: weights 127 in rows 0 and 1
    must saturate (a pair), 127 in rows 1 and 2 must not (two pairs), and 127 + 1 in
    rows 0 and 1 (the pair limit, 255·128 = 32640) must be exact. Any other answer (a
    VNNI CPU, a different kernel packing) returns False."""
    cases = {(127, 127, 0, 0): False, (0, 127, 127, 0): True, (127, 1, 0, 0): True}
    for rows, must_be_exact in cases.items():
        exact = 255.0 * sum(rows)
        value = _u8s8_matmul(np.array(rows, np.int8).reshape(4, 1))
        if (abs(value - exact) < 0.5) != must_be_exact:
            log.info("ONNX Runtime U8S8 MatMul probe: rows %s gave %.0f (exact %.0f): not the "
                     "paired layout", rows, value, exact)
            return False
    log.info("ONNX Runtime U8S8 MatMul probe: int16 pair sums over K rows (2i, 2i+1)")
    return True


def _u8s8_matmul(weight: np.ndarray) -> float:
    """One all-255 uint8 row times an int8 ``[K, 1]`` weight (scales 1) through a QDQ MatMul
    that ONNX Runtime runs as an integer kernel."""
    k = weight.shape[0]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "one", "zero_u8"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "one", "zero_u8"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "one", "zero_s8"], ["wd"]),
        helper.make_node("MatMul", ["xd", "wd"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "u8s8_matmul_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 1])],
        [numpy_helper.from_array(np.array(1.0, np.float32), "one"),
         numpy_helper.from_array(np.array(0, np.uint8), "zero_u8"),
         numpy_helper.from_array(weight.astype(np.int8), "w"),
         numpy_helper.from_array(np.array(0, np.int8), "zero_s8")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    session = create_session(model, threads=1)
    return float(session.run(None, {"x": np.full((1, 1, k), 255.0, np.float32)})[0].item())


@functools.cache
def int8_saturates() -> bool:
    """Whether ONNX Runtime's uint8×int8 kernels on this CPU saturate with full-range
    int8 weights.

    x86 CPUs without VNNI (AVX2, plain AVX-512) multiply with VPMADDUBSW, which adds
    each pair of uint8·int8 products into a saturating int16: 255·127 + 255·127 =
    64770 does not fit. A one-pixel QDQ Conv with two such input channels tells:
    the exact answer is 64770, a saturating kernel gives 32767."""
    x = numpy_helper.from_array(np.array(1.0, np.float32), "one")
    zero_u8 = numpy_helper.from_array(np.array(0, np.uint8), "zero_u8")
    weight = numpy_helper.from_array(np.full((1, 2, 1, 1), 127, np.int8), "w")
    zero_s8 = numpy_helper.from_array(np.array(0, np.int8), "zero_s8")
    out_scale = numpy_helper.from_array(np.array(512.0, np.float32), "out_scale")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "one", "zero_u8"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "one", "zero_u8"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "one", "zero_s8"], ["wd"]),
        helper.make_node("Conv", ["xd", "wd"], ["y"]),
        helper.make_node("QuantizeLinear", ["y", "out_scale", "zero_u8"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "out_scale", "zero_u8"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes, "int8_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 1, 1])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, 1, 1])],
        [x, zero_u8, weight, zero_s8, out_scale])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    session = create_session(model, threads=1)
    value = float(session.run(None, {"x": np.full((1, 2, 1, 1), 255.0, np.float32)})[0].item())
    # 64770/512 rounds to 127 (65024); 32767/512 to 64 (32768).
    saturates = value < 64770 - 512
    log.info("ONNX Runtime U8S8 probe: %.0f (exact 64770): %s", value,
             "saturates, weights use 7 bits" if saturates else "exact")
    return saturates
