"""--memory-budget on every command that runs a model over a data set: a bad size is one
line and exit 2 with nothing written; a good one is passed through and used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import lowbit
from lowbit.calibration.table import read_table
from lowbit.cli.main import main
from tests.models import small_resnet


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("budget")
    onnx.save(small_resnet(), root / "model.onnx")
    x = np.random.default_rng(0).normal(size=(6, 3, 16, 16)).astype(np.float32)
    np.savez(root / "data.npz", input=x)
    np.savez(root / "labels.npz", label=np.arange(6) % 10)
    lowbit.calibrate(root / "model.onnx", root / "data.npz", output=root / "model.calib",
                     progress=False, check_samples=0)
    lowbit.deploy(root / "model.onnx", output=root / "model.int8.onnx",
                  calibration_table=root / "model.calib")
    return root


def _commands(root: Path, out: Path) -> dict[str, list[str]]:
    model, data = str(root / "model.onnx"), str(root / "data.npz")
    return {
        "calibrate": ["calibrate", model, "--data", data, "-o", str(out / "t.calib")],
        "deploy": ["deploy", model, "--calibration-table", str(root / "model.calib"),
                   "-o", str(out / "m.onnx")],
        "compare": ["compare", model, str(root / "model.int8.onnx"), "--data", data,
                    "--csv", str(out / "layers.csv")],
        "eval": ["eval", model, "--data", data, "--metric", "cos", "--reference", model],
        "report": ["report", model, str(root / "model.int8.onnx"), "--data", data,
                   "-o", str(out / "report"), "--repeats", "1"],
        "qtable": ["qtable", model, "--data", data, "--calibration-table",
                   str(root / "model.calib"), "-o", str(out / "m.qtable")],
    }


@pytest.mark.parametrize("command", ["calibrate", "deploy", "compare", "eval", "report",
                                     "qtable"])
@pytest.mark.parametrize("size", ["lots", "0", "-2G", "12Q", "512K"])
def test_bad_sizes_exit_2_with_one_line_and_write_nothing(
        files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str,
        size: str) -> None:
    args = _commands(files, tmp_path)[command]
    code = main([*args, f"--memory-budget={size}"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "--memory-budget" in err and repr(size) in err
    assert list(tmp_path.iterdir()) == []


def test_a_budget_is_used(files: Path, tmp_path: Path) -> None:
    """The same table at any budget (minmax merges exactly); compare and eval run too."""
    commands = _commands(files, tmp_path)
    tables = []
    for size in ("1M", "2G"):
        out = tmp_path / f"{size}.calib"
        args = [*commands["calibrate"][:-1], str(out), "--method", "minmax", "--no-progress",
                "--memory-budget", size]
        assert main(args) == 0
        tables.append(read_table(out))
    assert tables[0].ranges == tables[1].ranges
    assert main([*commands["compare"], "--memory-budget", "1M", "--no-progress"]) in (0, 1)
    assert (tmp_path / "layers.csv").exists()
    assert main([*commands["eval"], "--memory-budget", "64M"]) == 0
    assert main([*commands["deploy"], "--memory-budget", "64M"]) in (0, 1)
