"""Every verb takes what ONNX Runtime takes: a paddle2onnx classifier with -1 dims, the
same with symbolic dims and shapeless value_info deployed raw, a scalar input given as
1-element arrays, int64 ids for an int32 input, an input with a default, and a dim name
two inputs share. A mistake is one line naming the input and both shapes or dtypes,
exit 2."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from lowbit.analysis.metrics import cosine
from tests.cli.test_flow import run_cli
from tests.feed_models import (
    default_input_model,
    int32_ids_model,
    paddle_classifier,
    scalar_input_model,
    shared_dim_model,
)


def outputs(model: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def one_line_refusal(code: int, text: str, *parts: str) -> None:
    assert code == 2, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    for part in parts:
        assert part in lines[0], lines[0]


@pytest.fixture(scope="module")
def paddle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("paddle")
    onnx.save(paddle_classifier(), root / "model.onnx")
    onnx.save(paddle_classifier((-1, 3, 48, 192)), root / "fixed_hw.onnx")
    rng = np.random.default_rng(3)
    np.savez(root / "data.npz", x=rng.normal(size=(8, 3, 48, 192)).astype(np.float32),
             label=rng.integers(0, 10, size=8))
    return root


def test_every_verb_takes_minus_one_dims(paddle: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    model, data = paddle / "model.onnx", paddle / "data.npz"
    code, text = run_cli(["calibrate", model, "--dataset", data, "-o", paddle / "m.calib",
                          "--no-progress"], capsys)
    assert code == 0, text
    code, text = run_cli(["deploy", model, "--calibration-table", paddle / "m.calib", "-o",
                          paddle / "int8.onnx", "--test-input", data], capsys)
    assert code == 0, text
    code, text = run_cli(["compare", model, paddle / "int8.onnx", "--inputs", data], capsys)
    assert code == 0, text
    code, text = run_cli(["eval", paddle / "int8.onnx", "--dataset", data, "--vs", model],
                         capsys)
    assert code == 0 and "top-1 agreement" in text, text
    code, text = run_cli(["qtable", model, "--dataset", data, "--calibration-table",
                          paddle / "m.calib", "-o", paddle / "m.qtable", "--num", "4"], capsys)
    assert code == 0, text
    code, text = run_cli(["bench", paddle / "fixed_hw.onnx", "--batch", "1,2", "--repeats",
                          "2"], capsys)
    assert code == 0, text   # the -1 batch is filled at each batch size
    code, text = run_cli(["transform", model, "-o", paddle / "f32.onnx", "--input-shapes",
                          "x:1,3,48,192"], capsys)
    assert code == 0, text
    written = onnx.load(paddle / "f32.onnx").graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in written] == [1, 3, 48, 192]


def test_a_fixed_dim_that_differs_is_one_line(paddle: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(paddle / "four.npz", x=np.zeros((2, 4, 48, 192), np.float32))
    code, text = run_cli(["calibrate", paddle / "model.onnx", "--dataset", paddle / "four.npz",
                          "-o", paddle / "four.calib", "--no-progress"], capsys)
    one_line_refusal(code, text, "input 'x' expects [?,3,?,?]", "[1,4,48,192]")


def test_deploy_on_the_raw_model_matches_transform_first(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Symbolic dims, shapeless value_info and a computed flatten ending in an Identity:
    deploy's own clean-up gives the output its declared shape, as transform's does."""
    model = tmp_path / "model.onnx"
    onnx.save(paddle_classifier(("N", 3, "H", "W"), ("N", 10), computed_flatten=True,
                                shapeless_value_info=True), model)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(8, 3, 48, 192)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x)
    code, text = run_cli(["calibrate", model, "--dataset", tmp_path / "data.npz", "-o",
                          tmp_path / "m.calib", "--no-progress"], capsys)
    assert code == 0, text
    code, text = run_cli(["deploy", model, "--calibration-table", tmp_path / "m.calib", "-o",
                          tmp_path / "raw.int8.onnx", "--test-input", tmp_path / "data.npz"],
                         capsys)
    assert code == 0, text
    code, text = run_cli(["transform", model, "-o", tmp_path / "f32.onnx"], capsys)
    assert code == 0, text
    code, text = run_cli(["deploy", tmp_path / "f32.onnx", "--calibration-table",
                          tmp_path / "m.calib", "-o", tmp_path / "t.int8.onnx"], capsys)
    assert code == 0, text
    onnx.checker.check_model(onnx.load(tmp_path / "raw.int8.onnx"), full_check=True)
    feeds = {"x": x[:2]}
    (reference,) = outputs(model, feeds)
    (raw,) = outputs(tmp_path / "raw.int8.onnx", feeds)
    (first,) = outputs(tmp_path / "t.int8.onnx", feeds)
    assert raw.shape == first.shape == (2, 10)
    assert cosine(reference, raw) > 0.999 and cosine(reference, first) > 0.999


