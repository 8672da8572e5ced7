"""Layer compare as shards of running sums, merged: the report of one process.

The test model is the shard models' conv net with its last Gemm's weights perturbed, so
the tensors before it are EQUAL and the ones after it differ (SIMILAR or FAILED); the
sharded runs (1, 2 and 3 shards, uneven ones, one of a single sample, and a memory
budget that splits the tensors into several passes per shard) must give every pair's
cosine, euclid and SQNR of one process up to float rounding, and its max error, shape
and status exactly. One test starts worker processes (through the CLI).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import lowbit
from lowbit.analysis import layerwise
from lowbit.analysis.compare_shards import (
    CompareJob,
    compare_layers_sharded,
    compare_shard,
    merge_comparers,
)
from lowbit.analysis.layerwise import LayerReport, compare_layers, layer_report
from lowbit.analysis.validate import Tolerance
from lowbit.cli.main import main
from lowbit.data import open_dataset
from lowbit.data.refs import DatasetRef
from lowbit.data.samples import SampleWindow
from lowbit.errors import ArgumentError
from lowbit.io.model import input_specs
from lowbit.parallel import InlineExecutor, new_key, shards_from_bounds
from lowbit.runtime.ort import create_session
from tests.parallel.shard_models import SAMPLES, SPLITS, conv_model, samples

TOLERANCE = Tolerance(0.99, 0.90)


def _perturbed() -> onnx.ModelProto:
    model = conv_model()
    for index, tensor in enumerate(model.graph.initializer):
        if tensor.name == "fw":
            weights = numpy_helper.to_array(tensor)
            noise = np.random.default_rng(5).normal(0, 0.3, weights.shape)
            model.graph.initializer[index].CopyFrom(
                numpy_helper.from_array((weights + noise).astype(np.float32), "fw"))
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("compare")
    paths = {"ref": folder / "ref.onnx", "test": folder / "test.onnx",
             "data": folder / "x.npz"}
    onnx.save(conv_model(), paths["ref"])
    onnx.save(_perturbed(), paths["test"])
    np.savez(paths["data"], x=samples())
    return paths


@pytest.fixture(scope="module")
def one_process(files: dict[str, Path]) -> LayerReport:
    data = open_dataset(files["data"], input_specs(conv_model()))
    return compare_layers(files["ref"], files["test"], SampleWindow(data, len(data)),
                          TOLERANCE, progress=False)


def assert_same_report(got: LayerReport, want: LayerReport) -> None:
    assert got.samples == want.samples == SAMPLES
    assert got.unpaired == want.unpaired
    assert [d.name for d in got.diffs] == [d.name for d in want.diffs]
    for a, b in zip(got.diffs, want.diffs, strict=True):
        assert (a.status, a.shape, a.max_abs_error, a.test_tensor) == \
            (b.status, b.shape, b.max_abs_error, b.test_tensor), a.name
        for name in ("cosine", "euclid", "sqnr_db"):
            assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-9), a.name


def test_the_test_model_differs_after_the_gemm_only(one_process: LayerReport) -> None:
    statuses = {d.name: d.status.value for d in one_process.diffs}
    assert statuses["m"] == "EQUAL" and statuses["y"] in ("SIMILAR", "FAILED")


@pytest.mark.parametrize("split", SPLITS)
def test_merged_shards_equal_one_process(files: dict[str, Path], one_process: LayerReport,
                                         split: str) -> None:
    with InlineExecutor() as executor:
        got = compare_layers_sharded(files["ref"], files["test"], DatasetRef(str(files["data"])),
                                     TOLERANCE, executor, progress=False,
                                     shards=shards_from_bounds(SPLITS[split]))
    assert_same_report(got, one_process)


def test_a_small_budget_runs_each_shard_in_several_passes(
        files: dict[str, Path], one_process: LayerReport,
        caplog: pytest.LogCaptureFixture) -> None:
    job = CompareJob(new_key(), str(files["ref"]), str(files["test"]),
                     DatasetRef(str(files["data"])), None, memory_budget=150_000)
    with InlineExecutor() as executor, caplog.at_level(logging.INFO):
        comparers = executor.run(compare_shard, job, shards_from_bounds(SPLITS["3 shards"]),
                                 label="compare", progress=False)
    assert "passes over the samples" in caplog.text
    assert_same_report(layer_report(merge_comparers(comparers), one_process.unpaired,
                                    TOLERANCE), one_process)


def test_a_worker_builds_its_sessions_once_per_job(
        files: dict[str, Path], one_process: LayerReport,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Three shards in one worker: one session per model, not one per model and shard
    (as calibration and eval keep theirs), and still the report of one process."""
    built: list[object] = []

    def counted(model: object, **options: object) -> object:
        built.append(model)
        return create_session(model, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(layerwise, "create_session", counted)
    with InlineExecutor() as executor:
        got = compare_layers_sharded(files["ref"], files["test"], DatasetRef(str(files["data"])),
                                     TOLERANCE, executor, progress=False,
                                     shards=shards_from_bounds(SPLITS["3 shards"]))
    assert len(built) == 2
    assert_same_report(got, one_process)


def test_cli_workers_2_prints_the_report_of_one_process(
        files: dict[str, Path], one_process: LayerReport,
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compare", str(files["ref"]), str(files["test"]), "--data",
                 str(files["data"]), "--workers", "2", "--json", "--no-progress"])
    assert code == (0 if one_process.passed else 1)
    got = json.loads(capsys.readouterr().out)
    by_name = {d.name: d for d in one_process.diffs}
    assert len(got["diffs"]) == len(one_process.diffs)
    for diff in got["diffs"]:
        want = by_name[diff["name"]]
        assert diff["status"] == want.status.value
        assert diff["cosine"] == pytest.approx(want.cosine, rel=1e-9)
        assert diff["max_abs_error"] == want.max_abs_error


def test_dump_with_workers_and_workers_0_are_one_line(
        files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["compare", str(files["ref"]), str(files["test"]), "--data", str(files["data"])]
    assert main([*common, "--workers", "0"]) == 2
    assert "--workers must be from 1 to 4096; got 0" in capsys.readouterr().err
    dump = tmp_path / "dump"
    assert main([*common, "--workers", "2", "--dump", str(dump)]) == 2
    error = capsys.readouterr().err
    assert "--dump writes every sample's tensors in order" in error
    assert len(error.strip().splitlines()) == 1
    assert not dump.exists()
    with pytest.raises(ArgumentError, match="workers must be from 1"):
        lowbit.compare(files["ref"], files["test"], files["data"], workers=0)
