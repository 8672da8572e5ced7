"""Calibration of 1,000 samples on MobileNetV2 and EfficientNet-Lite0: 1 process x 2 threads
vs 2 processes x 1 thread vs Ray (local, 2 workers), side by side.

    python bench/parallel_calibration.py                     # both models, 1,000 samples
    python bench/parallel_calibration.py --samples 1000 --repeats 1 --markdown bench/results/parallel_calibration.md
    python bench/parallel_calibration.py --models mobilenet_v2 --samples 200   # quicker

Each model's 1,000 DEV calibration samples are written once, as an uncompressed .npz the
workers memory-map by path: MobileNetV2 (bench/models.py, random weights) gets
``photo_crops`` (ImageNet-normalised), EfficientNet-Lite0 (bench/efficientnet_lite0.py,
its real weights, through ``lowbit.transform`` as bench/efficientnet_report.py does) gets
``photo_set(split="dev")`` ((pixel - 127) / 128). The models and samples are made in a
process of their own (torch stays out of this one's RSS).

Per model, ``lowbit.calibrate`` (``--method``, default auto; no output check, as
bench/parallel.py) runs in the three configurations of bench/parallel.py, interleaved,
``--repeats`` times, each writing its table. Every run's ranges must equal the first
run's bit for bit (checked here), and the table files are compared apart from their
``# created:`` line. Reported: median wall time and its ratio to 1 process x 2 threads,
the merge time of the shards' states (logged by lowbit.calibration.sharded), Ray's
start-up and shutdown (timed alone) as a share of the Ray run, and peak RSS of this
process and of the largest worker (bench/parallel_eval.py ``watch_rss``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import lowbit
from lowbit.calibration.table import CalibrationTable
from lowbit.parallel.plan import cores
from parallel import BASELINE, MergeTimes, available_configs, ray_startup, watch_merges
from parallel_eval import MIB, watch_rss
from provenance import emit, header

MODELS = ("mobilenet_v2", "efficientnet_lite0")
TITLES = {"mobilenet_v2": "MobileNetV2 (random weights, photo_crops)",
          "efficientnet_lite0": "EfficientNet-Lite0 (ImageNet weights, photo_set)"}
RAY = "Ray local, 2 workers x 1 thread"


def prepare(name: str, samples: int, folder: str) -> tuple[str, str, float]:
    """The model and its ``samples`` DEV crops as .npz in ``folder`` (in a child process);
    the paths and the seconds it took."""
    started = time.perf_counter()
    out = Path(folder)
    if name == "mobilenet_v2":
        from models import mobilenet_v2, photo_crops, save

        model = save(mobilenet_v2(), out / "mobilenet_v2.onnx")
        crops = photo_crops(samples, seed=0)
    else:
        from efficientnet_lite0 import export_onnx
        from photos import photo_set

        exported = export_onnx(out / "efficientnet_lite0.onnx")
        model = lowbit.transform(exported, out / "lite0.f32.onnx").path
        crops = photo_set(samples, seed=0, split="dev")
    data = out / f"{name}_calib.npz"
    np.savez(data, input=crops)  # uncompressed: the workers memory-map it
    return str(model), str(data), time.perf_counter() - started


@dataclass
class Row:
    """One configuration's runs of one model."""

    seconds: list[float] = field(default_factory=list)
    merge: list[float] = field(default_factory=list)
    driver_mib: list[float] = field(default_factory=list)
    worker_mib: list[float] = field(default_factory=list)
    others_mib: list[float] = field(default_factory=list)


@dataclass
class ModelResult:
    """One model's rows, how its tables compared, and what preparing it took."""

    name: str
    rows: dict[str, Row]
    tensors: int
    files_equal: bool
    differing_lines: int
    prepare_s: float


def table_text(path: Path) -> list[str]:
    """A table file's lines without its ``# created:`` time stamp."""
    return [line for line in path.read_text().splitlines()
            if not line.startswith("# created:")]


