"""The W4 rewrite: MatMul/Gemm → MatMulNBits, nodes it leaves float and why, deploy end to end."""

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import lowbit
from lowbit.analysis.metrics import cosine
from lowbit.api import precision_of
from lowbit.cli.main import main
from lowbit.errors import UnsupportedOpError, UsageError
from lowbit.quantize.w4.blockwise import unpack_nbits
from lowbit.quantize.w4.weight_only import WeightOnlySettings, find_targets, quantize_weight_only
from lowbit.runtime.ort import create_session
from tests.models import init, make_model


def smooth_mlp(seed: int = 0, hidden: int = 96, k_in: int = 80) -> onnx.ModelProto:
    """x [N, 8, 80] → MatMul 80×96 (+b) → Tanh → Gemm-free MatMul 96×40 → attention-style
    MatMul with a computed B (x·xᵀ) that must stay float. K=80 is not a multiple of 32."""
    rng = np.random.default_rng(seed)
    w1 = (rng.normal(size=(k_in, hidden)) / np.sqrt(k_in)).astype(np.float32)
    w2 = (rng.normal(size=(hidden, 40)) / np.sqrt(hidden)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"], name="fc1"),
        helper.make_node("Add", ["m1", "b1"], ["a1"], name="bias1"),
        helper.make_node("Tanh", ["a1"], ["t1"], name="tanh1"),
        helper.make_node("MatMul", ["t1", "w2"], ["m2"], name="fc2"),
        helper.make_node("Transpose", ["m2"], ["m2t"], perm=[0, 2, 1], name="transpose"),
        helper.make_node("MatMul", ["m2", "m2t"], ["scores"], name="scores"),
    ]
    return make_model(
        nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, k_in])],
        [helper.make_tensor_value_info("m2", TensorProto.FLOAT, ["N", 8, 40]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 8, 8])],
        [init("w1", w1), init("b1", rng.normal(size=hidden).astype(np.float32) * 0.1),
         init("w2", w2)])


def gemm_model(trans_b: int, alpha: float, beta: float, bias_shape: tuple[int, ...] | None
               ) -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    k, n = 64, 10
    b = rng.normal(size=(n, k) if trans_b else (k, n)).astype(np.float32)
    inputs = ["x", "b"]
    inits = [init("b", b)]
    if bias_shape is not None:
        inits.append(init("c", rng.normal(size=bias_shape).astype(np.float32)))
        inputs.append("c")
    node = helper.make_node("Gemm", inputs, ["y"], name="gemm", transB=trans_b, alpha=alpha,
                            beta=beta)
    return make_model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, k])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, n])], inits)


def _nbits_weight(model: onnx.ModelProto, node: onnx.NodeProto) -> np.ndarray:
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    zeros = inits[node.input[3]] if len(node.input) > 3 and node.input[3] else None
    return unpack_nbits(inits[node.input[1]], inits[node.input[2]], zeros, K=attrs["K"],
                        N=attrs["N"], block_size=attrs["block_size"])


@pytest.mark.parametrize("symmetric", [False, True])
def test_matmuls_with_constant_weights_become_matmulnbits(symmetric):
    model = smooth_mlp()
    result = quantize_weight_only(model, WeightOnlySettings(block_size=32, symmetric=symmetric))
    onnx.checker.check_model(result.model, full_check=True)
    ops = [node.op_type for node in result.model.graph.node]
    assert ops.count("MatMulNBits") == 2 and ops.count("MatMul") == 1
    assert {d.name for d in result.quantized} == {"fc1", "fc2"}
    assert [(d.name, d.reason.split(" (")[0]) for d in result.left_float] == [
        ("scores", "B is not a constant initializer")]
    names = {i.name for i in result.model.graph.initializer}
    assert "w1" not in names and "w2" not in names  # the float weights are gone
    fc1 = next(n for n in result.model.graph.node if n.name == "fc1")
    assert (len(fc1.input) == 3) == symmetric  # zero points only when asymmetric
    # ORT's output is x @ (the weight lowbit packed), to float rounding.
    x = np.random.default_rng(2).normal(size=(4, 8, 80)).astype(np.float32)
    got = create_session(result.model).run(["m2"], {"x": x})[0]
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    fc2 = next(n for n in result.model.graph.node if n.name == "fc2")
    hidden = np.tanh(x @ _nbits_weight(result.model, fc1) + inits["b1"])
    reference = hidden @ _nbits_weight(result.model, fc2)
    np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-5)
    float_out = create_session(model).run(["m2"], {"x": x})[0]
    assert cosine(float_out, got) > 0.99


@pytest.mark.parametrize(("trans_b", "alpha", "beta", "bias_shape"), [
    (1, 1.0, 1.0, (10,)), (0, 0.5, 2.0, (1, 10)), (1, 1.0, 1.0, None), (0, 1.0, 1.0, (1,))])
