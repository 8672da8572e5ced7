"""lowbit quantize: the whole flow in one command, validated on held-out samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import lowbit
from lowbit.recipe.provenance import read_provenance
from tests.cli.test_flow import run_cli
from tests.models import small_resnet


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("quantize")
    onnx.save(small_resnet(), root / "model.onnx")
    rng = np.random.default_rng(11)
    np.savez(root / "samples.npz", input=rng.normal(size=(40, 3, 16, 16)).astype(np.float32),
             label=rng.integers(0, 10, size=40))
    return root


def test_one_command_writes_every_stage_and_validates_on_held_out_samples(
        data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = data / "out"
    code, text = run_cli(["quantize", data / "model.onnx", "--data", data / "samples.npz",
                          "-o", out, "--num", "16"], capsys)
    assert code == 0, text
    for name in ("model.f32.onnx", "model.meta.json", "model.calib", "model.int8.onnx",
                 "report/report.md", "validate_labels.npy"):
        assert (out / name).exists(), name
    assert len(list((out / "validate").glob("*.npz"))) == 8  # the last fifth of 40
    assert "validated on 8 held-out samples" in text and "PASSED" in text
    table = lowbit.calibrate.__module__  # noqa: F841 (the module is importable)
    calibrated = (out / "model.calib").read_text()
    assert "# samples: 16" in calibrated or " 16 " in calibrated
    recipe = read_provenance(onnx.load(out / "model.int8.onnx")).recipe
    assert recipe is not None and recipe.validation.data == out / "validate"
    validated = np.stack([np.load(p)["input"][0] for p in sorted((out / "validate").iterdir())])
    with np.load(data / "samples.npz") as samples:
        np.testing.assert_array_equal(validated, samples["input"][32:])
        np.testing.assert_array_equal(np.load(out / "validate_labels.npy"), samples["label"][32:])


def test_python_api_small_data_overlaps_and_says_so(data: Path) -> None:
    small = data / "small.npz"
    with np.load(data / "samples.npz") as samples:
        np.savez(small, input=samples["input"][:5])
    run = lowbit.quantize_model(data / "model.onnx", small, data / "small_out", report_speed=False,
                          quantize="F16")
    assert not run.held_out and run.validation_samples == 5
    assert run.table is None and run.deployed.precision == "F16" and run.deployed.passed
    assert run.deployed.path.name == "model.f16.onnx"


def test_mistakes_exit_2_before_any_work(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for extra, message in (([], "--data"), (["--data", data / "samples.npz", "--num", "0"],
                                            "--num must be from 1 to"),
                           (["--data", data / "samples.npz", "--quantize", "W4",
                             "--tolerance", "2,1"], "tolerance")):
        out = data / "bad"
        code, text = run_cli(["quantize", data / "model.onnx", "-o", out, *extra], capsys)
        assert code == 2 and message in text, text
        assert not out.exists()
