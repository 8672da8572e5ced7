"""lowbit: deploy trained neural networks at lower precision.

    import lowbit
    lowbit.transform("model.onnx", "work/model.f32.onnx", test_input="x.npz")
    lowbit.calibrate("work/model.f32.onnx", "calib.npz", method="kl", output="work/model.calib")
    result = lowbit.deploy("work/model.f32.onnx", calibration_table="work/model.calib",
                           output="work/model.int8.onnx", test_input="x.npz")
    lowbit.bench(["work/model.int8.onnx", "work/model.f32.onnx"])
"""

__version__ = "0.1.0"

from lowbit.analysis.bench import BenchSettings
from lowbit.analysis.bench import bench_models as bench
from lowbit.api import (
    Classification,
    DeployResult,
    ReportResult,
    TransformResult,
    calibrate,
    classify,
    compare,
    deploy,
    evaluate,
    info,
    plan,
    qtable,
    quantize,
    report,
    rerun,
    run_samples,
    transform,
)
from lowbit.errors import LowbitError
from lowbit.recipe import Recipe, read_recipe

__all__ = [
    "BenchSettings",
    "Classification",
    "DeployResult",
    "LowbitError",
    "Recipe",
    "ReportResult",
    "TransformResult",
    "bench",
    "calibrate",
    "classify",
    "compare",
    "deploy",
    "evaluate",
    "info",
    "plan",
    "qtable",
    "quantize",
    "read_recipe",
    "report",
    "rerun",
    "run_samples",
    "transform",
]
