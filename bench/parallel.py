"""Calibration, the qtable sensitivity ranking and evaluation on one process or several:
1 process x 2 threads vs 2 processes x 1 thread vs Ray (local, 2 workers), side by side.

    python bench/parallel.py                                  # MobileNetV2, 192 samples
    python bench/parallel.py --samples 192 --rank-samples 8 --markdown bench/results/parallel.md
    python bench/parallel.py --rank-samples 0 --eval-images 2000     # fewer images

Each configuration runs ``lowbit.calibrate`` (method auto, no output check, no table
written) on the same .npz of real photo crops (bench/models.py photo_crops), the
configurations interleaved, ``--repeats`` times; the table gives the median wall time
and its ratio to "1 process x 2 threads" (what lowbit did before --workers existed, and
its default). Every run's table must equal the first one's, bit for bit (checked here).
The overheads: merge time of the shards' states (lowbit.calibration.sharded logs it),
Ray's start-up (ray.init + shutdown of a local cluster, timed alone) as a share of the
Ray run, and the bytes one shard's state pickles to (what a worker sends back).

The qtable part ranks every candidate op of the same model (``lowbit.qtable`` without a
target, on the first ``--rank-samples`` samples, a minmax table of 32 samples) in the
same three configurations, interleaved; the rankings must list the ops in the same
order (checked here) and the largest SQNR difference between them is reported.

The evaluation part (bench/parallel_eval.py) scores ``--eval-images`` PNG crops of the
REPORT photos streamed from an image folder, in the same three configurations, with
peak RSS per worker, the per-shard time, the bytes a worker sends back, merge and
start-up times, and a projection to 8, 64 and 512 cores built from those constants.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import lowbit
from lowbit.calibration.collect import CalibrationRun
from lowbit.calibration.observers import CalibrationSettings
from lowbit.calibration.table import CalibrationTable
from lowbit.parallel.plan import cores
from models import mobilenet_v2, photo_crops, save
from parallel_eval import eval_lines, eval_rows, image_folder, measure_constants, model_at
from provenance import emit, header

CONFIGS: dict[str, dict[str, object]] = {
    "1 process x 2 threads": {"workers": 1},
    "2 processes x 1 thread": {"workers": 2},
    "Ray local, 2 workers x 1 thread": {"workers": 2, "cluster": "local"},
}
BASELINE = "1 process x 2 threads"
LOAD_AT_START = os.getloadavg()[0]  # the 1-minute load average as the script starts


class MergeTimes(logging.Handler):
    """Collects the merge times lowbit.calibration.sharded logs."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seconds: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("merged") and isinstance(record.args, tuple):
            self.seconds.append(float(record.args[1]))


def available_configs(no_ray: bool) -> dict[str, dict[str, object]]:
    """CONFIGS without the Ray rows where asked or where Ray is not installed."""
    try:
        import ray  # noqa: F401
    except ImportError:
        no_ray = True
    return {k: v for k, v in CONFIGS.items() if not (no_ray and "cluster" in v)}


def watch_merges() -> MergeTimes:
    """A MergeTimes collecting what lowbit.calibration.sharded logs from now on."""
    merges = MergeTimes()
    logging.getLogger("lowbit.calibration.sharded").addHandler(merges)
    logging.getLogger("lowbit.calibration.sharded").setLevel(logging.INFO)
    return merges


def calibrate(model: Path, data: Path, options: dict[str, object]) -> CalibrationTable:
    return lowbit.calibrate(model, data, method="auto", check_samples=0, progress=False,
                            **options)  # type: ignore[arg-type]


def ray_startup() -> float:
    """Seconds to start and stop a local Ray cluster of this machine's cores."""
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=cores(), include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    ray.shutdown()
    return time.perf_counter() - started


