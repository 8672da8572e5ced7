"""bench/parallel.py's evaluation part: `lowbit.evaluate` of an image folder streamed from
disk on 1 process x 2 threads, 2 processes x 1 thread and Ray (local, 2 workers), its
measured constants (per-shard time, bytes a worker sends back, merge time, start-up) and
a projection to 8, 64 and 512 cores from them.

    rows = eval_rows(model, folder, options, CONFIGS, repeats=1)
    constants = measure_constants(model, folder, options, total)
    lines = eval_lines(rows, constants, ...)

The images are PNG crops of the REPORT photos (bench/splits.py), one folder per photo
(the labels: the folder), written once into a temporary folder at ``size`` x ``size``;
the model is MobileNetV2 (bench/models.py, random weights) with its input at that size.
Peak RSS is sampled (psutil, every 0.2 s) for this process and each process below it:
pool workers and Ray's task workers count as workers, the other processes apart.
"""

from __future__ import annotations

import math
import pickle
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path

import numpy as np
import onnx
import psutil
from PIL import Image

import lowbit
from lowbit.analysis.eval_shards import EvalJob, Scored, score_shard
from lowbit.analysis.eval_sums import EvalSums, MetricSet
from lowbit.analysis.labels import load_labels
from lowbit.data import ImageOptions
from lowbit.data.refs import DatasetRef
from lowbit.io.model import input_specs
from lowbit.parallel import PoolExecutor, Shard, new_key
from lowbit.parallel.executors import SHARDS_PER_WORKER
from models import _random_crop, mobilenet_v2
from splits import REPORT, load_image

IMAGENET = ImageOptions(mean=(123.675, 116.28, 103.53), scale=(0.0171, 0.0175, 0.0174))
METRICS = ("top1", "top5")
MIB = 1 << 20


def image_folder(root: Path, count: int, size: int, seed: int = 0) -> Path:
    """``count`` PNG crops of the REPORT photos at ``size`` x ``size``, one folder per photo."""
    rng = np.random.default_rng(seed)
    photos = {name: load_image(name) for name in REPORT.photos}
    names = list(photos)
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        name = names[int(rng.integers(len(names)))]
        crop = Image.fromarray(_random_crop(photos[name], rng))
        crop.resize((size, size), Image.Resampling.BILINEAR).save(
            root / name / f"{index:05d}.png", compress_level=1)
    return root


def model_at(size: int, path: Path) -> Path:
    """MobileNetV2 whose input is N x 3 x ``size`` x ``size`` (global pooling: any size)."""
    model = mobilenet_v2()
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = size, size
    onnx.save(model, str(path))
    return path


@dataclass
class RssPeaks:
    """Peak RSS (bytes) of this process, of each worker process, and of Ray's others."""

    driver: int = 0
    workers: dict[int, int] = field(default_factory=dict)
    others: dict[int, int] = field(default_factory=dict)


def _is_worker(process: psutil.Process) -> bool:
    name = process.name()
    if name.startswith("ray::"):
        return True
    try:
        return any("spawn_main" in part for part in process.cmdline())
    except (psutil.Error, OSError):
        return False


@contextmanager
def watch_rss(interval: float = 0.2) -> Iterator[RssPeaks]:
    """Samples the RSS of this process and its descendants until the block ends."""
    peaks, stop = RssPeaks(), threading.Event()
    me = psutil.Process()

    def sample() -> None:
        while not stop.is_set():
            peaks.driver = max(peaks.driver, me.memory_info().rss)
            for child in me.children(recursive=True):
                try:
                    rss = child.memory_info().rss
                    where = peaks.workers if _is_worker(child) else peaks.others
                    where[child.pid] = max(where.get(child.pid, 0), rss)
                except psutil.Error:
                    continue
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peaks
    finally:
        stop.set()
        thread.join()


@dataclass
class EvalRow:
    """One configuration's wall times and memory over the repeats."""

    seconds: list[float] = field(default_factory=list)
    driver_mib: list[float] = field(default_factory=list)
    worker_mib: list[float] = field(default_factory=list)
    others_mib: list[float] = field(default_factory=list)


