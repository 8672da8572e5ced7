"""A custom operator, PowerDifference(x, y; p) = (x - y)^p, registered once as an ONNX
function and carried through the whole flow: transform → calibrate → deploy → compare → bench.

Usage (from the repository root)::

    python examples/custom_op/power_difference.py                 # writes into ./custom-op-demo
    python examples/custom_op/power_difference.py --out /tmp/cop --inside

The operator is written with ``lowbit.ops.function`` from standard ops (Sub, Pow) and added
to a small CNN between a ReLU and the next convolution. ONNX Runtime inlines the function
when it loads the model, so it runs at the speed of its standard kernels. By default deploy
quantizes around it: the function node stays float (the reason is printed) and every
convolution runs as an integer kernel. With ``--inside`` transform runs the
``inline_functions`` pass first, so calibration observes the tensors inside the operator
and deploy sees its Sub and Pow (which stay float: lowbit has no INT8 rule for them).
With ``--python`` the same operator is numpy code registered with ``lowbit.ops.python_op``
(onnxruntime-extensions): it runs through every verb too, kept
float by deploy, and the op profile printed at the end shows what each call through
Python costs. A node of a custom domain with no function or kernel is refused with one
line saying how to register it (try removing the ``add_function`` call).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lowbit import api
from lowbit.analysis.bench import BenchSettings, bench_models
from lowbit.analysis.profile import profile_model
from lowbit.ops import (
    CUSTOM_DOMAIN,
    PYTHON_DOMAIN,
    add_function,
    attribute_ref,
    function,
    node,
    python_op,
)


def power_difference() -> onnx.FunctionProto:
    return function("PowerDifference", ["x", "y"], ["z"], [
        node("Sub", ["x", "y"], ["d"]),
        node("Constant", [], ["p"], value_float=attribute_ref("p")),
        node("Pow", ["d", "p"], ["z"]),
    ], attributes=["p"], doc="(x - y)^p, elementwise")


def register_python_kernel() -> None:
    @python_op("PowerDifference", inputs=2, attrs={"p": "float"})
    def power_difference_numpy(x: np.ndarray, y: np.ndarray, **attrs: float) -> np.ndarray:
        return ((x - y) ** attrs["p"]).astype(np.float32)


def cnn(seed: int = 0, domain: str = CUSTOM_DOMAIN) -> onnx.ModelProto:
    """Conv-ReLU → PowerDifference(·, 0.1; p=2) → Conv-ReLU → global pool → Gemm (10 classes)."""
    rng = np.random.default_rng(seed)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        fan_in = int(np.prod(shape[1:]))
        return numpy_helper.from_array(
            (rng.standard_normal(shape) * np.sqrt(2 / fan_in)).astype(np.float32), name)

    nodes = [
        node("Conv", ["input", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        node("Relu", ["c1"], ["r1"], name="relu1"),
        node("PowerDifference", ["r1", "shift"], ["pd"], domain=domain, name="powdiff", p=2.0),
        node("Conv", ["pd", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        node("Relu", ["c2"], ["r2"], name="relu2"),
        node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        node("Flatten", ["gap"], ["flat"], name="flatten"),
        node("Gemm", ["flat", "fc"], ["logits"], transB=1, name="fc"),
    ]
    inits = [weight("w1", 16, 3, 3, 3), weight("w2", 16, 16, 3, 3), weight("fc", 10, 16),
             numpy_helper.from_array(np.full((1, 16, 1, 1), 0.1, np.float32), "shift")]
    graph = helper.make_graph(
        nodes, "power_difference_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid(domain, 1)], ir_version=8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("custom-op-demo"))
    parser.add_argument("--inside", action="store_true",
                        help="inline the function first: calibrate and deploy see its ops")
    parser.add_argument("--python", action="store_true",
                        help="the operator as numpy code (onnxruntime-extensions) instead")
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.python:
        register_python_kernel()
        model = cnn(domain=PYTHON_DOMAIN)
    else:
        model = add_function(cnn(), power_difference())
    onnx.save(model, out / "model.onnx")
    rng = np.random.default_rng(1)
    np.savez(out / "calib.npz", input=rng.standard_normal((32, 3, 32, 32)).astype(np.float32))
    np.savez(out / "x.npz", input=rng.standard_normal((16, 3, 32, 32)).astype(np.float32))

    passes = "inline_functions,fold_constants,lift_constants,remove_dead_nodes" \
        if args.inside else None
    f32 = api.transform(out / "model.onnx", out / "model.f32.onnx", test_input=out / "x.npz",
                        passes=passes)
    table = api.calibrate(f32.path, out / "calib.npz", output=out / "model.calib",
                          progress=False)
    print(f"calibrate: {len(table.ranges)} tensors observed")
    deployed = api.deploy(f32.path, calibration_table=out / "model.calib",
                          output=out / "model.int8.onnx", test_input=out / "x.npz",
                          test_reference=f32.reference_path)
    print(f"deploy: {len(deployed.quantized)} ops quantized, validation "
          f"{'PASSED' if deployed.passed else 'FAILED'}")
    for decision in deployed.left_float:
        print(f"  left float: {decision.name} ({decision.op_type}): {decision.reason}")
    if deployed.advice is not None:
        print(f"ONNX Runtime: {deployed.advice.summary()}")
    report = api.compare(f32.path, deployed.path, out / "x.npz", progress=False)
    for diff in report.diffs:
        print(f"  {diff.name:<8} {diff.op_type:<18} cos {diff.cosine:.6f} "
              f"SQNR {diff.sqnr_db:5.1f} dB")
    timed = bench_models([deployed.path, f32.path], BenchSettings(batches=(1,), repeats=50),
                         progress=False)
    for result in timed.results:
        print(f"bench: {result.label}: {result.timing(1).median_ms:.3f} ms at batch 1")
    print(f"bench: INT8 is {timed.ratio(1):.2f}x the throughput of F32 at batch 1")
    profile = profile_model(deployed.path, batch=1, runs=20, threads=1)
    for row in profile.rows[:4]:
        print(f"profile: {row.op_type:<18} {row.total_ms:.3f} ms/run ({row.share:.0%})")


if __name__ == "__main__":
    main()
