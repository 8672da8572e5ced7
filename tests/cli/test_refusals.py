"""Mistakes that used to pass silently: each is exit 2, one line, and nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import lowbit
from lowbit.cli.main import main
from tests.models import small_resnet


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("refusals")
    onnx.save(small_resnet(batch=1), root / "model.onnx")
    x = np.random.default_rng(0).normal(size=(4, 3, 16, 16)).astype(np.float32)
    np.savez(root / "x.npz", input=x)
    lowbit.calibrate(root / "model.onnx", root / "x.npz", output=root / "model.calib",
                     method="minmax", progress=False)
    lowbit.deploy(root / "model.onnx", calibration_table=root / "model.calib",
                  output=root / "model.int8.onnx")
    (root / "empty.calib").write_text("# lowbit calibration table v1\n")
    return root


def _refused(args: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for needle in needles:
        assert needle in err
    return err


def test_input_shapes_that_contradict_the_weights(work, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    _refused(["transform", str(work / "model.onnx"), "-o", str(out),
              "--input-shapes", "[[1,1,16,16]]"], capsys, "does not run at --input-shapes",
             "[[1,1,16,16]]")
    assert not out.exists()


def test_input_shapes_that_fit_are_kept(work, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["transform", str(work / "model.onnx"), "-o", str(out),
                 "--input-shapes", "[[1,3,24,24]]"]) == 0
    dims = onnx.load(out).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 3, 24, 24]


def test_an_empty_calibration_table(work, tmp_path, capsys):
    out = tmp_path / "m.int8.onnx"
    _refused(["deploy", str(work / "model.onnx"), "--calibration-table",
              str(work / "empty.calib"), "-o", str(out)], capsys, "holds no tensor ranges")
    assert not out.exists()


@pytest.mark.parametrize("command", ["deploy", "calibrate"])
def test_an_already_quantized_model(work, tmp_path, capsys, command):
    out = tmp_path / "again.onnx"
    args = [command, str(work / "model.int8.onnx"), "-o", str(out)]
    args += (["--calibration-table", str(work / "model.calib")] if command == "deploy"
             else ["--dataset", str(work / "x.npz")])
    # deploy keeps a QDQ model's own scales, so a table it would not read is refused
    _refused(args, capsys, *(("is a setting of lowbit's own quantization", "--requantize")
                             if command == "deploy" else
                             ("is already INT8, not a float F32 model",)))
    assert not out.exists()


def test_output_over_the_input(work, tmp_path, capsys):
    model = tmp_path / "model.onnx"
    model.write_bytes((work / "model.onnx").read_bytes())
    before = model.read_bytes()
    _refused(["deploy", str(model), "--quantize", "F16", "-o", str(model)], capsys,
             "is the same file as MODEL")
    assert model.read_bytes() == before


def test_an_output_folder_that_cannot_be_made(work, tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    _refused(["transform", str(work / "model.onnx"), "-o", str(blocker / "x.onnx")], capsys,
             "cannot write", "afile")


def test_a_qtable_with_f16(work, tmp_path, capsys):
    qtable = tmp_path / "m.qtable"
    qtable.write_text("# lowbit qtable v1\nfc F32\n")
    out = tmp_path / "m.f16.onnx"
    _refused(["deploy", str(work / "model.onnx"), "--quantize", "F16", "--quantize-table",
              str(qtable), "-o", str(out)], capsys, "--quantize-table applies to --quantize "
             "INT8 only", "--keep-float")
    assert not out.exists()


def test_float_embeddings_outside_w4(work, tmp_path, capsys):
    out = tmp_path / "m.int8.onnx"
    _refused(["deploy", str(work / "model.onnx"), "--calibration-table",
              str(work / "model.calib"), "--float-embeddings", "-o", str(out)], capsys,
             "--float-embeddings applies to --quantize W4")
    assert not out.exists()
