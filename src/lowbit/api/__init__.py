"""lowbit's Python API: the same verbs as the command line, one module each.

    import lowbit
    lowbit.transform("model.onnx", "work/model.f32.onnx", test_input="x.npz")
    lowbit.calibrate("work/model.f32.onnx", "calib.npz", num=200, method="kl",
                     output="work/model.calib")
    result = lowbit.deploy("work/model.f32.onnx", quantize="INT8",
                           calibration_table="work/model.calib", output="work/model.int8.onnx",
                           test_input="x.npz", tolerance="0.99,0.90")
    result.passed, result.left_float

Each verb reads files and writes files, so every stage can be run and checked
alone. Errors a user can cause raise LowbitError subclasses.
"""

from lowbit.analysis.classify import Classification
from lowbit.analysis.evaluate import EvalReport
from lowbit.api.calibrate import calibrate
from lowbit.api.classify import classify
from lowbit.api.common import run_samples
from lowbit.api.compare import compare
from lowbit.api.deploy import PRECISIONS, DeployResult, Rerun, deploy, plan, rerun
from lowbit.api.evaluate import evaluate
from lowbit.api.info import ModelInfo, info
from lowbit.api.package import PackageResult, package
from lowbit.api.qtable import QTableResult, qtable
from lowbit.api.quantize import QuantizeRun, quantize
from lowbit.api.report import ReportResult, report
from lowbit.api.transform import TransformResult, transform
from lowbit.data import Dataset
from lowbit.graph import precision_of

__all__ = ["PRECISIONS", "Classification", "Dataset", "DeployResult", "EvalReport",
           "ModelInfo", "PackageResult", "QTableResult", "QuantizeRun", "ReportResult", "Rerun",
           "TransformResult",
           "calibrate", "classify", "compare", "deploy", "evaluate", "info", "package", "plan",
           "precision_of", "qtable", "quantize", "report", "rerun", "run_samples", "transform"]