def state_bytes(model: Path, data: np.ndarray) -> int:
    """Bytes of one shard's pickled calibration state (8 samples; it does not grow with
    the samples: tensors x occupied bins)."""
    import onnx

    from lowbit.passes import canonicalize

    canonical, _ = canonicalize(onnx.load(str(model)))
    run = CalibrationRun(canonical, CalibrationSettings(method="auto"), input_means=True,
                         channel_ranges=True)
    state = run.observe({"input": data[i:i + 1]} for i in range(8))
    return len(pickle.dumps(state))


@dataclass
class RankTimes:
    """The qtable ranking's wall times per configuration, and how far the rankings differ."""

    times: dict[str, list[float]]
    cpu: dict[str, list[float]]
    ops: int
    sqnr_diff: float

    def lines(self, args: argparse.Namespace) -> list[str]:
        base = statistics.median(self.times[BASELINE])
        out = [(f"qtable sensitivity ranking of the same model ({self.ops} candidate ops, "
               f"{args.rank_samples} samples, `lowbit.qtable` without a target), median of "
               f"{args.repeats} interleaved repeats. Every run ranked the ops in the same "
               f"order; the largest SQNR difference between runs was "
               f"{self.sqnr_diff:.2g} dB."), "",
               "| configuration | median s | vs 1 process x 2 threads | CPU s (median) |",
               "|---|---|---|---|"]
        for name, seconds in self.times.items():
            median = statistics.median(seconds)
            used = "-" if "Ray" in name else f"{statistics.median(self.cpu[name]):.1f}"
            out.append(f"| {name} | {median:.2f} | {base / median:.2f}x | {used} |")
        return out


def rank_times(model: Path, data: Path, configs: dict[str, dict[str, object]],
               args: argparse.Namespace) -> RankTimes:
    table = model.with_suffix(".calib")
    lowbit.calibrate(model, data, method="minmax", num=32, check_samples=0, output=table,
                     progress=False)
    times: dict[str, list[float]] = {name: [] for name in configs}
    cpu: dict[str, list[float]] = {name: [] for name in configs}
    first: list[tuple[str, float]] | None = None
    worst = 0.0
    for _ in range(args.repeats):
        for name, options in configs.items():
            started, used = time.perf_counter(), cpu_seconds()
            result = lowbit.qtable(model, data, calibration_table=table,
                                   output=model.with_suffix(".qtable"), num=args.rank_samples,
                                   **options)  # type: ignore[arg-type]
            times[name].append(time.perf_counter() - started)
            cpu[name].append(cpu_seconds() - used)
            assert result.sensitivity is not None
            rows = [(row.name, row.sqnr_db) for row in result.sensitivity.rows]
            if first is None:
                first = rows
            elif [n for n, _ in rows] != [n for n, _ in first]:
                raise SystemExit(f"{name}: the ranking differs from the first run's")
            else:
                worst = max([worst] + [abs(a[1] - b[1]) for a, b in zip(rows, first,
                                                                         strict=True)])
    return RankTimes(times, cpu, len(first or []), worst)


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (pool workers; not Ray's, which
    the raylet starts)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn: Callable[[], CalibrationTable]) -> tuple[float, float, CalibrationTable]:
    """Wall seconds, CPU seconds and the result of ``fn()``."""
    started, cpu = time.perf_counter(), cpu_seconds()
    table = fn()
    return time.perf_counter() - started, cpu_seconds() - cpu, table


