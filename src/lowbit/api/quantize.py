"""lowbit.quantize: the whole flow in one call, with the defaults — transform, calibrate,
deploy, validate and report — for the model and data most users have.

    run = lowbit.quantize_model("model.onnx", "samples.npz", "out/")   # lowbit.api.quantize
    run.deployed.path, run.deployed.passed, run.report.files.markdown

The data set is split once: the last ``validate`` samples (a fifth of them at most)
are held out for validation and the report; calibration reads the samples before
them (``num`` at most). With fewer than 8 samples both read all of them, and
``held_out`` says so. The held-out samples are written to ``OUT/validate/`` one file
each (memory does not grow with their size), with their labels beside them where the
data set has a ``label`` array. Every stage's file stays in OUT for the stage verbs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lowbit import arguments
from lowbit.api.calibrate import calibrate
from lowbit.api.common import image_options_for
from lowbit.api.deploy import DeployResult, deploy, plan
from lowbit.api.report import ReportResult, report
from lowbit.api.transform import TransformResult, transform
from lowbit.calibration.table import CalibrationTable
from lowbit.data import ImageOptions, open_dataset
from lowbit.data.datasets import npz_keys, read_array
from lowbit.data.samples import finite_samples
from lowbit.errors import ArgumentError, DatasetError
from lowbit.io.model import input_specs, load_model
from lowbit.outputs import OutputDir, check_distinct
from lowbit.recipe.recipe import Recipe

log = logging.getLogger(__name__)

CALIBRATION_SAMPLES = 200
VALIDATION_SAMPLES = 100
MIN_SPLIT = 8  # fewer samples than this: calibrate and validate on all of them
FILES = ("model.f32.onnx", "model.meta.json", "model.calib", "validate", "report",
         "model.int8.onnx", "model.f16.onnx", "model.bf16.onnx", "model.w4.onnx")


@dataclass(frozen=True)
class QuantizeRun:
    workdir: Path
    transformed: TransformResult
    table: CalibrationTable | None
    deployed: DeployResult
    report: ReportResult | None
    calibration_samples: int
    validation_samples: int
    held_out: bool  # whether validation read samples calibration did not


def quantize(model: str | Path, data: str | Path, output: str | Path, *,
             recipe: Recipe | None = None, num: int = CALIBRATION_SAMPLES,
             validate: int = VALIDATION_SAMPLES, image_options: ImageOptions | None = None,
             report_speed: bool = True, on_stage: Callable[[str], None] = log.info,
             **options: Any) -> QuantizeRun:
    """Run the flow on ``model`` and ``data`` into the folder ``output`` (see the module
    docstring); ``recipe``/``options`` are deploy's (default: INT8 with every default)."""
    model, data = arguments.path(model, "model"), arguments.path(data, "data")
    out = arguments.folder(output, "output")
    num, validate = arguments.count(num, "num"), arguments.count(validate, "validate")
    arguments.instance(image_options, ImageOptions, "image_options", "an ImageOptions")
    arguments.flag(report_speed, "report_speed")
    if not callable(on_stage):
        raise ArgumentError(f"{{on_stage}} must be a function of one str; got {on_stage!r}")
    precision = str(options.get("quantize", recipe.precision if recipe else "INT8")).upper()
    dynamic = options.get("dynamic", recipe.int8.dynamic if recipe else False)
    if precision == "INT8" and not dynamic:
        options = {"calibration_table": out / "model.calib", **options}
    chosen = plan(recipe, **options)  # every recipe mistake before any work
    check_distinct({"{model}": model, "{data}": data}, {"{output}": OutputDir(out, FILES)})
    out.mkdir(parents=True, exist_ok=True)

    on_stage("1/4 transform: check and clean up the model")
    f32 = transform(model, out / "model.f32.onnx", image_options=image_options)
    image_options = image_options_for(f32.path, image_options, data)
    dataset = open_dataset(data, input_specs(load_model(f32.path, check=False)),
                           image_options=image_options)
    total = len(dataset)
    if total == 0:
        raise DatasetError(f"the data set {data} has no samples")
    held_out = total >= MIN_SPLIT
    n_val = min(validate, total // 5) if held_out else min(validate, total)
    n_cal = min(num, total - n_val) if held_out else min(num, total)
    first_val = total - n_val if held_out else 0
    validation = _write_validation(dataset, data, first_val, n_val, out / "validate")

    table = None
    if chosen.static_int8:
        on_stage(f"2/4 calibrate: {n_cal} samples, method auto")
        table = calibrate(f32.path, data, num=n_cal, output=out / "model.calib",
                          image_options=image_options, progress=False)
    else:
        on_stage(f"2/4 calibrate: not needed for {chosen.precision}"
                 f"{' dynamic' if chosen.int8.dynamic else ''}")
    on_stage(f"3/4 deploy {chosen.precision}, validated on {n_val} "
             f"{'held-out' if held_out else 'calibration'} samples")
    deployed = deploy(f32.path, output=out / f"model.{chosen.precision.lower()}.onnx",
                      recipe=recipe, **{**options, "test_input": validation})
    made = None
    if report_speed:
        on_stage("4/4 report: accuracy, size and speed of F32 and the deployed model")
        labels = validation.parent / "validate_labels.npy"
        made = report([f32.path, deployed.path], validation, out / "report",
                      labels=labels if labels.exists() else None)
    return QuantizeRun(out, f32, table, deployed, made, n_cal, n_val, held_out)


def _write_validation(dataset: Any, source: str | Path, first: int, count: int,
                      folder: Path) -> Path:
    """Samples ``first`` .. ``first + count`` as one .npz each in ``folder`` (exact input
    shapes, so the folder is a data set), and their labels beside it when ``source``
    has a label array."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.npz"):
        old.unlink()
    for index, sample in enumerate(finite_samples(dataset)):
        if index >= first + count:
            break
        if index >= first:
            np.savez(folder / f"{index - first:06d}.npz", **sample)  # type: ignore[arg-type]
    labels = _labels(source)
    target = folder.parent / "validate_labels.npy"
    target.unlink(missing_ok=True)
    if labels is not None and len(labels) >= first + count:
        np.save(target, labels[first:first + count])
    return folder


def _labels(source: str | Path) -> np.ndarray | None:
    path = Path(source)
    if path.suffix != ".npz" or not path.is_file():
        return None
    key = next((k for k in ("label", "labels") if k in npz_keys(path)), None)
    return None if key is None else read_array(path, key)