def test_gemm_folds_trans_b_alpha_and_beta(trans_b, alpha, beta, bias_shape):
    model = gemm_model(trans_b, alpha, beta, bias_shape)
    result = quantize_weight_only(model, WeightOnlySettings(block_size=16))
    node = result.model.graph.node[0]
    assert node.op_type == "MatMulNBits" and node.domain == "com.microsoft"
    assert (len(node.input) == 6) == (bias_shape is not None)  # bias is MatMulNBits' input 5
    x = np.random.default_rng(3).normal(size=(3, 64)).astype(np.float32)
    got = create_session(result.model).run(None, {"x": x})[0]
    want = create_session(model).run(None, {"x": x})[0]
    assert cosine(want, got) > 0.995


def test_gemm_forms_without_a_matmulnbits_form_stay_float():
    model = gemm_model(0, 1.0, 1.0, (3, 10))
    targets, left = find_targets(model)
    assert not targets and "not a vector" in left[0].reason
    with pytest.raises(UnsupportedOpError, match="no MatMul or Gemm with a constant"):
        quantize_weight_only(model, WeightOnlySettings())


def conv_only_model() -> onnx.ModelProto:
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                            [1, 3, 8, 8])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])],
                      [init("w", np.ones((4, 3, 3, 3), np.float32))])


def test_a_model_without_eligible_matmuls_is_an_error():
    with pytest.raises(UnsupportedOpError, match="found no MatMul"):
        quantize_weight_only(conv_only_model(), WeightOnlySettings())


def test_settings_are_checked():
    with pytest.raises(UsageError, match="block size 24"):
        WeightOnlySettings(block_size=24)
    with pytest.raises(UsageError, match="unknown weight-only algorithm"):
        WeightOnlySettings(algorithm="awq")
    with pytest.raises(UsageError, match="act_order applies to algorithm gptq"):
        WeightOnlySettings(act_order=True)
    with pytest.raises(UsageError, match="calibration"):
        quantize_weight_only(smooth_mlp(), WeightOnlySettings(algorithm="gptq"))


def test_gptq_lowers_the_model_output_error(tmp_path: Path):
    model = smooth_mlp(seed=4)
    rng = np.random.default_rng(5)
    # Correlated inputs: a few directions carry most of the energy.
    basis = rng.normal(size=(6, 80)).astype(np.float32)

    def batch(n: int) -> np.ndarray:
        x = rng.normal(size=(n, 8, 6)).astype(np.float32) @ basis
        return x + 0.05 * rng.normal(size=x.shape).astype(np.float32)
    calib = [{"x": batch(1)} for _ in range(64)]
    x = batch(32)
    errors = {}
    for algorithm in ("rtn", "gptq"):
        settings = WeightOnlySettings(block_size=16, algorithm=algorithm)
        quantized = quantize_weight_only(model, settings, samples=calib, progress=False)
        assert quantized.samples == (64 if algorithm == "gptq" else 0)
        got = create_session(quantized.model).run(["m2"], {"x": x})[0]
        want = create_session(model).run(["m2"], {"x": x})[0]
        errors[algorithm] = float(np.linalg.norm(got - want) / np.linalg.norm(want))
    assert errors["gptq"] < 0.7 * errors["rtn"]


@pytest.fixture(scope="module")
def mlp_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("w4")
    onnx.save(smooth_mlp(), root / "mlp.onnx")
    onnx.save(conv_only_model(), root / "conv.onnx")
    rng = np.random.default_rng(6)
    np.savez(root / "data.npz", x=rng.normal(size=(24, 8, 80)).astype(np.float32))
    return root