def eval_rows(model: Path, folder: Path, configs: dict[str, dict[str, object]],
              repeats: int) -> tuple[dict[str, EvalRow], dict[str, float]]:
    """Each configuration's runs, interleaved; the metrics (equal in every run: checked)."""
    rows = {name: EvalRow() for name in configs}
    first: dict[str, float] | None = None
    for _ in range(repeats):
        for name, options in configs.items():
            with watch_rss() as peaks:
                started = time.perf_counter()
                report = lowbit.evaluate(model, folder, metrics=METRICS,
                                         image_options=IMAGENET,
                                         **options)  # type: ignore[arg-type]
                rows[name].seconds.append(time.perf_counter() - started)
            rows[name].driver_mib.append(peaks.driver / MIB)
            rows[name].worker_mib.append(max(peaks.workers.values(), default=0) / MIB)
            rows[name].others_mib.append(sum(peaks.others.values()) / MIB)
            metrics = report.results[0].metrics
            if first is None:
                first = metrics
            elif any(abs(metrics[k] - first[k]) > 1e-9 for k in first):
                raise SystemExit(f"{name}: metrics {metrics} differ from the first run's "
                                 f"{first}")
    return rows, first or {}


@dataclass(frozen=True)
class Constants:
    """What the projection is built from, each measured here."""

    total: int
    serial: float  # driver: load the model, list the folder, read the labels (s)
    sample: float  # one image through one worker with 1 thread, decoding included (s)
    shard: float  # one shard of ``shard_size`` images on 1 thread (s)
    shard_size: int
    returned: int  # bytes one shard's sums pickle to (what a worker sends back)
    merge: float  # one merge of two shards' sums (s)
    pool_start: float  # a pool of 2 workers: spawn, import, open the session (s)
    session: float  # a worker opening the model's session, on a cluster already running (s)
    ray_start: float  # a local Ray cluster: init + shutdown (s); 0 where none


