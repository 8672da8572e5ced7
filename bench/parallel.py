"""Calibration on one process or several: 1 process x 2 threads vs 2 processes x 1 thread
vs Ray (local, 2 workers), side by side on the same model and samples.

    python bench/parallel.py                                  # MobileNetV2, 256 samples
    python bench/parallel.py --samples 128 --repeats 3 --markdown bench/results/parallel.md

Each configuration runs ``lowbit.calibrate`` (method auto, no output check, no table
written) on the same .npz of real photo crops (bench/models.py photo_crops), the
configurations interleaved, ``--repeats`` times; the table gives the median wall time
and its ratio to "1 process x 2 threads" (what lowbit did before --workers existed, and
its default). Every run's table must equal the first one's, bit for bit (checked here).
The overheads: merge time of the shards' states (lowbit.calibration.sharded logs it),
Ray's start-up (ray.init + shutdown of a local cluster, timed alone) as a share of the
Ray run, and the bytes one shard's state pickles to (what a worker sends back).
"""

from __future__ import annotations

import argparse
import logging
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
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
from provenance import header

CONFIGS: dict[str, dict[str, object]] = {
    "1 process x 2 threads": {"workers": 1},
    "2 processes x 1 thread": {"workers": 2},
    "Ray local, 2 workers x 1 thread": {"workers": 2, "cluster": "local"},
}
BASELINE = "1 process x 2 threads"


class MergeTimes(logging.Handler):
    """Collects the merge times lowbit.calibration.sharded logs."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seconds: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("merged") and isinstance(record.args, tuple):
            self.seconds.append(float(record.args[1]))


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


def timed(fn: Callable[[], CalibrationTable]) -> tuple[float, CalibrationTable]:
    started = time.perf_counter()
    table = fn()
    return time.perf_counter() - started, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray rows")
    parser.add_argument("--markdown", type=Path, help="write the markdown here too")
    args = parser.parse_args()
    try:
        import ray  # noqa: F401
    except ImportError:
        args.no_ray = True
    configs = {k: v for k, v in CONFIGS.items() if not (args.no_ray and "cluster" in v)}

    merges = MergeTimes()
    logging.getLogger("lowbit.calibration.sharded").addHandler(merges)
    logging.getLogger("lowbit.calibration.sharded").setLevel(logging.INFO)
    times: dict[str, list[float]] = {name: [] for name in configs}
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
                seconds, table = timed(lambda o=options: calibrate(model, data, o))
                times[name].append(seconds)
                merge_of[name].extend(merges.seconds)
                if first is None:
                    first = table
                elif table.ranges != first.ranges:
                    raise SystemExit(f"{name}: the table differs from the first run's")
        startup = [ray_startup() for _ in range(args.repeats)] if not args.no_ray else []
        sent = state_bytes(model, crops)

    base = statistics.median(times[BASELINE])
    lines = [header(), "",
             (f"MobileNetV2 (bench/models.py, random weights), {args.samples} real photo "
             f"crops (224x224), `lowbit.calibrate` method auto without the output check; "
             f"median of {args.repeats} interleaved repeats on a shared, loaded "
             f"{cores()}-core machine. Every run's table was identical, bit for bit."), "",
             ("| configuration | median s | samples/s | vs 1 process x 2 threads | "
             "merge s (median) |"),
             "|---|---|---|---|---|"]
    for name in configs:
        median = statistics.median(times[name])
        merge = f"{statistics.median(merge_of[name]):.4f}" if merge_of[name] else "-"
        lines.append(f"| {name} | {median:.2f} | {args.samples / median:.1f} | "
                     f"{base / median:.2f}x | {merge} |")
    lines.append("")
    if startup:
        ray_median = statistics.median(times["Ray local, 2 workers x 1 thread"])
        share = statistics.median(startup) / ray_median
        lines.append(f"Ray start-up and shutdown alone: {statistics.median(startup):.2f} s "
                     f"(median), {share:.0%} of the Ray run.")
    lines.append(f"One shard's state as a worker sends it back: {sent / 1024:.0f} KiB "
                 "(pickled; tensors x occupied histogram bins, not samples).")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