def measure(name: str, model: Path, data: Path, configs: dict[str, dict[str, object]],
            args: argparse.Namespace, merges: MergeTimes, prepare_s: float) -> ModelResult:
    rows = {config: Row() for config in configs}
    first: CalibrationTable | None = None
    first_text: list[str] = []
    worst = 0
    for repeat in range(args.repeats):
        for config, options in configs.items():
            output = data.with_name(f"{name}_{list(configs).index(config)}_{repeat}.calib")
            merges.seconds.clear()
            with watch_rss() as peaks:
                started = time.perf_counter()
                table = lowbit.calibrate(model, data, method=args.method, check_samples=0,
                                         output=output, progress=False,
                                         **options)  # type: ignore[arg-type]
                seconds = time.perf_counter() - started
            row = rows[config]
            row.seconds.append(seconds)
            row.merge.extend(merges.seconds)
            row.driver_mib.append(peaks.driver / MIB)
            row.worker_mib.append(max(peaks.workers.values(), default=0) / MIB)
            row.others_mib.append(sum(peaks.others.values()) / MIB)
            print(f"{name} / {config}: {seconds:.1f} s", flush=True)
            text = table_text(output)
            if first is None:
                first, first_text = table, text
            elif table.ranges != first.ranges:
                raise SystemExit(f"{name} / {config}: the ranges differ from the first run's")
            else:
                worst = max(worst, sum(a != b for a, b in zip(text, first_text, strict=False))
                            + abs(len(text) - len(first_text)))
    assert first is not None
    return ModelResult(name, rows, len(first.ranges), worst == 0, worst, prepare_s)


def model_lines(result: ModelResult, startup: float, args: argparse.Namespace) -> list[str]:
    rows = result.rows
    base = statistics.median(rows[BASELINE].seconds)
    files = ("the table files were byte-identical apart from their `# created:` line"
             if result.files_equal else
             f"the table files differed in at most {result.differing_lines} line(s) apart "
             "from `# created:` (the input means, equal to float rounding)")
    lines = [(f"**{TITLES[result.name]}**, {args.samples} DEV samples, method "
              f"{args.method}: every run's ranges ({result.tensors} tensors) were identical "
              f"bit for bit, and {files}."), "",
             ("| configuration | median s | samples/s | speed vs 1 process | merge s | "
              "Ray start-up share | peak RSS this process MiB | peak RSS per worker MiB | "
              "other processes MiB |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for config, row in rows.items():
        median = statistics.median(row.seconds)
        merge = f"{statistics.median(row.merge):.3f}" if row.merge else "-"
        share = f"{startup / median:.0%}" if config == RAY and startup else "-"
        worker = statistics.median(row.worker_mib)
        others = statistics.median(row.others_mib)
        lines.append(f"| {config} | {median:.1f} | {args.samples / median:.1f} | "
                     f"{base / median:.2f}x | {merge} | {share} | "
                     f"{statistics.median(row.driver_mib):.0f} | "
                     f"{'-' if worker == 0 else f'{worker:.0f}'} | "
                     f"{'-' if others == 0 else f'{others:.0f}'} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--method", default="auto")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray rows")
    parser.add_argument("--markdown", type=Path, help="write the markdown here too")
    args = parser.parse_args()
    names = [n for n in args.models.split(",") if n]
    if unknown := [n for n in names if n not in MODELS]:
        parser.error(f"unknown model(s) {', '.join(unknown)}: {', '.join(MODELS)}")
    configs = available_configs(args.no_ray)
    merges = watch_merges()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_parallel_calibration_") as tmp:
        results = []
        spawn = multiprocessing.get_context("spawn")
        for name in names:
            with spawn.Pool(1) as pool:
                model, data, prepare_s = pool.apply(prepare, (name, args.samples, tmp))
            print(f"{name}: model and {args.samples} samples ready in {prepare_s:.0f} s",
                  flush=True)
            results.append(measure(name, Path(model), Path(data), configs, args, merges,
                                   prepare_s))
            Path(data).unlink()
        startups = [ray_startup() for _ in range(max(args.repeats, 2))] \
            if not args.no_ray else []
    startup = statistics.median(startups) if startups else 0.0
    elapsed = time.perf_counter() - began

    lines = [header(), "",
             (f"`lowbit.calibrate` (method {args.method}, no output check) of {args.samples} "
              "crops of the DEV photos (bench/splits.py), written once as an uncompressed "
              ".npz that the workers memory-map by path; each model's configurations "
              f"interleaved, median of {args.repeats} repeat(s), on a shared, loaded "
              f"{cores()}-core machine (the whole run {elapsed / 60:.1f} min). Merge s: the "
              "merge of the shards' states in this process. Ray start-up share: a local "
              f"Ray's start-up and shutdown timed alone ({startup:.2f} s, median of "
              f"{len(startups)}) over the Ray run. Peak RSS sampled every 0.2 s: this "
              "process; the largest worker process (pool workers, Ray's task workers); the "
              "other processes below this one together (Ray's raylet, GCS, ...; "
              "multiprocessing's resource tracker).")]
    for result in results:
        lines += ["", *model_lines(result, startup, args)]
    emit(lines, args.markdown)


if __name__ == "__main__":
    main()
