"""How many workers a stage runs on, and where: checked once, then opened as an executor.

    parallel = Parallelism.checked(workers=None, cluster=None)    # the default: this process
    with open_executor(parallel, threads=None, samples=1000) as executor: ...

``workers`` None keeps a local stage in this process, with ONNX Runtime's own threads on
every core: measured with bench/parallel.py and bench/parallel_calibration.py
(BENCHMARKS.md), calibration of up to a few hundred samples and eval ran no faster on 2
processes with 1 thread each (which pay a process start, a session and a copy of the
model per worker) than on one process with 2 threads. qtable's ranking is the exception
(ranking_workers): its candidate builds are Python work, one core per process. ``workers`` N > 1 runs N spawned
processes with cores / N engine threads each. ``cluster`` "local" starts Ray on this
machine, "ray" joins the cluster RAY_ADDRESS names; there ``workers`` None means one
worker per CPU of the cluster (per ``threads`` CPUs when threads are given).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import onnx

from lowbit import arguments
from lowbit.parallel.executors import Executor, InlineExecutor, PoolExecutor

CLUSTERS = ("ray", "local")
MAX_WORKERS = 4096
DEFAULT_WORKERS = 1  # locally: this process, all cores to ONNX Runtime (see the module doc)


@dataclass(frozen=True)
class Parallelism:
    """``workers`` (None: the default) and ``cluster`` (None, "ray", "local")."""

    workers: int | None = None
    cluster: str | None = None

    @classmethod
    def checked(cls, workers: object = None, cluster: object = None) -> Parallelism:
        """The keywords checked up front: {workers} >= 1, {cluster} one of CLUSTERS and
        Ray importable for it (else one line saying how to install the extra)."""
        count = arguments.optional_count(workers, "workers", maximum=MAX_WORKERS)
        where = None if cluster is None else arguments.choice(cluster, CLUSTERS, "cluster")
        if where is not None:
            from lowbit.parallel.ray_executor import import_ray

            import_ray()
        return cls(count, where)


# qtable's ranking builds one INT8 model per candidate op, in Python (about 0.15 s each on
# EfficientNet-Lite0), and runs only a suffix of it: work one process runs on one core
# whatever ONNX Runtime's threads. bench/parallel.py (MobileNetV2, 64 candidates, 4
# samples): two processes ranked 1.64x as fast as one on a quiet 2-core machine, 0.94x on
# one whose cores other jobs kept busy; a pool's start costs about 1.8 s. So the ranking
# takes one worker per core where the builds are many and not tiny.
RANKING_POOL_OPS = 16  # Conv, ConvTranspose, Gemm and MatMul nodes
RANKING_POOL_WEIGHT_BYTES = 1 << 20


def ranking_workers(model: onnx.ModelProto) -> int:
    """The qtable ranking's default worker count: one per core for a model with at least
    RANKING_POOL_OPS weighted ops and RANKING_POOL_WEIGHT_BYTES of float weights, else 1."""
    available = cores()
    weighted = sum(n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")
                   for n in model.graph.node)
    weights = sum(len(t.raw_data) or 4 * len(t.float_data) for t in model.graph.initializer
                  if t.data_type == onnx.TensorProto.FLOAT)
    if available < 2 or weighted < RANKING_POOL_OPS or weights < RANKING_POOL_WEIGHT_BYTES:
        return 1
    return available


def cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def open_executor(parallel: Parallelism, *, threads: int | None,
                  samples: int | None = None) -> Executor:
    """The executor for ``parallel``: Ray when a cluster is named, a process pool for more
    than one worker, else this process. ``threads`` (engine threads per worker) defaults
    to the cores over the workers on this machine, ORT's own default inline. ``samples``
    (the stage's, where its shards are samples) caps the workers: one sample each at
    least."""
    if parallel.cluster is not None:
        from lowbit.parallel.ray_executor import RayExecutor

        if parallel.cluster == "local" and threads is None:
            workers = parallel.workers or cores()
            threads = max(1, cores() // workers)
        return RayExecutor.start(parallel.cluster, parallel.workers, threads)
    workers = parallel.workers or DEFAULT_WORKERS
    workers = max(1, workers if samples is None else min(workers, samples))
    if workers == 1:
        return InlineExecutor(threads)
    return PoolExecutor(workers, threads or max(1, cores() // workers))
