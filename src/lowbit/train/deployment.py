"""The seed table continued into deployment: each trained network exported to ONNX and run
through lowbit's own flow at F32, BF16 and INT8.

    rows = deploy_rows(Path("out/fp32.onnx"), digits, Path("out/fp32"), ("F32", "BF16", "INT8"),
                       float_method="cast")
    rows[0].precision, rows[0].top1, rows[0].agree, rows[0].ms

Per network: ``lowbit transform`` (BN-free graph cleaned up) → F32; ``lowbit deploy
--quantize BF16`` with the float method that matches the training method's weights
(``cast``: FP32 weights with casts, as method 1 keeps them; ``full``: BF16 weights, as
method 2 trains them), run on OpenVINO (ONNX Runtime's CPU provider has no BF16 conv);
``lowbit calibrate`` on the demo's 200 training digits and ``lowbit deploy`` INT8 (ONNX
Runtime). Each is scored on the test digits (top-1, and agreement with its own F32) and
timed at batch 32, F32 and INT8 on ONNX Runtime and BF16 on OpenVINO interleaved
(lowbit.analysis.bench).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lowbit.errors import LowbitError
from lowbit.train.data import Digits

log = logging.getLogger(__name__)

PRECISIONS = ("F32", "BF16", "INT8")
BATCH = 32


@dataclass(frozen=True)
class DeployRow:
    method: str
    precision: str
    path: Path | None
    top1: float | None = None  # percent, on the test digits
    agree: float | None = None  # percent of test digits where it agrees with its F32
    size_mb: float | None = None
    ms: float | None = None  # median ms per batch of BATCH on its engine
    engine: str = "ort"
    note: str = ""


def write_data(digits: Digits, folder: Path) -> tuple[Path, Path]:
    """The test digits (with labels) and the 200 calibration digits as .npz files."""
    folder.mkdir(parents=True, exist_ok=True)
    test, calib = folder / "test.npz", folder / "calib.npz"
    np.savez(test, input=digits.test.images, label=digits.test.labels)
    picked = digits.calibration()
    np.savez(calib, input=picked.images, label=picked.labels)
    return test, calib


def deploy_rows(model: Path, method: str, test: Path, calib: Path, folder: Path,
                precisions: Sequence[str], float_method: str, *, time_models: bool = True
                ) -> list[DeployRow]:
    """Transform, deploy and score ``model`` at each of ``precisions`` (see the module)."""
    import lowbit

    folder.mkdir(parents=True, exist_ok=True)
    f32 = lowbit.transform(model, folder / "model.f32.onnx").path
    rows = [_scored(method, "F32", f32, test, None)]
    if "BF16" in precisions:
        rows.append(_bf16(method, f32, test, folder, float_method))
    if "INT8" in precisions:
        table = folder / "model.calib"
        lowbit.calibrate(f32, calib, output=table, progress=False)
        int8 = lowbit.deploy(f32, calibration_table=table, output=folder / "model.int8.onnx")
        note = "" if int8.passed else (int8.problem or "validation failed")
        rows.append(_scored(method, "INT8", int8.path, test, f32, note=note))
    if "F32" not in precisions:
        rows = rows[1:]
    return _timed(rows) if time_models else rows


def _bf16(method: str, f32: Path, test: Path, folder: Path, float_method: str) -> DeployRow:
    import lowbit

    path = lowbit.deploy(f32, quantize="BF16", float_method=float_method,
                         output=folder / "model.bf16.onnx").path
    if importlib.util.find_spec("openvino") is None:
        return DeployRow(method, "BF16", path, size_mb=path.stat().st_size / 1e6,
                         engine="-", note="not run: ONNX Runtime's CPU provider has no BF16 "
                         "conv; the openvino extra runs it (pip install '.[openvino]')")
    return _scored(method, "BF16", path, test, f32, backend="openvino",
                   note=f"deploy --float-method {float_method}")


def _scored(method: str, precision: str, path: Path, test: Path, f32: Path | None, *,
            backend: str = "ort", note: str = "") -> DeployRow:
    import lowbit

    try:
        report = lowbit.evaluate(path, test, backend=backend,
                                 vs=f32 if f32 is not None and backend == "ort" else None,
                                 progress=False)
    except LowbitError as err:
        return DeployRow(method, precision, path, size_mb=path.stat().st_size / 1e6,
                         engine=backend, note=f"not scored: {err}")
    top1 = report.results[0].metrics.get("top1")
    agree = report.agreement
    if f32 is not None and backend != "ort":  # agreement with F32 by running both here
        agree = _agreement(path, f32, test, backend)
    return DeployRow(method, precision, path, top1, 100.0 if f32 is None else agree,
                     path.stat().st_size / 1e6, engine=backend, note=note)


def _agreement(path: Path, f32: Path, test: Path, backend: str) -> float:
    from lowbit.api.common import run_samples
    from lowbit.data import open_dataset
    from lowbit.io.model import input_specs, load_model

    samples = open_dataset(test, input_specs(load_model(f32, check=False)))
    ours = next(iter(run_samples(path, samples, backend=backend).values()))
    theirs = next(iter(run_samples(f32, samples).values()))
    return 100.0 * float((ours.argmax(1) == theirs.argmax(1)).mean())


def _timed(rows: list[DeployRow]) -> list[DeployRow]:
    """Every row that ran, timed at batch BATCH on its engine, interleaved."""
    from dataclasses import replace

    from lowbit.analysis.bench import BenchSettings, BenchVariant, bench_models

    runnable = [row for row in rows if row.path is not None and row.engine != "-"]
    if not runnable:
        return rows
    variants = [BenchVariant(row.path, row.engine, row.precision if row.engine == "openvino"
                             else None) for row in runnable if row.path is not None]
    try:
        comparison = bench_models(variants, BenchSettings(batches=(BATCH,), repeats=20),
                                  progress=False)
    except LowbitError as err:
        log.warning("timing the deployed models failed: %s", err)
        return rows
    times = {id(row): result.timing(BATCH).median_ms
             for row, result in zip(runnable, comparison.results, strict=True)}
    return [replace(row, ms=times.get(id(row))) for row in rows]
