"""The whole flow on the MNIST CNN that ships with lowbit.

    result = run_demo_flow(Path("lowbit-demo"), on_stage=print)
    result.rows            # [DemoRow(precision="F32", ...), DemoRow(precision="INT8", ...)]

Stages: transform → calibrate (200 training digits) → deploy INT8, validated on
100 held-out digits → top-1 on the 1,000 held-out digits for F32 and INT8 →
bench both, interleaved. The model is trained by examples/mnist/train.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from lowbit import api
from lowbit.analysis.bench import BenchComparison, BenchSettings, bench_models
from lowbit.analysis.metrics import cosine
from lowbit.data import open_dataset, save_npz_dataset
from lowbit.errors import LowbitError
from lowbit.io.model import input_specs, load_model

log = logging.getLogger(__name__)

VALIDATION_SAMPLES = 100


@dataclass(frozen=True)
class DemoRow:
    precision: str
    size_bytes: int
    top1: float
    latency_b1_ms: float
    throughput_b32: float
    speedup_b32: float
    cosine_vs_f32: float


@dataclass(frozen=True)
class DemoResult:
    rows: tuple[DemoRow, ...]
    deploy: api.DeployResult
    bench: BenchComparison
    workdir: Path


def asset_path(name: str) -> Path:
    path = Path(str(resources.files("lowbit") / "assets" / name))
    if not path.exists():
        raise LowbitError(f"the package is missing its demo file {name}; reinstall lowbit")
    return path


def run_demo_flow(workdir: Path, *, method: str = "minmax", repeats: int = 20,
                  on_stage: Callable[[str], None] = log.info) -> DemoResult:
    workdir.mkdir(parents=True, exist_ok=True)
    model, calib, test = (asset_path(n) for n in
                          ("mnist_lenet.onnx", "mnist_calib.npz", "mnist_test.npz"))
    with np.load(test) as data:
        test_inputs, labels = data["input"], data["label"]
    x_path = save_npz_dataset(workdir / "x.npz", {"input": test_inputs[:VALIDATION_SAMPLES]})

    on_stage("1/5 transform: check, clean up, record reference outputs")
    f32 = api.transform(model, workdir / "model.f32.onnx", test_input=x_path)
    on_stage(f"    {f32.report.summary()} → {f32.path}")

    on_stage(f"2/5 calibrate: 200 training digits, method {method}")
    table = api.calibrate(f32.path, calib, num=200, method=method,
                          output=workdir / "model.calib", progress=False)
    on_stage(f"    {len(table.ranges)} tensors → {workdir / 'model.calib'}")

    on_stage(f"3/5 deploy INT8, validated on {VALIDATION_SAMPLES} held-out digits")
    deployed = api.deploy(f32.path, quantize="INT8", calibration_table=workdir / "model.calib",
                          output=workdir / "model.int8.onnx", test_input=x_path,
                          test_reference=f32.reference_path, tolerance="0.99,0.90")

    on_stage(f"4/5 accuracy on {len(labels)} held-out digits")
    samples = open_dataset(test, input_specs(load_model(f32.path)))
    logits = {name: api.run_samples(path, samples)["logits"]
              for name, path in (("F32", f32.path), ("INT8", deployed.path))}
    top1 = {name: float(np.mean(out.argmax(axis=1) == labels) * 100)
            for name, out in logits.items()}

    on_stage("5/5 bench: INT8 and F32 interleaved, batch 1 and 32")
    bench = bench_models([deployed.path, f32.path],
                         BenchSettings(batches=(1, 32), repeats=repeats), progress=False)
    rows = []
    for name, result in zip(("INT8", "F32"), bench.results, strict=True):
        b1, b32 = result.timing(1), result.timing(32)
        rows.append(DemoRow(name, result.size_bytes, top1[name], b1.median_ms, b32.throughput,
                            b32.throughput / bench.results[1].timing(32).throughput,
                            cosine(logits["F32"], logits[name])))
    return DemoResult(tuple(reversed(rows)), deployed, bench, workdir)