def run_cli(argv: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("algorithm", ["rtn", "gptq"])
def test_deploy_w4_end_to_end(mlp_files: Path, algorithm: str):
    out = mlp_files / f"mlp.w4.{algorithm}.onnx"
    result = lowbit.deploy(mlp_files / "mlp.onnx", quantize="W4", output=out,
                           algorithm=algorithm, block_size=32,
                           calibration_data=mlp_files / "data.npz" if algorithm == "gptq"
                           else None, test_input=mlp_files / "data.npz",
                           tolerance="0.99,0.8")  # 4 bits: ~20 dB SQNR, euclid ≈ 0.9
    written = onnx.load(str(out))
    onnx.checker.check_model(written, full_check=True)
    assert any(o.domain == "com.microsoft" for o in written.opset_import)
    assert [n.op_type for n in written.graph.node].count("MatMulNBits") == 2
    assert result.precision == "W4" and precision_of(written) == "W4"
    assert len(result.quantized) == 2 and [d.name for d in result.left_float] == ["scores"]
    summary = result.notes[0]
    assert summary.startswith("W4 weight-only: 2 MatMuls, block 32 (asymmetric), "
                              f"{algorithm}") and re.search(r"file [0-9.]+ kB → [0-9.]+ kB$", summary)
    if algorithm == "gptq":
        assert "on 24 samples" in summary
    assert result.validation is not None and result.passed
    assert all(check.cosine >= 0.99 for check in result.validation.checks)


def test_cli_deploy_w4(mlp_files: Path, capsys: pytest.CaptureFixture[str]):
    out = mlp_files / "cli.w4.onnx"
    code, text = run_cli(["deploy", mlp_files / "mlp.onnx", "--quantize", "w4", "-o", out,
                          "--block-size", "64", "--algorithm", "gptq", "--act-order",
                          "--symmetric-weights", "--calibration-data", mlp_files / "data.npz",
                          "--test-input", mlp_files / "data.npz", "--tolerance", "0.99,0.8"],
                         capsys)
    assert code == 0, text
    assert "quantized to W4: 2 MatMul" in text
    assert "W4 weight-only: 2 MatMuls, block 64 (symmetric), gptq on 24 samples, act-order" \
        in text
    assert "MatMul scores: B is not a constant initializer" in text
    node = next(n for n in onnx.load(str(out)).graph.node if n.op_type == "MatMulNBits")
    assert {a.name: helper.get_attribute_value(a) for a in node.attribute}["block_size"] == 64
    assert len(node.input) == 3  # symmetric: no zero points


@pytest.mark.parametrize(("args", "message"), [
    (["--block-size", "48"], "--block-size must be one of 16, 32, 64, 128, 256; got 48"),
    (["--algorithm", "gptq"], "needs --calibration-data"),
    (["--calibration-data", "DATA"], "--calibration-data is used by --algorithm gptq only"),
    (["--act-order"], "act-order applies to --algorithm gptq only"),
    (["--model", "conv.onnx"], "found no MatMul or Gemm with a constant"),
    (["--bias-correction", "DATA"], "--bias-correction applies to --quantize INT8 only"),
    (["--quantize-table", "DATA"], "--quantize-table applies to --quantize INT8 only"),
])
def test_cli_w4_mistakes_exit_2_and_write_nothing(mlp_files: Path, args: list[str],
                                                  message: str,
                                                  capsys: pytest.CaptureFixture[str]):
    model = mlp_files / "mlp.onnx"
    if args[0] == "--model":
        model, args = mlp_files / args[1], []
    args = [str(mlp_files / "data.npz") if a == "DATA" else a for a in args]
    out = mlp_files / "never.onnx"
    code, text = run_cli(["deploy", model, "--quantize", "W4", "-o", out, *args], capsys)
    assert code == 2 and message in text
    assert len(text.strip().splitlines()) == 1 and "Traceback" not in text
    assert not out.exists()


def test_convs_are_reported_left_float_with_the_way_to_quantize_them():
    from lowbit.quantize.w4.weight_only import find_targets
    from tests.models import small_resnet

    targets, left = find_targets(small_resnet())
    assert [t.node.name for t in targets] == ["fc"]
    convs = [d for d in left if d.op_type == "Conv"]
    assert [d.name for d in convs] == ["stem_conv", "conv1", "conv2"]
    assert all("--weight-bits 4" in d.reason for d in convs)


def embedding_mlp(vocab: int = 4096, hidden: int = 64) -> onnx.ModelProto:
    """ids [N, 8] → Gather(table [vocab, hidden]) → MatMul hidden×32."""
    rng = np.random.default_rng(4)
    nodes = [helper.make_node("Gather", ["table", "ids"], ["e"], name="embed"),
             helper.make_node("MatMul", ["e", "w"], ["y"], name="fc")]
    return make_model(
        nodes, [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 32])],
        [init("table", rng.normal(size=(vocab, hidden)).astype(np.float32)),
         init("w", (rng.normal(size=(hidden, 32)) / 8).astype(np.float32))])


@pytest.mark.parametrize("embeddings", [True, False])
def test_embedding_tables_go_int8_unless_kept_float(embeddings: bool):
    model = embedding_mlp()
    result = quantize_weight_only(model, WeightOnlySettings(embeddings=embeddings))
    onnx.checker.check_model(result.model, full_check=True)
    tables = {i.name: i for i in result.model.graph.initializer}
    assert ("table" in tables) != embeddings  # the float table is gone when quantized
    assert result.embeddings == (("embed",) if embeddings else ())
    assert ("1 embedding table(s) int8" in result.summary(1, 1)) == embeddings
    ids = np.random.default_rng(5).integers(0, 4096, size=(2, 8)).astype(np.int64)
    got = create_session(result.model).run(["y"], {"ids": ids})[0]
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    want = inits["table"][ids] @ inits["w"]
    assert np.abs(got - want).max() / np.abs(want).max() < 0.1  # 4-bit weights, 8-bit table
