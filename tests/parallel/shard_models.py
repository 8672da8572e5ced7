"""A tiny model, a data set and a job that kills its worker once: for the parallel tests.

The module is imported by name in spawned processes and Ray workers (the job's function),
so it holds only module-level definitions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from lowbit.calibration.collect import CalibrationState
from lowbit.calibration.sharded import CalibrationJob, observe_shard
from lowbit.parallel import Advance, Shard
from tests.models import init, make_model

SAMPLES = 21
# shard bounds over the SAMPLES samples: even, uneven, one of a single sample
SPLITS = {
    "1 shard": [0, SAMPLES],
    "2 shards": [0, 8, SAMPLES],
    "2 uneven shards": [0, 13, SAMPLES],
    "3 uneven shards, one of 1 sample": [0, 5, 6, SAMPLES],
    "3 shards": [0, 7, 14, SAMPLES],
}


def conv_model() -> onnx.ModelProto:
    """x[N,3,32,32] -> Conv(16) -> Relu -> Conv(8) -> GAP -> Flatten -> MatMul -> Gemm -> y.

    The first Conv's output has 16,384 values per sample, more than the 8,192 a histogram
    method sees of it (collect.SUBSAMPLE_PER_SAMPLE): the subsample stride is 2. The Convs
    and the Gemm have input means, the MatMul and Gemm inputs channel ranges."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1], name="conv0"),
             helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
             helper.make_node("Conv", ["r0", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("GlobalAveragePool", ["c1"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
             helper.make_node("MatMul", ["f", "mw"], ["m"], name="matmul"),
             helper.make_node("Gemm", ["m", "fw", "fb"], ["y"], transB=1, name="fc")]
    inits = [init("w0", (rng.normal(size=(16, 3, 3, 3)) * 0.3).astype(np.float32)),
             init("b0", rng.normal(size=16).astype(np.float32)),
             init("w1", (rng.normal(size=(8, 16, 3, 3)) * 0.1).astype(np.float32)),
             init("mw", rng.normal(size=(8, 12)).astype(np.float32)),
             init("fw", rng.normal(size=(10, 12)).astype(np.float32)),
             init("fb", rng.normal(size=10).astype(np.float32))]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                            ["N", 3, 32, 32])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)


def samples(count: int = SAMPLES) -> np.ndarray:
    """Samples whose scale grows along the set: later shards see larger ranges, so the
    histogram's range doubles mid-run in one process and differs between shards."""
    rng = np.random.default_rng(1)
    scale = np.linspace(0.5, 3.0, count, dtype=np.float32)[:, None, None, None]
    return (rng.normal(size=(count, 3, 32, 32)).astype(np.float32) * scale)


@dataclass(frozen=True)
class DyingJob:
    """A calibration job whose shard ``shard`` kills its worker process the first time
    it runs (``marker`` records that it did)."""

    inner: CalibrationJob
    marker: str
    shard: int


def die_once(job: DyingJob, shard: Shard, advance: Advance) -> CalibrationState:
    marker = Path(job.marker)
    if shard.index == job.shard and not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(1)  # the worker process dies mid-run, without cleaning up
    return observe_shard(job.inner, shard, advance)
