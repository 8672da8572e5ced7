"""The whole flow on the MNIST CNN that ships with lowbit.

    result = run_demo_flow(Path("lowbit-demo"), on_stage=print)
    result.report.rows     # (ReportRow(precision="F32", ...), ReportRow(precision="INT8", ...))

Stages: transform → calibrate (200 training digits) → deploy INT8, validated on
100 held-out digits → report: top-1/top-5 on the 1,000 held-out digits, speed at
batch 1 and 32 (interleaved), output cosine and the layer-by-layer compare, as
report.md and report.html. The model is trained by examples/mnist/train.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from lowbit import api
from lowbit.api.report import REPORT_FILES
from lowbit.data import ImageOptions, save_npz_dataset
from lowbit.errors import LowbitError, UsageError
from lowbit.outputs import OutputDir, check_distinct

log = logging.getLogger(__name__)

VALIDATION_SAMPLES = 100
ASSETS = ("mnist_lenet.onnx", "mnist_calib.npz", "mnist_test.npz")
# How the digits were made (examples/mnist/train.py): grey pixels / 255.
PREPROCESSING = ImageOptions(mean=(0.0,), scale=(1 / 255,), pixel_format="gray")
# What the stages write into the work folder (the report's files go into report/).
WORKDIR_FILES = ("calib.npz", "test.npz", "x.npz", "model.f32.onnx", "model.meta.json",
                 "ref_inputs.npz", "ref_outputs.npz", "model.calib", "model.int8.onnx",
                 *(f"report/{name}" for name in REPORT_FILES))


@dataclass(frozen=True)
class DemoResult:
    deploy: api.DeployResult
    report: api.ReportResult
    workdir: Path


def asset_path(name: str) -> Path:
    path = Path(str(resources.files("lowbit") / "assets" / name))
    if not path.exists():
        raise LowbitError(f"the package is missing its demo file {name}; reinstall lowbit")
    return path


def run_demo_flow(workdir: Path, *, method: str = "auto", repeats: int = 20,
                  on_stage: Callable[[str], None] = log.info,
                  on_deployed: Callable[[api.DeployResult], None] | None = None) -> DemoResult:
    """Run the four stages in ``workdir``; ``on_stage`` gets a line as each starts and
    ``on_deployed`` the deploy result as soon as it is there."""
    model = asset_path(ASSETS[0])
    check_distinct({f"demo file {name}": asset_path(name) for name in ASSETS},
                   {"--workdir": OutputDir(workdir, WORKDIR_FILES)})
    if workdir.exists() and not workdir.is_dir():
        raise UsageError(f"--workdir {workdir} is a file; give a folder for the demo's files")
    workdir.mkdir(parents=True, exist_ok=True)
    # The data sets go beside the stages' files, so the README's commands run on them.
    with np.load(asset_path(ASSETS[1])) as data:
        calib = save_npz_dataset(workdir / "calib.npz", {key: data[key] for key in data.files})
    with np.load(asset_path(ASSETS[2])) as data:
        test = save_npz_dataset(workdir / "test.npz", {key: data[key] for key in data.files})
        x_path = save_npz_dataset(workdir / "x.npz",
                                  {"input": data["input"][:VALIDATION_SAMPLES]})

    on_stage("1/4 transform: check, clean up, record reference outputs")
    f32 = api.transform(model, workdir / "model.f32.onnx", test_input=x_path,
                        image_options=PREPROCESSING)
    on_stage(f"    {f32.report.summary()} → {f32.path}")

    on_stage(f"2/4 calibrate: 200 training digits, method {method}")
    table = api.calibrate(f32.path, calib, num=200, method=method,
                          output=workdir / "model.calib", progress=False)
    on_stage(f"    {len(table.ranges)} tensors → {workdir / 'model.calib'}")

    on_stage(f"3/4 deploy INT8, validated on {VALIDATION_SAMPLES} held-out digits")
    deployed = api.deploy(f32.path, quantize="INT8", calibration_table=workdir / "model.calib",
                          output=workdir / "model.int8.onnx", test_input=x_path,
                          test_reference=f32.reference_path, tolerance="0.99,0.90")
    if on_deployed is not None:
        on_deployed(deployed)

    on_stage("4/4 report: accuracy on 1,000 held-out digits, speed at batch 1 and 32, "
             "layer-by-layer compare")
    report = api.report([f32.path, deployed.path], test, workdir / "report", repeats=repeats,
                        title="lowbit demo: MNIST LeNet, F32 vs INT8")
    return DemoResult(deployed, report, workdir)