def test_a_scalar_input_from_one_element_arrays(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    onnx.save(scalar_input_model(), tmp_path / "model.onnx")
    folder = tmp_path / "samples"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        np.savez(folder / f"s{i}.npz", x=rng.normal(size=(1, 8)).astype(np.float32),
                 sr=np.array([0.5 + i / 4], np.float32))
    with caplog.at_level(logging.INFO, logger="lowbit"):   # what -v shows
        code, text = run_cli(["calibrate", tmp_path / "model.onnx", "--dataset", folder, "-o",
                              tmp_path / "m.calib", "--no-progress", "-v"], capsys)
    assert code == 0, text
    told = [r.getMessage() for r in caplog.records if "is a scalar" in r.getMessage()]
    assert len(told) == 1 and "input 'sr'" in told[0], told
    code, text = run_cli(["deploy", tmp_path / "model.onnx", "--calibration-table",
                          tmp_path / "m.calib", "-o", tmp_path / "int8.onnx", "--test-input",
                          folder], capsys)
    assert code == 0, text
    code, text = run_cli(["compare", tmp_path / "model.onnx", tmp_path / "int8.onnx",
                          "--inputs", folder], capsys)
    assert code == 0, text
    code, text = run_cli(["bench", tmp_path / "model.onnx", "--batch", "2", "--repeats", "2"],
                         capsys)
    assert code == 0, text


def test_int64_ids_for_an_int32_input(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model.onnx"
    onnx.save(int32_ids_model(), model)
    np.savez(tmp_path / "ids.npz", ids=np.random.default_rng(2).integers(0, 20, size=(6, 6)))
    code, text = run_cli(["calibrate", model, "--dataset", tmp_path / "ids.npz", "-o",
                          tmp_path / "m.calib", "--no-progress"], capsys)
    assert code == 0, text
    code, text = run_cli(["deploy", model, "--calibration-table", tmp_path / "m.calib", "-o",
                          tmp_path / "int8.onnx", "--test-input", tmp_path / "ids.npz"], capsys)
    assert code == 0, text
    code, text = run_cli(["compare", model, tmp_path / "int8.onnx", "--inputs",
                          tmp_path / "ids.npz"], capsys)
    assert code == 0, text
    np.savez(tmp_path / "big.npz", ids=np.full((2, 6), 2**40, np.int64))
    code, text = run_cli(["calibrate", model, "--dataset", tmp_path / "big.npz", "-o",
                          tmp_path / "big.calib", "--no-progress"], capsys)
    one_line_refusal(code, text, "input 'ids' is int32", "is int64", "outside int32's range")


def test_an_input_with_a_default_needs_no_data(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model.onnx"
    onnx.save(default_input_model(), model)
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(4).normal(size=(6, 8)))
    code, text = run_cli(["calibrate", model, "--dataset", tmp_path / "x.npz", "-o",
                          tmp_path / "m.calib", "--no-progress"], capsys)
    assert code == 0, text
    code, text = run_cli(["deploy", model, "--calibration-table", tmp_path / "m.calib", "-o",
                          tmp_path / "int8.onnx", "--test-input", tmp_path / "x.npz"], capsys)
    assert code == 0, text
    code, text = run_cli(["compare", model, tmp_path / "int8.onnx", "--inputs",
                          tmp_path / "x.npz"], capsys)
    assert code == 0, text


def test_a_dim_name_two_inputs_give_two_sizes(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """ORT runs the float model on such feeds, but plans the INT8 model's memory by the dim
    name and refuses there ("Shape mismatch attempting to re-use buffer"): minmax
    calibration works, auto's check (which runs the INT8 model) is one line naming the
    dim."""
    model = tmp_path / "model.onnx"
    onnx.save(shared_dim_model(), model)
    folder = tmp_path / "samples"
    folder.mkdir()
    rng = np.random.default_rng(6)
    for i in range(4):
        np.savez(folder / f"s{i}.npz", a=rng.normal(size=(2, 8)).astype(np.float32),
                 b=rng.normal(size=(5, 8)).astype(np.float32))
    code, text = run_cli(["calibrate", model, "--dataset", folder, "-o", tmp_path / "m.calib",
                          "--no-progress", "--method", "minmax"], capsys)
    assert code == 0, text
    code, text = run_cli(["calibrate", model, "--dataset", folder, "-o", tmp_path / "a.calib",
                          "--no-progress"], capsys)
    assert code == 2 and "Traceback" not in text, text
    assert "inputs 'a' and 'b' give the dim 'N' sizes 2 and 5" in text.splitlines()[-1]
