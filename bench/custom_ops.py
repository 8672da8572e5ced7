"""What a custom operator costs: the same math as standard ops, as an ONNX function, as Python.

    python bench/custom_ops.py                        # 1x64x56x56, 200 interleaved repeats
    python bench/custom_ops.py --markdown out.md

PowerDifference(x, y; p) = (x - y)^p on a 1x64x56x56 tensor, followed by a ReLU, in three
models that compute the same thing: written with the standard ops Sub and Pow; as a
model-local ONNX function (``lowbit.ops.function``, which ONNX Runtime inlines when it
loads the model); and as numpy code registered with ``lowbit.ops.python_op`` (run by
onnxruntime-extensions' Python bridge, the ``custom-ops`` extra). The three are timed
interleaved at batch 1 (lowbit.analysis.bench.time_interleaved) and their outputs
compared with the standard-op model's. Two more rows split the Python operator's cost: a
Python identity operator (the same bridge, no math) and the numpy code called directly,
outside ONNX Runtime.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "custom_op"))

from power_difference import power_difference, register_python_kernel

from lowbit.analysis.bench import time_interleaved
from lowbit.ops import CUSTOM_DOMAIN, PYTHON_DOMAIN, add_function, node, python_op
from lowbit.runtime.ort import create_session
from provenance import header

SHAPE = (1, 64, 56, 56)


def model(kind: str) -> onnx.ModelProto:
    """x -> PowerDifference(x, 0.1; p=2) -> Relu, the operator written as ``kind``."""
    if kind == "standard":
        body = [node("Sub", ["x", "shift"], ["d"]),
                node("Pow", ["d", "p"], ["pd"])]
    elif kind == "bridge":
        body = [node("PassThrough", ["x"], ["pd"], domain=PYTHON_DOMAIN)]
    else:
        domain = CUSTOM_DOMAIN if kind == "function" else PYTHON_DOMAIN
        body = [node("PowerDifference", ["x", "shift"], ["pd"], domain=domain, p=2.0)]
    inits = [numpy_helper.from_array(np.full((1, SHAPE[1], 1, 1), 0.1, np.float32), "shift"),
             numpy_helper.from_array(np.array(2.0, np.float32), "p")]
    graph = helper.make_graph(
        [*body, node("Relu", ["pd"], ["y"])], f"power_difference_{kind}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(SHAPE))],
        inits if kind == "standard" else [] if kind == "bridge" else inits[:1])
    opsets = [helper.make_opsetid("", 17)]
    if kind != "standard":
        opsets.append(helper.make_opsetid(CUSTOM_DOMAIN if kind == "function"
                                          else PYTHON_DOMAIN, 1))
    made = helper.make_model(graph, opset_imports=opsets, ir_version=8)
    return add_function(made, power_difference()) if kind == "function" else made


def register_bridge_identity() -> None:
    """A Python operator that returns its input: what the bridge alone costs."""
    @python_op("PassThrough")
    def pass_through(x: np.ndarray) -> np.ndarray:
        return x


def numpy_code(x: np.ndarray) -> np.ndarray:
    """The Python operator's numpy body and the ReLU, called directly."""
    return np.maximum(((x - np.float32(0.1)) ** 2.0).astype(np.float32), 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=200, help="timed runs of each model")
    parser.add_argument("--threads", type=int, default=2, help="ORT intra-op threads")
    parser.add_argument("--markdown", type=Path, help="write the section to this file")
    args = parser.parse_args()
    register_python_kernel()
    register_bridge_identity()
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    kinds = ("standard", "function", "python", "bridge")
    sessions = [create_session(model(kind).SerializeToString(), threads=args.threads)
                for kind in kinds]
    runners = [*(lambda s=s: s.run(None, {"x": x})[0] for s in sessions), lambda: numpy_code(x)]
    outputs = [run() for run in runners]
    times = time_interleaved(runners, warmup=5, repeats=args.repeats)
    medians = [float(np.median(t)) * 1000 for t in times]
    lines = [header(), "",
             (f"PowerDifference (x - y)^2 + ReLU on a {'x'.join(map(str, SHAPE))} tensor, "
              f"{args.threads} ORT threads, medians of ≥ {args.repeats} runs in interleaved blocks."), "",
             "| operator written as | median ms | vs standard ops | max abs diff vs standard |",
             "|---|---|---|---|"]
    labels = ["standard ops (Sub, Pow)", "ONNX function (lowbit.ops.function)",
              "Python code (lowbit.ops.python_op)",
              "Python identity (the bridge alone, then ReLU)",
              "numpy code alone (no ONNX Runtime)"]
    reference = outputs[0]
    for index, (label, ms, out) in enumerate(zip(labels, medians, outputs, strict=True)):
        diff = "-" if index == 3 else f"{float(np.max(np.abs(out - reference))):.2g}"
        lines.append(f"| {label} | {ms:.3f} | {ms / medians[0]:.2f}x | {diff} |")
    text = "\n".join(lines) + "\n"
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
