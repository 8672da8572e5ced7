"""Every accuracy option of deploy says what it did: a line in DeployResult.notes, printed by
`lowbit deploy` as "note: …" (issue 6, part 7).

One small model serves every option: Gemm → Relu → MatMul, so bias correction (Gemm),
SmoothQuant and dynamic INT8 (MatMul) and W4 (both weights) all have something to do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from lowbit.cli.main import main
from tests.models import init, make_model


def mlp() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1, name="fc1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2")]
    inits = [init("w1", rng.normal(0, 0.2, (64, 64)).astype(np.float32)),
             init("b1", rng.normal(0, 0.1, 64).astype(np.float32)),
             init("w2", rng.normal(0, 0.2, (64, 16)).astype(np.float32))]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])], inits)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("notes")
    onnx.save(mlp(), root / "m.onnx")
    x = np.random.default_rng(1).normal(size=(32, 64)).astype(np.float32)
    x[:, 5] *= 20  # an outlier channel, as SmoothQuant expects
    np.savez(root / "calib.npz", x=x)
    assert main(["calibrate", str(root / "m.onnx"), "--dataset", str(root / "calib.npz"),
                 "-o", str(root / "m.calib"), "--no-progress"]) == 0
    return root


# option -> (extra deploy arguments, the start of the note it must print)
OPTIONS = {
    "auto calibration": ([], "activation ranges: method auto on 32 samples"),
    "bias correction from the table": ([], "bias correction: 1 ops on 32 samples"),
    "bias correction": (["--bias-correction", "{d}/calib.npz"], "bias correction: 1 ops"),
    "equalize": (["--equalize", "{d}/calib.npz"], "equalization: "),
    # no Conv pair here: equalization changes nothing, so the table's means still hold
    "equalize, nothing to equalize": (["--equalize", "{d}/calib.npz"],
                                      "bias correction: 1 ops on 32 samples"),
    "adaround": (["--adaround", "{d}/calib.npz", "--weight-range", "full"],
                 "adaround (8-bit weights)"),
    "adaround, reduced range": (["--adaround", "{d}/calib.npz", "--weight-range", "reduced"],
                                "adaround (7-bit weights)"),
    "weight bits": (["--weight-bits", "4"], "W4A8: weights 4-bit"),
    "smooth": (["--smooth", "0.5", "--smooth-data", "{d}/calib.npz"], "SmoothQuant: α=0.5"),
    "dynamic": (["--dynamic"], "dynamic INT8"),
    "weight range": (["--weight-range", "reduced"], "weights: Gemm, MatMul 7 bits"),
    "W4": (["--quantize", "W4"], "W4"),
}


@pytest.mark.parametrize("option", OPTIONS)
def test_deploy_prints_what_each_option_did(option: str, files: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    extra, note = OPTIONS[option]
    argv = ["deploy", str(files / "m.onnx"), "-o", str(files / f"{option}.onnx"),
            *[a.format(d=files) for a in extra]]
    if option not in ("dynamic", "W4"):
        argv += ["--calibration-table", str(files / "m.calib")]
    capsys.readouterr()
    assert main(argv) == 0
    printed = [line for line in capsys.readouterr().out.splitlines()
               if line.startswith("note: ")]
    assert any(line.startswith(f"note: {note}") for line in printed), printed


def test_no_bias_correction_leaves_the_biases_and_says_nothing_of_them(
        files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["deploy", str(files / "m.onnx"), "-o", str(files / "plain.onnx"),
                 "--calibration-table", str(files / "m.calib"), "--no-bias-correction"]) == 0
    printed = capsys.readouterr().out
    assert "note: activation ranges" in printed and "bias correction" not in printed
    assert main(["deploy", str(files / "m.onnx"), "-o", str(files / "corrected.onnx"),
                 "--calibration-table", str(files / "m.calib")]) == 0

    def corrected_biases(path: Path) -> list[str]:
        return [i.name for i in onnx.load(str(path)).graph.initializer if "_corrected" in i.name]

    assert corrected_biases(files / "plain.onnx") == []
    assert corrected_biases(files / "corrected.onnx")  # the default does correct them


def test_equalization_that_changes_layers_stops_table_bias_correction(tmp_path: Path) -> None:
    """Equalized Conv pairs read inputs the table's means no longer describe."""
    import lowbit
    from tests.quantize.prepare.test_equalize import chain_model

    model = chain_model()
    onnx.save(model, tmp_path / "c.onnx")
    shape = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(2).normal(size=(16, *shape[1:])).astype(np.float32)
    np.savez(tmp_path / "calib.npz", **{model.graph.input[0].name: x})
    lowbit.calibrate(tmp_path / "c.onnx", tmp_path / "calib.npz", output=tmp_path / "c.calib",
                     progress=False)
    result = lowbit.deploy(tmp_path / "c.onnx", calibration_table=tmp_path / "c.calib",
                           equalize=tmp_path / "calib.npz", output=tmp_path / "c.int8.onnx")
    assert any(n.startswith("equalization: ") and not n.startswith("equalization: 0 conv")
               for n in result.notes), result.notes
    assert any(n.startswith("no bias correction from the calibration table: --equalize")
               for n in result.notes), result.notes
