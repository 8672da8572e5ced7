"""The whole command-line flow on small_resnet: transform → calibrate → deploy → compare → bench.

Every stage runs through `lowbit.cli.main.main` in-process and is checked by reading the files
it wrote, with ONNX Runtime as the judge.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from lowbit.analysis.metrics import cosine
from lowbit.calibration.table import read_table
from lowbit.cli.main import main
from lowbit.runtime import create_session
from tests.models import small_resnet

METHODS = ("minmax", "percentile", "kl", "mse", "auto")


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and everything printed (stdout then stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def run_ort(model: Path | onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = create_session(model)
    return session.run(None, {"input": x})[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """small_resnet (batch 'N') with normal-distributed test and calibration inputs."""
    root = tmp_path_factory.mktemp("flow")
    onnx.save(small_resnet(), root / "model.onnx")
    rng = np.random.default_rng(7)
    np.savez(root / "test.npz", input=rng.normal(size=(6, 3, 16, 16)).astype(np.float32))
    np.savez(root / "calib.npz", input=rng.normal(size=(24, 3, 16, 16)).astype(np.float32))
    return root


@pytest.fixture(scope="module")
def transformed(work: Path) -> Path:
    code = main(["transform", str(work / "model.onnx"), "-o", str(work / "model.f32.onnx"),
                 "--test-input", str(work / "test.npz")])
    assert code == 0
    return work / "model.f32.onnx"


@pytest.fixture(scope="module")
def table(work: Path, transformed: Path) -> Path:
    out = work / "model.calib"
    assert main(["calibrate", str(transformed), "--dataset", str(work / "calib.npz"), "-o",
                 str(out), "--no-progress"]) == 0
    return out


def deploy_args(work: Path, transformed: Path, table: Path, out: Path) -> list[str]:
    return ["deploy", str(transformed), "--calibration-table", str(table), "-o", str(out),
            "--test-input", str(work / "test.npz"), "--test-reference",
            str(work / "ref_outputs.npz")]


def test_transform_writes_a_clean_model_and_float_references(work: Path,
                                                              transformed: Path) -> None:
    model = onnx.load(transformed)
    onnx.checker.check_model(model, full_check=True)
    assert not [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    x = np.load(work / "test.npz")["input"]
    expected = run_ort(work / "model.onnx", x)
    with np.load(work / "ref_outputs.npz") as ref:
        assert set(ref.files) == {"logits"}
        np.testing.assert_allclose(ref["logits"], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(run_ort(transformed, x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_calibrate_writes_a_table_for_every_activation(
    method: str, work: Path, transformed: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / f"{method}.calib"
    code, text = run_cli(["calibrate", transformed, "--dataset", work / "calib.npz", "-o", out,
                          "--method", method, "--num", "16", "--bins", "512", "--no-progress"],
                         capsys)
    assert code == 0, text
    table = read_table(out)
    assert table.method == method and table.num_samples == 16
    activations = {"input", "logits"} | {o for n in onnx.load(transformed).graph.node
                                         for o in n.output}
    assert "input" in table.ranges and "logits" in table.ranges
    assert set(table.ranges) <= activations
    for name, rng in table.ranges.items():
        assert np.isfinite([rng.threshold, rng.min, rng.max]).all(), name
        assert rng.min <= rng.max and rng.threshold > 0, name


@pytest.mark.parametrize("method", METHODS)
def test_every_method_deploys_within_tolerance(
    method: str, work: Path, transformed: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / f"{method}.calib"
    code, text = run_cli(["calibrate", transformed, "--dataset", work / "calib.npz", "-o", table,
                          "--method", method, "--no-progress"], capsys)
    assert code == 0, text
    out = tmp_path / f"{method}.onnx"
    code, text = run_cli(deploy_args(work, transformed, table, out), capsys)
    assert code == 0, text


def test_deploy_validates_and_stays_close_to_float(
    work: Path, transformed: Path, table: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.int8.onnx"
    code, text = run_cli(deploy_args(work, transformed, table, out)
                         + ["--tolerance", "0.99,0.85"], capsys)
    assert code == 0, text
    assert "PASSED" in text and "FAILED" not in text
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") >= 3 and ops.count("DequantizeLinear") >= 6
    x = np.load(work / "test.npz")["input"]
    # Measured 0.999991 (2026-12-06); the threshold allows ~3x that error (1 - cos), not 1000x.
    assert cosine(run_ort(transformed, x), run_ort(out, x)) > 0.99997


def test_deploy_qoperator_uses_integer_ops(
    work: Path, transformed: Path, table: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.qop.onnx"
    code, text = run_cli(deploy_args(work, transformed, table, out) + ["--format", "qoperator"],
                         capsys)
    assert code == 0, text
    ops = [n.op_type for n in onnx.load(out).graph.node]
    assert "QLinearConv" in ops and "Conv" not in ops
    x = np.load(work / "test.npz")["input"]
    assert cosine(run_ort(transformed, x), run_ort(out, x)) > 0.99997  # measured 0.999991


def test_deploy_int8_activations(
    work: Path, transformed: Path, table: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.s8.onnx"
    code, text = run_cli(deploy_args(work, transformed, table, out)
                         + ["--activation", "int8"], capsys)
    assert code == 0, text
    model = onnx.load(out)
    inits = {i.name: i for i in model.graph.initializer}
    zero_points = [numpy_helper.to_array(inits[n.input[2]]) for n in model.graph.node
                   if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits]
    assert zero_points and all(zp.dtype == np.int8 for zp in zero_points)
    assert all((zp == 0).all() for zp in zero_points)  # int8 activations are symmetric


def test_deploy_gate_failure_exits_1_and_still_writes(
    work: Path, transformed: Path, table: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.int8.onnx"
    code, text = run_cli(deploy_args(work, transformed, table, out)
                         + ["--tolerance", "1.0,1.0"], capsys)
    assert code == 1, text
    assert "FAILED" in text
    assert out.exists()
    onnx.checker.check_model(onnx.load(out))


def test_compare_same_model_passes_and_int8_fails_a_strict_gate(
    work: Path, transformed: Path, table: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = run_cli(["compare", work / "model.onnx", transformed, "--inputs",
                          work / "test.npz"], capsys)
    assert code == 0, text
    assert "logits" in text and " 0 failed" in text
    out = tmp_path / "model.int8.onnx"
    assert run_cli(deploy_args(work, transformed, table, out), capsys)[0] == 0
    code, text = run_cli(["compare", transformed, out, "--inputs", work / "test.npz",
                          "--tolerance", "0.999999,0.9999"], capsys)
    assert code == 1 and "FAILED" in text


def test_bench_prints_a_ratio_per_batch(
    work: Path, transformed: Path, table: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.int8.onnx"
    assert run_cli(deploy_args(work, transformed, table, out), capsys)[0] == 0
    code, text = run_cli(["bench", out, "--vs", transformed, "--batch", "1,2", "--repeats", "2",
                          "--warmup", "1", "--threads", "1"], capsys)
    assert code == 0, text
    flat = " ".join(text.split())
    for batch in (1, 2):
        assert f"batch {batch}: model.int8.onnx is" in flat
    assert flat.count("x the throughput of model.f32.onnx") == 2
