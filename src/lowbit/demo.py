"""The whole flow on the MNIST CNN that ships with lowbit.

    result = run_demo_flow(Path("lowbit-demo"), on_stage=print)
    result.report.rows     # (ReportRow(precision="F32", ...), ReportRow(precision="INT8", ...))

Stages: transform → calibrate (200 training digits) → deploy INT8, validated on
100 held-out digits → report: top-1/top-5 on the 1,000 held-out digits, speed at
batch 1 and 32 (interleaved), output cosine and the layer-by-layer compare, as
report.md and report.html → package: the INT8 model as model.lowbit, run by
lowbit-run (a separate process that imports only onnxruntime, numpy and Pillow) on
one held-out digit saved as digit.png. The model is trained by examples/mnist/train.py.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from lowbit import api
from lowbit.api.report import REPORT_FILES
from lowbit.atomic import atomic_path
from lowbit.data import ImageOptions, save_npz_dataset
from lowbit.errors import LowbitError, UsageError
from lowbit.outputs import OutputDir, check_distinct

log = logging.getLogger(__name__)

VALIDATION_SAMPLES = 100
ASSETS = ("mnist_lenet.onnx", "mnist_calib.npz", "mnist_test.npz")
# How the digits were made (examples/mnist/train.py): grey pixels / 255.
PREPROCESSING = ImageOptions(mean=(0.0,), scale=(1 / 255,), pixel_format="gray")
LABELS = tuple(str(digit) for digit in range(10))
SHOWN_DIGIT = 7  # the first held-out 7 goes to lowbit-run as digit.png
# What the stages write into the work folder (the report's files go into report/).
WORKDIR_FILES = ("calib.npz", "test.npz", "x.npz", "model.f32.onnx", "model.meta.json",
                 "ref_inputs.npz", "ref_outputs.npz", "model.calib", "model.int8.onnx",
                 "model.lowbit", "digit.png",
                 *(f"report/{name}" for name in REPORT_FILES))


@dataclass(frozen=True)
class DemoResult:
    deploy: api.DeployResult
    report: api.ReportResult
    workdir: Path
    package: api.PackageResult | None = None
    run_output: tuple[str, ...] = ()  # what lowbit-run printed for digit.png


def asset_path(name: str) -> Path:
    path = Path(str(resources.files("lowbit") / "assets" / name))
    if not path.exists():
        raise LowbitError(f"the package is missing its demo file {name}; reinstall lowbit")
    return path


def run_demo_flow(workdir: Path, *, method: str = "auto", repeats: int = 20,
                  on_stage: Callable[[str], None] = log.info,
                  on_deployed: Callable[[api.DeployResult], None] | None = None) -> DemoResult:
    """Run the five stages in ``workdir``; ``on_stage`` gets a line as each starts and
    ``on_deployed`` the deploy result as soon as it is there."""
    model = asset_path(ASSETS[0])
    check_distinct({f"demo file {name}": asset_path(name) for name in ASSETS},
                   {"{workdir}": OutputDir(workdir, WORKDIR_FILES)})
    if workdir.exists() and not workdir.is_dir():
        raise UsageError(f"{{workdir}} {workdir} is a file; give a folder for the demo's files")
    workdir.mkdir(parents=True, exist_ok=True)
    # The data sets go beside the stages' files, so the README's commands run on them.
    with np.load(asset_path(ASSETS[1])) as data:
        calib = save_npz_dataset(workdir / "calib.npz", {key: data[key] for key in data.files})
    with np.load(asset_path(ASSETS[2])) as data:
        test = save_npz_dataset(workdir / "test.npz", {key: data[key] for key in data.files})
        x_path = save_npz_dataset(workdir / "x.npz",
                                  {"input": data["input"][:VALIDATION_SAMPLES]})

    on_stage("1/5 transform: check, clean up, record reference outputs")
    f32 = api.transform(model, workdir / "model.f32.onnx", test_input=x_path,
                        image_options=PREPROCESSING)
    on_stage(f"    {f32.report.summary()} → {f32.path}")

    on_stage(f"2/5 calibrate: 200 training digits, method {method}")
    table = api.calibrate(f32.path, calib, num=200, method=method,
                          output=workdir / "model.calib", progress=False)
    on_stage(f"    {len(table.ranges)} tensors → {workdir / 'model.calib'}")

    on_stage(f"3/5 deploy INT8, validated on {VALIDATION_SAMPLES} held-out digits")
    deployed = api.deploy(f32.path, quantize="INT8", calibration_table=workdir / "model.calib",
                          output=workdir / "model.int8.onnx", test_input=x_path,
                          test_reference=f32.reference_path, tolerance="0.99,0.90")
    if on_deployed is not None:
        on_deployed(deployed)

    on_stage("4/5 report: accuracy on 1,000 held-out digits, speed at batch 1 and 32, "
             "layer-by-layer compare")
    report = api.report([f32.path, deployed.path], test, workdir / "report", repeats=repeats,
                        title="lowbit demo: MNIST LeNet, F32 vs INT8")

    on_stage("5/5 package INT8 for lowbit-run (ORT format, validated again), run it on a "
             "held-out digit")
    bundle = api.package(deployed.path, workdir / "model.lowbit", labels=LABELS)
    on_stage(f"    {bundle.precision}, {bundle.target_platform}: "
             f"{bundle.package_bytes / 1e3:.0f} kB (the .onnx {bundle.source_bytes / 1e3:.0f} "
             f"kB) → {bundle.path}")
    if bundle.validation is not None:
        worst = min(bundle.validation.checks, key=lambda check: check.cosine)
        on_stage(f"    the bundled model against {bundle.validated_against}: cosine "
                 f"{worst.cosine:.6f}, SQNR {worst.sqnr_db:.1f} dB, "
                 f"{'PASSED' if bundle.passed else 'FAILED'}")
    digit = write_digit(test, workdir / "digit.png")
    command = ["lowbit-run", str(bundle.path), "--input", str(digit), "--top", "3"]
    on_stage(f"    $ {' '.join(command)}")
    lines = run_lowbit_run(command[1:])
    for line in lines:
        on_stage(f"    {line}")
    return DemoResult(deployed, report, workdir, bundle, lines)


def write_digit(test: Path, path: Path) -> Path:
    """The first test digit labelled SHOWN_DIGIT, as the 28x28 gray PNG it was made from."""
    with np.load(test) as data:
        index = int(np.argmax(data["label"] == SHOWN_DIGIT))
        pixels = np.round(data["input"][index, 0] * 255).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")  # uint8 2-D: mode L
    return path


def run_lowbit_run(args: list[str]) -> tuple[str, ...]:
    """lowbit-run in a fresh interpreter (``python -m lowbit_run``, the console script's
    code), so the demo shows it working without lowbit's other modules loaded."""
    done = subprocess.run([sys.executable, "-m", "lowbit_run", *args], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise LowbitError(f"lowbit-run failed on the demo's bundle: {detail}")
    return tuple(done.stdout.splitlines())