def eval_part(tmp: Path, configs: dict[str, dict[str, object]], startup: list[float],
              args: argparse.Namespace) -> list[str]:
    """The evaluation rows, their constants and the projection (bench/parallel_eval.py)."""
    started = time.perf_counter()
    folder = image_folder(tmp / "images", args.eval_images, args.eval_size)
    print(f"wrote {args.eval_images} PNGs in {time.perf_counter() - started:.0f} s",
          flush=True)
    model = model_at(args.eval_size, tmp / f"mobilenet_v2_{args.eval_size}.onnx")
    rows, metrics = eval_rows(model, folder, configs, args.eval_repeats)
    constants = measure_constants(model, folder, 2,
                                  statistics.median(startup) if startup else 0.0)
    return eval_lines(rows, metrics, constants, BASELINE, args.eval_size, args.eval_repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rank-samples", type=int, default=8,
                        help="samples of the qtable ranking (0: leave it out)")
    parser.add_argument("--eval-images", type=int, default=10000,
                        help="images of the evaluation part (0: leave it out)")
    parser.add_argument("--eval-size", type=int, default=112,
                        help="height and width of those images and of the model's input")
    parser.add_argument("--eval-repeats", type=int, default=2,
                        help="interleaved repeats of the evaluation part")
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray rows")
    parser.add_argument("--markdown", type=Path, help="write the markdown here too")
    args = parser.parse_args()
    configs = available_configs(args.no_ray)
    merges = watch_merges()
    times: dict[str, list[float]] = {name: [] for name in configs}
    cpu: dict[str, list[float]] = {name: [] for name in configs}
    merge_of: dict[str, list[float]] = {name: [] for name in configs}
    with tempfile.TemporaryDirectory(prefix="bench_parallel_") as tmp:
        model = save(mobilenet_v2(), Path(tmp) / "mobilenet_v2.onnx")
        crops = photo_crops(args.samples, seed=0)
        data = Path(tmp) / "calib.npz"
        np.savez(data, input=crops)
        first: CalibrationTable | None = None
        for _ in range(args.repeats):
            for name, options in configs.items():
                merges.seconds.clear()
                seconds, used, table = timed(lambda o=options: calibrate(model, data, o))
                times[name].append(seconds)
                cpu[name].append(used)
                merge_of[name].extend(merges.seconds)
                if first is None:
                    first = table
                elif table.ranges != first.ranges:
                    raise SystemExit(f"{name}: the table differs from the first run's")
        startup = [ray_startup() for _ in range(args.repeats)] if not args.no_ray else []
        sent = state_bytes(model, crops)
        ranking = rank_times(model, data, configs, args) if args.rank_samples else None
        evaluation = eval_part(Path(tmp), configs, startup, args) if args.eval_images else []

    base = statistics.median(times[BASELINE])
    lines = [header(), "", "### Calibration", "",
             (f"MobileNetV2 (bench/models.py, random weights), {args.samples} real photo "
             f"crops (224x224), `lowbit.calibrate` method auto without the output check; "
             f"median of {args.repeats} interleaved repeats on a {cores()}-core machine "
             f"(load average {LOAD_AT_START:.1f} when the run began; where other jobs keep "
             "the cores busy, a configuration with more processes also takes a larger "
             "share of them). Every run's table was identical, bit for bit. CPU s: this "
             "process and its pool workers (Ray's workers are not counted)."), "",
             ("| configuration | median s | samples/s | vs 1 process x 2 threads | "
              "CPU s (median) | merge s (median) |"),
             "|---|---|---|---|---|---|"]
    for name, options in configs.items():
        median = statistics.median(times[name])
        merge = f"{statistics.median(merge_of[name]):.4f}" if merge_of[name] else "-"
        used = "-" if "cluster" in options else f"{statistics.median(cpu[name]):.1f}"
        lines.append(f"| {name} | {median:.2f} | {args.samples / median:.1f} | "
                     f"{base / median:.2f}x | {used} | {merge} |")
    lines.append("")
    if startup:
        ray_median = statistics.median(times["Ray local, 2 workers x 1 thread"])
        share = statistics.median(startup) / ray_median
        lines.append(f"Ray start-up and shutdown alone: {statistics.median(startup):.2f} s "
                     f"(median), {share:.0%} of the Ray run.")
    lines.append(f"One shard's state as a worker sends it back: {sent / 1024:.0f} KiB "
                 "(pickled; tensors x occupied histogram bins, not samples).")
    if ranking is not None:
        lines += ["", "### qtable ranking", "", *ranking.lines(args)]
    if evaluation:
        lines += ["", "### Evaluation", "", *evaluation]
    emit(lines, args.markdown)


if __name__ == "__main__":
    main()
