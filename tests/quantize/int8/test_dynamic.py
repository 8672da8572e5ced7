"""Dynamic INT8: DynamicQuantizeLinear → MatMulInteger, no calibration table."""

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import lowbit
from lowbit.errors import UsageError
from lowbit.passes import canonicalize
from lowbit.quantize.int8.dynamic import quantize_dynamic
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.runtime.ort import create_session, probe_int8_saturates
from tests.quantize.int8.tiny_transformer import tiny_block, token_samples

LINEAR = {"q_proj", "k_proj", "v_proj", "o_proj", "ffn1", "ffn2"}


@pytest.fixture(scope="module")
def block():
    return canonicalize(tiny_block())[0]


def run(model, feeds):
    session = create_session(model.SerializeToString())
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in names})[0]


def cosine(a, b):
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_dynamic_rewrites_the_linear_layers_and_runs_close_to_float(block):
    result = quantize_dynamic(block, QuantizeSettings(weight_range="reduced"))
    q = result.model
    onnx.checker.check_model(q)
    ops = Counter(n.op_type for n in q.graph.node)
    assert ops["MatMulInteger"] == 6 and ops["QuantizeLinear"] == 0
    # Q, K and V read one DynamicQuantizeLinear of the LayerNorm output
    assert ops["DynamicQuantizeLinear"] == 4
    assert ops["MatMul"] == 2  # Q·Kᵀ and P·V stay float
    assert {d.name for d in result.quantized} == LINEAR
    reasons = {d.name: d.reason for d in result.left_float}
    assert reasons["ln1"].startswith("LayerNorm kept float")
    weights = [numpy_helper.to_array(i) for i in q.graph.initializer
               if i.data_type == TensorProto.INT8 and len(i.dims) == 2]
    assert len(weights) == 6 and max(int(np.abs(w).max()) for w in weights) == 63
    for sample in token_samples(4, seed=3):  # measured 0.99985-0.99991 (2026-12-06)
        assert cosine(run(block, sample), run(q, sample)) >= 0.9995


def test_dynamic_with_quantize_attention_quantizes_both_operands(block):
    result = quantize_dynamic(block, QuantizeSettings(quantize_attention=True))
    ops = Counter(n.op_type for n in result.model.graph.node)
    assert ops["MatMulInteger"] == 8 and ops["MatMul"] == 0
    assert ops["DynamicQuantizeLinear"] == 4 + 4  # q_heads, k_heads, probs, v_heads
    sample = token_samples(2, seed=5)[1]
    assert cosine(run(block, sample), run(result.model, sample)) >= 0.9998  # measured 0.99993


def test_gemm_with_transposed_weight_and_bias_keeps_its_numbers():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 24)).astype(np.float32)  # [N, K], transB=1
    c = rng.standard_normal(16).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="fc", transB=1)], "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 24])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 16])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(c, "c")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    result = quantize_dynamic(model, QuantizeSettings(weight_range="reduced"))
    ops = Counter(n.op_type for n in result.model.graph.node)
    assert ops["MatMulInteger"] == 1 and ops["Add"] == 1 and ops["Gemm"] == 0
    x = rng.standard_normal((5, 24)).astype(np.float32)
    expected = x @ w.T + c
    actual = run(result.model, {"x": x})
    assert cosine(expected, actual) > 0.999
    assert np.abs(expected - actual).max() < 0.05 * np.abs(expected).max()
    if probe_int8_saturates():  # x86 without VNNI: full-range weights overflow the int16 pair sums
        full = run(quantize_dynamic(model, QuantizeSettings(weight_range="full")).model,
                   {"x": x})
        assert np.abs(expected - full).max() > 2 * np.abs(expected - actual).max()


def _block_files(block, tmp_path, seed):
    """The block as block.onnx and four token samples as x.npz."""
    src, data = tmp_path / "block.onnx", tmp_path / "x.npz"
    onnx.save(block, src)
    samples = token_samples(4, seed=seed)
    np.savez(data, **{k: np.concatenate([s[k] for s in samples]) for k in samples[0]})
    return src, data


def test_deploy_dynamic_needs_no_calibration_table(block, tmp_path):
    src, data = _block_files(block, tmp_path, seed=2)
    result = lowbit.deploy(src, quantize="INT8", dynamic=True, output=tmp_path / "dyn.onnx",
                           test_input=data, tolerance="0.99,0.8")
    assert result.passed and result.path.exists()
    assert any(note.startswith("dynamic INT8") for note in result.notes)
    assert result.advice is not None
    assert sum(op.integer for op in result.advice.ops) == 6
    with pytest.raises(UsageError, match="dynamic does not combine with bias_correction"):
        lowbit.deploy(src, quantize="INT8", dynamic=True, bias_correction=data,
                      output=tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


def test_cli_deploy_dynamic_and_a_smooth_usage_error(block, tmp_path, capsys):
    from lowbit.cli.main import main

    src = tmp_path / "block.onnx"
    onnx.save(block, src)
    out = tmp_path / "cli.onnx"
    assert main(["deploy", str(src), "--dynamic", "--quantize-attention", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "dynamic INT8" in printed and "8/8 conv/matmul/gemm run as integer" in printed
    assert main(["deploy", str(src), "--dynamic", "--smooth", "auto",
                 "-o", str(tmp_path / "none.onnx")]) == 2
    assert "--smooth auto scores each α on data: give --smooth-data" in capsys.readouterr().err
    assert not (tmp_path / "none.onnx").exists()


def test_smooth_reads_calibration_data_when_it_has_no_data_of_its_own(block, tmp_path):
    src, data = _block_files(block, tmp_path, seed=3)
    shared = lowbit.deploy(src, quantize="INT8", dynamic=True, smooth=0.5,
                           calibration_data=data, output=tmp_path / "shared.onnx")
    own = lowbit.deploy(src, quantize="INT8", dynamic=True, smooth=0.5, smooth_data=data,
                        output=tmp_path / "own.onnx")
    assert shared.notes == own.notes and any(n.startswith("SmoothQuant") for n in own.notes)
    assert [(i.name, i.raw_data) for i in onnx.load(tmp_path / "shared.onnx").graph.initializer] \
        == [(i.name, i.raw_data) for i in onnx.load(tmp_path / "own.onnx").graph.initializer]
