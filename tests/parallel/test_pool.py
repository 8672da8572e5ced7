"""Calibration on a local process pool (spawned workers): the same table as one process,
a killed worker's shard run again, errors that name the file and the worker.

Each test starts worker processes (about a second or two each), so they are few.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import lowbit
from lowbit.calibration import CalibrationSettings, read_table
from lowbit.calibration.collect import finish_table
from lowbit.calibration.sharded import calibration_job, merge_states
from lowbit.cli.main import main
from lowbit.data.refs import DatasetRef
from lowbit.errors import ArgumentError
from lowbit.parallel import PoolExecutor, split_samples
from tests.parallel.shard_models import SAMPLES, DyingJob, conv_model, die_once, samples
from tests.parallel.test_sharded_calibration import assert_same_table, single_process


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("pool")
    model = folder / "model.onnx"
    onnx.save(conv_model(), model)
    data = folder / "calib.npz"
    np.savez(data, x=samples())
    return model, data


def test_cli_workers_2_writes_the_table_of_one_process(files: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    model, data = files
    one, two = tmp_path / "one.calib", tmp_path / "two.calib"
    common = [str(model), "--data", str(data), "--method", "kl", "--check-samples", "0",
              "--no-progress"]
    assert main(["calibrate", *common, "-o", str(one)]) == 0
    assert main(["calibrate", *common, "-o", str(two), "--workers", "2"]) == 0
    assert_same_table(read_table(two), read_table(one))
    assert read_table(one).num_samples == SAMPLES


def test_a_killed_worker_has_its_shard_run_again(files: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    """Shard 1's worker dies (os._exit) the first time: the pool is started again, the
    shards not finished are submitted again, and the table is still the same."""
    _, data = files
    settings = CalibrationSettings(method="auto")
    marker = tmp_path / "died"
    with PoolExecutor(2, threads=1) as executor:
        job = calibration_job(conv_model(), DatasetRef(str(data)), settings, executor,
                              input_means=True, channel_ranges=True)
        states = executor.run(die_once, DyingJob(job, str(marker), shard=1),
                              split_samples(SAMPLES, 3), label="calibrating", progress=False)
    assert marker.exists()  # the worker did die
    assert_same_table(finish_table(merge_states(states)), single_process(data, "auto"))


def test_an_unreadable_sample_file_names_the_file_and_the_worker(
        files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder of .npy samples whose 18th file is not an array: the error names it and the
    worker process that read it; exit 2; no table written."""
    model, _ = files
    folder = tmp_path / "samples"
    folder.mkdir()
    for index, sample in enumerate(samples()):
        np.save(folder / f"{index:02d}.npy", sample[None])
    (folder / "17.npy").write_bytes(b"not an array")
    out = tmp_path / "t.calib"
    assert main(["calibrate", str(model), "--data", str(folder), "-o", str(out),
                 "--workers", "2", "--method", "minmax", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert re.search(r"17\.npy.*shard \d+ \(samples \d+\.\.\d+\), worker pid \d+", error)
    assert len(error.splitlines()) == 1
    assert not out.exists()


def test_workers_0_is_one_line_naming_the_option(files: tuple[Path, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    model, data = files
    out = tmp_path / "t.calib"
    assert main(["calibrate", str(model), "--data", str(data), "-o", str(out),
                 "--workers", "0"]) == 2
    assert "--workers must be from 1 to 4096; got 0" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(ArgumentError, match="workers must be from 1"):
        lowbit.calibrate(model, data, workers=0)


def test_a_script_without_a_main_guard_is_not_run_again_by_the_workers(
        files: tuple[Path, Path], tmp_path: Path) -> None:
    """Spawned workers import the caller's __main__; lowbit hides it while they start, so
    a plain script calling lowbit.calibrate(workers=2) runs once and its pool works."""
    model, data = files
    script = tmp_path / "plain.py"
    script.write_text("import sys\nimport lowbit\nprint('script ran')\n"
                      "t = lowbit.calibrate(sys.argv[1], sys.argv[2], method='minmax', "
                      "workers=2, check_samples=0, progress=False)\n"
                      "print('tensors', len(t.ranges))\n")
    done = subprocess.run([sys.executable, str(script), str(model), str(data)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["script ran", "tensors 6"]
