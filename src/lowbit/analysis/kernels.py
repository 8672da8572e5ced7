"""Count which compute ops ONNX Runtime runs as integer kernels and which stay float.

    counts = count_kernels("model.int8.onnx", threads=2)
    counts.integer          # {"QLinearConv": 18, "QGemm": 1, "QLinearAdd": 8, ...}
    counts.float            # {"Conv": 1, ...}
    counts.summary()        # "19/20 conv/matmul/gemm run as integer kernels"

A QDQ model says what *should* be integer; only the graph ORT builds after its
optimisations says what *is*. ORT saves that graph (SessionOptions
``optimized_model_filepath``) at the level a normal session uses, and we count
its nodes: a DequantizeLinear -> Conv pair that ORT failed to fuse shows up as a
float Conv, the usual reason a "quantized" model is not faster.
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import onnxruntime as ort

from lowbit.errors import ModelError
from lowbit.runtime.ort import create_session

log = logging.getLogger(__name__)

# Integer kernels doing the heavy work (conv / matmul / gemm), any domain.
INTEGER_COMPUTE_OPS = frozenset({
    "QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "QGemm",
    "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulNBits", "QAttention",
})
# Integer kernels for the rest (element-wise, pooling, concat ...); any other
# "QLinear*" op not listed here is counted with them.
INTEGER_OTHER_OPS = frozenset({
    "QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool", "QLinearAveragePool",
    "QLinearConcat", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax",
    "QLinearReduceMean", "QLinearWhere", "NhwcMaxPool",
})
# Float kernels doing the heavy work; "Conv" includes ORT's NCHWc-blocked Conv.
FLOAT_COMPUTE_OPS = frozenset({
    "Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul", "ConvTranspose",
})


@dataclass(frozen=True)
class KernelCount:
    """Node counts by op type in ORT's optimised graph: integer kernels and float compute."""

    integer: dict[str, int] = field(default_factory=dict)
    float: dict[str, int] = field(default_factory=dict)

    @property
    def integer_compute(self) -> int:
        """Conv / matmul / gemm nodes that run as integer kernels."""
        return sum(n for op, n in self.integer.items() if op in INTEGER_COMPUTE_OPS)

    @property
    def integer_other(self) -> int:
        """Other integer kernels (QLinearAdd, QLinearGlobalAveragePool, ...)."""
        return sum(n for op, n in self.integer.items() if op not in INTEGER_COMPUTE_OPS)

    @property
    def float_compute(self) -> int:
        """Conv / matmul / gemm nodes that stayed float."""
        return sum(self.float.values())

    def summary(self) -> str:
        total = self.integer_compute + self.float_compute
        text = f"{self.integer_compute}/{total} conv/matmul/gemm run as integer kernels"
        if self.integer_other:
            text += f" (+{self.integer_other} other integer kernels)"
        return text


def count_kernels(model: str | Path, threads: int | None = None) -> KernelCount:
    """Let ORT optimise ``model`` as a normal session would, then count the kernels it chose."""
    model = Path(model)
    with tempfile.TemporaryDirectory(prefix="lowbit-kernels-") as tmp:
        optimized = Path(tmp) / f"{model.stem}.optimized.onnx"
        _save_optimized(model, optimized, threads)
        try:
            graph = onnx.load(str(optimized), load_external_data=False).graph
        except Exception as err:
            raise ModelError(f"cannot read the graph ORT optimised from {model}: {err}") from err
    return count_nodes(graph)


def count_nodes(graph: onnx.GraphProto) -> KernelCount:
    """Integer and float compute kernels among the nodes of ``graph``."""
    integer: Counter[str] = Counter()
    floating: Counter[str] = Counter()
    for node in graph.node:
        op = node.op_type
        if op in INTEGER_COMPUTE_OPS or op in INTEGER_OTHER_OPS or op.startswith("QLinear"):
            integer[op] += 1
        elif op in FLOAT_COMPUTE_OPS:
            floating[op] += 1
    return KernelCount(integer=dict(integer), float=dict(floating))


def _save_optimized(model: Path, optimized: Path, threads: int | None) -> None:
    """Have ORT write its optimised graph; fall back to the EXTENDED level if it refuses."""
    try:
        create_session(model, threads=threads, optimized_model_path=optimized)
        if optimized.exists():
            return
        reason = "it wrote no file"
    except ModelError as err:
        reason = str(err)
    log.info("ORT could not save %s optimised at its default level (%s); "
             "counting kernels at ORT_ENABLE_EXTENDED instead", model, reason)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(optimized)
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises several unrelated exception types
        raise ModelError(f"ONNX Runtime cannot optimise {model}: "
                         f"{str(err).strip().splitlines()[0]}") from err
