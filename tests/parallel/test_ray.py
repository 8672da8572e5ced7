"""Calibration on Ray: a local multi-node cluster (ray.cluster_utils.Cluster) whose
worker process is killed mid-run, and the errors of --cluster. Ray takes several
seconds to start, so one test starts it; the others need no cluster."""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lowbit.analysis.eval_shards import merge_sums, score_shard
from lowbit.calibration import CalibrationSettings
from lowbit.calibration.collect import finish_table
from lowbit.calibration.sharded import calibration_job, merge_states
from lowbit.data.refs import DatasetRef
from lowbit.errors import ArgumentError
from lowbit.parallel import Parallelism, split_samples
from lowbit.parallel.ray_executor import RayExecutor, check_answers, cluster_address
from tests.parallel.shard_models import SAMPLES, DyingJob, conv_model, die_once, samples
from tests.parallel.test_sharded_calibration import assert_same_table, single_process
from tests.parallel.test_sharded_eval import eval_job, oracle, write_files


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    from ray.cluster_utils import Cluster

    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()
    for signum, handler in handlers.items():  # ray.init leaves its SIGTERM handler behind
        signal.signal(signum, handler)


def test_a_killed_ray_worker_has_its_task_run_again(ray_cluster: Any, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Two nodes of one CPU each; shard 2's worker process dies the first time; Ray runs
    the task again and the merged table equals the single-process one."""
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster.address)
    data = tmp_path / "calib.npz"
    np.savez(data, x=samples())
    marker = tmp_path / "died"
    with RayExecutor.start("ray", workers=2, threads=1) as executor:
        assert executor.workers == 2 and not executor.owned  # joined, not started
        job = calibration_job(conv_model(), DatasetRef(str(data)),
                              CalibrationSettings(method="percentile"), executor,
                              input_means=True, channel_ranges=True)
        states = executor.run(die_once, DyingJob(job, str(marker), shard=2),
                              split_samples(SAMPLES, 3), label="calibrating", progress=False)
    assert marker.exists()
    assert_same_table(finish_table(merge_states(states)), single_process(data, "percentile"))


def test_evaluation_shards_on_ray_merge_to_the_metrics_of_one_process(
        ray_cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """lowbit eval's running sums as Ray tasks on the two nodes: the one-process metrics."""
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster.address)
    files = write_files(tmp_path)
    want, agreement = oracle(files, images=False)
    job = eval_job(files, images=False)
    with RayExecutor.start("ray", workers=2, threads=1) as executor:
        sums = merge_sums(executor.run(score_shard, job, split_samples(SAMPLES, 3),
                                       label="evaluating", progress=False))
    for index in range(2):
        assert sums.models[index].samples == SAMPLES
        for name, value in want[index].items():
            assert sums.metrics(index, job.wanted)[name] == pytest.approx(value, rel=1e-9)
    assert sums.agreement_percent() == pytest.approx(agreement)


def test_cluster_ray_needs_ray_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ArgumentError, match="set RAY_ADDRESS"):
        cluster_address()


def test_a_cluster_that_does_not_answer_is_named() -> None:
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(ArgumentError, match=rf"127\.0\.0\.1:{port} \(RAY_ADDRESS\) does not "
                                            r"answer within 1 s"):
        check_answers(f"127.0.0.1:{port}", timeout=1.0)


def test_without_ray_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch
                                                      ) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ArgumentError, match=r"cluster needs Ray.*\.\[ray\]"):
        Parallelism.checked(workers=2, cluster="local")

