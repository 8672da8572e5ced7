"""Running a data-set stage as shards on an executor, and merging the partial states.

    parallel = Parallelism.checked(workers=2, cluster=None)       # {workers}, {cluster} checked
    with open_executor(parallel, threads=None, samples=1000) as executor:
        shards = split_samples(1000, executor.parts)             # ranges of sample indices
        states = executor.run(observe_shard, job, shards, label="calibrating", progress=True)
    merged = functools.reduce(State.merge, states)               # exact: as one process

Three executors share one code path (lowbit.parallel.executors): this process (one
worker), a local pool of spawned processes (``workers`` N), and Ray (``cluster``
"local" starts one here, "ray" joins the one RAY_ADDRESS names; the ``ray`` extra).
The model and the data set go to the workers by reference (a shared blob, a path),
never as pickled samples; a worker returns a small partial state whose ``merge`` is
exact. Built on this: calibration (lowbit.calibration.sharded), the qtable sensitivity
ranking (lowbit.quantize.mixed.sharded), evaluation (lowbit.analysis.eval_shards: metrics
as running sums), layer compare (lowbit.analysis.compare_shards) and GPTQ's input
statistics (lowbit.quantize.w4.hessian_shards: sums of XᵀX).
"""

from lowbit.parallel.executors import (
    Advance,
    Executor,
    InlineExecutor,
    ParallelError,
    PoolExecutor,
    Shared,
    new_key,
    worker_cache,
)
from lowbit.parallel.plan import CLUSTERS, DEFAULT_WORKERS, Parallelism, open_executor
from lowbit.parallel.shards import Shard, shards_from_bounds, split_samples

__all__ = [
    "CLUSTERS",
    "DEFAULT_WORKERS",
    "Advance",
    "Executor",
    "InlineExecutor",
    "ParallelError",
    "Parallelism",
    "PoolExecutor",
    "Shard",
    "Shared",
    "new_key",
    "open_executor",
    "shards_from_bounds",
    "split_samples",
    "worker_cache",
]