def measure_constants(model: Path, folder: Path, workers: int,
                      ray_start: float) -> Constants:
    """Per-shard time, returned bytes, merge time and start-up, measured one at a time."""
    started = time.perf_counter()
    specs = input_specs(onnx.load(str(model)))
    ref = DatasetRef(str(folder), image_options=IMAGENET)
    data = ref.open(specs)
    total = len(data)
    load_labels(None, folder, total, sample_paths=data.paths)  # type: ignore[attr-defined]
    serial = time.perf_counter() - started
    job = EvalJob(new_key(), ref, total, (Scored(str(model), "logits"),),
                  MetricSet(METRICS), threads=1)
    size = max(1, min(total, -(-total // (workers * SHARDS_PER_WORKER))))
    started = time.perf_counter()
    score_shard(job, Shard(0, 0, min(8, total)), _ignore)  # opens the session
    first = time.perf_counter() - started
    started = time.perf_counter()
    sums = score_shard(job, Shard(1, 0, size), _ignore)
    shard = time.perf_counter() - started
    returned = len(pickle.dumps(sums))
    copies = [pickle.loads(pickle.dumps(sums)) for _ in range(1000)]
    started = time.perf_counter()
    reduce(EvalSums.merge, copies)
    merge = (time.perf_counter() - started) / (len(copies) - 1)
    started = time.perf_counter()
    with PoolExecutor(2, threads=1) as executor:
        executor.run(score_shard, job, [Shard(0, 0, 0), Shard(1, 0, 0)], label="start",
                     progress=False)
    pool_start = time.perf_counter() - started
    session = max(0.0, first - min(8, total) * shard / size)
    return Constants(total, serial, shard / size, shard, size, returned, merge, pool_start,
                     session, ray_start)


def _ignore(_: int) -> None:
    """No progress bar."""


def projected(c: Constants, cores: int, start: float) -> float:
    """T(n) = start + serial + work / n + merges (n·4 shards, one after another in the
    driver), with work = images x seconds per image on one core."""
    shards = cores * SHARDS_PER_WORKER
    return start + c.serial + c.total * c.sample / cores + shards * c.merge


def projection_lines(c: Constants, measured: dict[str, float]) -> list[str]:
    """The model, checked against the measured 2-worker rows, and the table for 8-512."""
    work = c.total * c.sample
    lines = [("Projection from these constants (a model, not a measurement): "
             "T(n) = start + serial + W/n + 4n·merge, with W = images x seconds per image on "
             f"one core = {c.total} x {c.sample * 1000:.1f} ms = {work:.0f} core-s, serial "
             f"(driver: model, folder listing, labels) = {c.serial:.2f} s, merge = "
             f"{c.merge * 1e6:.1f} µs per shard, start = the pool's start "
             f"({c.pool_start:.1f} s for 2 workers: spawn, import, session; taken as the same "
             f"at any n, workers starting in parallel) or, on a Ray cluster already running, "
             f"a worker opening its session ({c.session:.2f} s; a local Ray's own start "
             f"is {c.ray_start:.1f} s more). Each worker sends back "
             f"{c.returned} bytes per shard, {4 * 512 * c.returned / 1024:.0f} KiB in all at "
             "512 workers: the network is no limit. It assumes every core as fast as one "
             "here and the images readable by all at the rate they are used "
             f"({c.total} PNGs)."), ""]
    lines += [("| cores n | T(n) pool-like start (s) | speed-up vs 1 core | efficiency | "
              "T(n) Ray already running (s) | work per core (s) |"), "|---|---|---|---|---|---|"]
    one = projected(c, 1, 0.0)
    for n in (1, 2, 8, 64, 512):
        pool = projected(c, n, c.pool_start if n > 1 else 0.0)
        running = projected(c, n, c.session if n > 1 else 0.0)
        lines.append(f"| {n} | {pool:.1f} | {one / pool:.1f}x | {one / pool / n:.0%} | "
                     f"{running:.1f} | {work / n:.1f} |")
    fixed = c.pool_start + c.serial
    knee = work / fixed
    lines += ["", "Measured on 2 workers for comparison: " + ", ".join(
        f"{name} {seconds:.1f} s" for name, seconds in measured.items()) + ".",
        (f"Where it stops scaling: the fixed part (start + serial = {fixed:.1f} s) equals the "
        f"work per core W/n at n = W / (start + serial) = {knee:.0f} core(s); past that, "
        "doubling the cores saves less than a quarter of the time (efficiency < 50 %), and "
        f"the 4n shards of {c.total} images are {c.total / (4 * 512):.1f} images each at 512 "
        "cores. The merge never matters "
        f"({4 * 512 * c.merge * 1000:.2f} ms at 512). Ray's local start "
        f"({c.ray_start:.1f} s) alone is worth "
        f"{c.ray_start / c.sample:.0f} images on one core.")]
    return lines


def eval_lines(rows: dict[str, EvalRow], metrics: dict[str, float], c: Constants,
               baseline: str, size: int, repeats: int) -> list[str]:
    """The measured table, the overheads and the projection, as markdown."""
    base = statistics.median(rows[baseline].seconds)
    lines = [(f"`lowbit.evaluate` (top1, top5) of MobileNetV2 (random weights, input "
             f"{size}x{size}) on {c.total} PNG crops of the REPORT photos streamed from disk "
             f"(an image folder, labels from its 7 photo folders), median of {repeats} "
             "interleaved run(s); every run's metrics were equal "
             f"(top1 {metrics.get('top1', math.nan):.2f} %). Peak RSS sampled every 0.2 s: "
             "this process; the largest worker process (pool workers, Ray's task workers); "
             "the other processes below it together (Ray's raylet, GCS, ...; "
             "multiprocessing's resource tracker). This process's RSS includes what the "
             "calibration and ranking parts before left in it."), "",
             ("| configuration | median s | images/s | speed vs 1 process | peak RSS this "
              "process MiB | peak RSS per worker MiB | other processes MiB |"),
             "|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        median = statistics.median(row.seconds)
        worker = statistics.median(row.worker_mib)
        others = statistics.median(row.others_mib)
        lines.append(f"| {name} | {median:.1f} | {c.total / median:.1f} | "
                     f"{base / median:.2f}x | {statistics.median(row.driver_mib):.0f} | "
                     f"{'-' if worker == 0 else f'{worker:.0f}'} | "
                     f"{'-' if others == 0 else f'{others:.0f}'} |")
    ray = [statistics.median(r.seconds) for n, r in rows.items() if "Ray" in n]
    ray_share = f"{c.ray_start / ray[0]:.0%}" if ray and c.ray_start else "-"
    lines += ["", ("Constants, each measured alone: one shard (a quarter of a worker's images, "
                   "as the executors cut them) on one thread, the bytes its running sums "
                   "pickle to (what a worker sends back: counts, not outputs), one merge of "
                   "two shards' sums, the driver's serial part (model, folder listing, "
                   "labels), a pool of 2 workers' start (spawn, import, session) and a local "
                   "Ray's start-up and shutdown, also as a share of the Ray run above."), "",
              ("| shard images | shard s | ms per image | bytes sent back per shard | "
               "merge µs | serial s | pool start s | Ray start s | Ray start share |"),
              "|---|---|---|---|---|---|---|---|---|",
              (f"| {c.shard_size} | {c.shard:.2f} | {c.sample * 1000:.1f} | {c.returned} | "
               f"{c.merge * 1e6:.1f} | {c.serial:.2f} | {c.pool_start:.1f} | "
               f"{c.ray_start:.1f} | {ray_share} |")]
    measured = {name: statistics.median(row.seconds) for name, row in rows.items()}
    return lines + [""] + projection_lines(c, measured)
