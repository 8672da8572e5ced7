"""`lowbit deploy --equalize / --adaround / --weight-bits 4`: the notes they print, the
validation against the original float model, and one-line errors with nothing written."""

from __future__ import annotations

import builtins
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

import lowbit
from lowbit.cli.main import main
from tests.quantize.prepare.test_equalize import chain_model


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("conv_accuracy")
    onnx.save(chain_model(), root / "m.onnx")
    onnx.save(chain_model("Clip"), root / "relu6.onnx")
    rng = np.random.default_rng(1)
    np.savez(root / "calib.npz", x=rng.normal(size=(24, 3, 8, 8)).astype(np.float32))
    np.savez(root / "test.npz", x=rng.normal(size=(8, 3, 8, 8)).astype(np.float32))
    for name in ("m", "relu6"):
        assert main(["calibrate", str(root / f"{name}.onnx"), "--dataset",
                     str(root / "calib.npz"), "--method", "minmax", "-o",
                     str(root / f"{name}.calib"), "--no-progress"]) == 0
    return root


def _deploy(files: Path, model: str, out: str, *extra: str) -> list[str]:
    return ["deploy", str(files / f"{model}.onnx"), "--calibration-table",
            str(files / f"{model}.calib"), "-o", str(files / out), "--test-input",
            str(files / "test.npz"), *extra]


def test_equalize_makes_per_tensor_weights_pass(files: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    plain = lowbit.deploy(files / "m.onnx", calibration_table=files / "m.calib",
                          output=files / "plain.onnx", test_input=files / "test.npz",
                          per_channel=False)
    capsys.readouterr()
    assert main(_deploy(files, "m", "cle.onnx", "--per-tensor", "--equalize",
                        str(files / "calib.npz"))) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "note: equalization: 2 conv pairs" in out
    assert "ranges re-measured on 24 samples" in out
    equalized = lowbit.deploy(files / "m.onnx", calibration_table=files / "m.calib",
                              output=files / "cle2.onnx", test_input=files / "test.npz",
                              per_channel=False, equalize=files / "calib.npz")
    assert plain.validation is not None and equalized.validation is not None
    assert equalized.validation.checks[0].sqnr_db > plain.validation.checks[0].sqnr_db + 8


def test_relu_replacement_is_validated_against_the_original_float_model(files: Path) -> None:
    """ReLU6 → Relu changes the function; deploy must compare with the model as given."""
    result = lowbit.deploy(files / "relu6.onnx", calibration_table=files / "relu6.calib",
                           output=files / "relu.onnx", test_input=files / "test.npz",
                           equalize=files / "calib.npz", equalize_relu6="relu")
    assert any("ReLU6 replaced by Relu" in note for note in result.notes)
    assert result.validation is not None and not result.passed  # the outlier channel clips at 6
    bounded = lowbit.deploy(files / "relu6.onnx", calibration_table=files / "relu6.calib",
                            output=files / "bound.onnx", test_input=files / "test.npz",
                            equalize=files / "calib.npz")
    assert any("kept below its bound" in note for note in bounded.notes)
    assert bounded.validation is not None
    assert bounded.validation.checks[0].sqnr_db > result.validation.checks[0].sqnr_db + 10


def test_weight_bits_4_and_adaround(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(_deploy(files, "m", "w4.onnx", "--weight-bits", "4", "--adaround",
                        str(files / "calib.npz"), "--adaround-iterations", "100",
                        "--tolerance", "0.9,0.5")) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "note: adaround (4-bit weights):" in out
    assert "note: W4A8: weights 4-bit (−7..7, least-squares clipped per channel) stored as int8 (opset 17" in out
    model = onnx.load(files / "w4.onnx")
    weight = next(i for i in model.graph.initializer if i.name == "w1_quantized")
    assert weight.data_type == TensorProto.INT8
    assert np.abs(numpy_helper.to_array(weight)).max() == 7


@pytest.mark.parametrize(("extra", "message"), [
    (["--equalize"], "--equalize needs a data set"),
    (["--equalize", "missing.npz"], "missing.npz"),
    (["--weight-bits", "4", "--quantize", "F16"], "--weight-bits applies to --quantize INT8 only, not F16"),
    (["--adaround", "calib.npz", "--dynamic"], "--adaround needs a calibration table: it does not combine with --dynamic"),
    (["--adaround"], "--adaround needs a data set: --adaround or --calibration-data"),
    (["--calibration-data", "calib.npz"], "is not used: it feeds --adaround, --smooth"),
])
def test_mistakes_exit_2_with_one_line(files: Path, capsys: pytest.CaptureFixture[str],
                                       extra: list[str], message: str) -> None:
    out = files / "bad.onnx"
    argv = ["deploy", str(files / "m.onnx"), "--calibration-table", str(files / "m.calib"),
            "-o", str(out), *[str(files / a) if a.endswith(".npz") else a for a in extra]]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_adaround_without_torch_names_the_extra(files: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    real_import = builtins.__import__

    def no_torch(name: str, *args: object, **kwargs: object) -> object:
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    out = files / "no_torch.onnx"
    capsys.readouterr()
    assert main(["deploy", str(files / "m.onnx"), "--calibration-table", str(files / "m.calib"),
                 "-o", str(out), "--adaround", str(files / "calib.npz")]) == 2
    assert "pip install torch==2.13.0, then pip install '.[torch]'" in capsys.readouterr().err
    assert not out.exists()


def test_calibration_data_feeds_adaround_and_equalize(files: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """One data set for every algorithm: the same model as when each is given it."""
    data = str(files / "calib.npz")
    capsys.readouterr()
    assert main(_deploy(files, "m", "shared.onnx", "--calibration-data", data, "--adaround",
                        "--equalize", "--adaround-iterations", "50")) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "note: adaround (" in out and "note: equalization: 2 conv pairs" in out
    assert main(_deploy(files, "m", "own.onnx", "--adaround", data, "--equalize", data,
                        "--adaround-iterations", "50")) == 0

    def weights(name: str) -> dict[str, np.ndarray]:
        return {i.name: numpy_helper.to_array(i) for i in onnx.load(files / name).graph.initializer}

    shared, own = weights("shared.onnx"), weights("own.onnx")
    assert shared.keys() == own.keys()
    assert all(np.array_equal(shared[k], own[k]) for k in shared)
