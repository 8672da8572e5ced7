"""lowbit: deploy trained neural networks at lower precision.

    import lowbit
    lowbit.transform("model.onnx", "work/model.f32.onnx", test_input="x.npz")
    lowbit.calibrate("work/model.f32.onnx", "calib.npz", method="kl", output="work/model.calib")
    result = lowbit.deploy("work/model.f32.onnx", calibration_table="work/model.calib",
                           output="work/model.int8.onnx", test_input="x.npz")
    lowbit.bench(["work/model.int8.onnx", "work/model.f32.onnx"])
    run = lowbit.quantize_model("model.onnx", "samples.npz", "out/")   # the whole flow

Names load on first use (``import lowbit`` itself imports none of onnx, onnxruntime or
numpy), so the command line starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name → the module that defines it
_WHERE = {
    "BenchSettings": "lowbit.analysis.bench",
    "bench": "lowbit.analysis.bench:bench_models",
    "LowbitError": "lowbit.errors",
    "Recipe": "lowbit.recipe",
    "read_recipe": "lowbit.recipe",
    **{name: "lowbit.api" for name in (
        "Classification", "DeployResult", "ReportResult", "TransformResult", "QuantizeRun",
        "calibrate", "classify", "compare", "deploy", "evaluate", "info", "plan", "qtable",
        "report", "rerun", "run_samples", "transform")},
    # not "quantize": that name is the lowbit.quantize package
    "quantize_model": "lowbit.api:quantize",
}

__all__ = [
    "BenchSettings",
    "Classification",
    "DeployResult",
    "LowbitError",
    "QuantizeRun",
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
    "quantize_model",
    "read_recipe",
    "report",
    "rerun",
    "run_samples",
    "transform",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'lowbit' has no attribute {name!r}")
    module, _, attribute = where.partition(":")
    value = getattr(importlib.import_module(module), attribute or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


if TYPE_CHECKING:  # for type checkers and editors: the names as they really are
    from lowbit.analysis.bench import BenchSettings
    from lowbit.analysis.bench import bench_models as bench
    from lowbit.analysis.classify import Classification
    from lowbit.api.calibrate import calibrate
    from lowbit.api.classify import classify
    from lowbit.api.common import run_samples
    from lowbit.api.compare import compare
    from lowbit.api.deploy import DeployResult, deploy, plan, rerun
    from lowbit.api.evaluate import evaluate
    from lowbit.api.info import info
    from lowbit.api.qtable import qtable
    from lowbit.api.quantize import QuantizeRun
    from lowbit.api.quantize import quantize as quantize_model
    from lowbit.api.report import ReportResult, report
    from lowbit.api.transform import TransformResult, transform
    from lowbit.errors import LowbitError
    from lowbit.recipe import Recipe, read_recipe
