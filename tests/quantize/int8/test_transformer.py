"""Static INT8 of a transformer block: linear layers integer, LayerNorm/Softmax/GELU float."""

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lowbit.analysis.explain import explain_int8
from lowbit.calibration.collect import collect_ranges
from lowbit.calibration.observers import CalibrationSettings
from lowbit.passes import canonicalize
from lowbit.quantize.int8.embeddings import quantize_embeddings
from lowbit.quantize.int8.qdq import quantize_qdq
from lowbit.quantize.int8.scope import attention_mask_input, transformer_scope
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.quantize.int8.static import quantize_int8
from lowbit.runtime.ort import create_session
from tests.quantize.int8.tiny_transformer import stack, tiny_block, token_samples

LINEAR = {"q_proj", "k_proj", "v_proj", "o_proj", "ffn1", "ffn2"}
ATTENTION = {"qk", "pv"}


@pytest.fixture(scope="module")
def block():
    model, _ = canonicalize(tiny_block())
    table = collect_ranges(model, token_samples(16), CalibrationSettings(), progress=False)
    return model, table


def run(model, feeds):
    session = create_session(model.SerializeToString())
    return session.run(None, {k: v for k, v in feeds.items()
                              if k in {i.name for i in session.get_inputs()}})[0]


def cosine(a, b):
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def advice_for(model, tmp_path):
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    return explain_int8(path, profile=False)


def producers(model):
    return {o: n for n in model.graph.node for o in n.output}


def reads_dequantized(model, node_name, index):
    node = next(n for n in model.graph.node if n.name == node_name)
    producer = producers(model).get(node.input[index])
    return producer is not None and producer.op_type == "DequantizeLinear"


def test_calibration_leaves_the_int64_inputs_unobserved(block):
    _, table = block
    assert "input_ids" not in table.ranges and "attention_mask" not in table.ranges
    assert "h0" in table.ranges and "probs" in table.ranges
    assert table.ranges["additive_mask"].min <= -1e38  # (1 - mask)·finfo.min: the guard's case


def test_scope_finds_the_linear_layers_attention_and_the_float_ops(block):
    model, table = block
    scope = transformer_scope(model, ranges=table.ranges)
    assert scope is not None
    assert set(scope.linear) == LINEAR and set(scope.attention) == ATTENTION
    cats = scope.categories
    assert {cats["ln0"], cats["ln1"], cats["ln2"]} == {"layernorm"}
    assert cats["softmax"] == "softmax"
    assert {cats[n] for n in ("gelu_div", "gelu_erf", "gelu_add", "gelu_mul", "gelu_half")} \
        == {"gelu"}
    assert cats["residual1"] == cats["residual2"] == "residual"
    assert cats["q_bias"] == "bias" and cats["embed"] == "gather"
    assert {cats[n] for n in ("mask_cast", "mask_sub", "mask_mul", "add_mask")} == {"mask"}
    assert cats["qk"] == cats["pv"] == "attention"
    assert "LayerNorm kept float" in scope.keep_float["ln1"]


def test_a_graph_without_attention_or_layernorm_is_not_a_transformer():
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="fc"),
         helper.make_node("Relu", ["y"], ["z"], name="relu")], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])],
        initializer=[numpy_helper.from_array(np.ones((8, 4), np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert transformer_scope(model) is None
    from lowbit.calibration.table import CalibrationTable  # noqa: F401 - plain path below
    samples = [{"x": np.random.default_rng(0).standard_normal((1, 8)).astype(np.float32)}]
    table = collect_ranges(model, samples, CalibrationSettings(), progress=False)
    ours, notes = quantize_int8(model, table.ranges, QuantizeSettings())
    plain = quantize_qdq(model, table.ranges, QuantizeSettings())
    assert notes == [] and ours.model == plain.model


def test_static_int8_quantizes_the_projections_and_keeps_layernorm_softmax_gelu_float(
        block, tmp_path):
    model, table = block
    result, notes = quantize_int8(model, table.ranges, QuantizeSettings(), skipped=table.skipped)
    q = result.model
    onnx.checker.check_model(q)
    assert {d.name for d in result.quantized} == LINEAR
    for name in LINEAR:
        assert reads_dequantized(q, name, 0) and reads_dequantized(q, name, 1), name
    for name in ("ln0", "ln1", "ln2", "softmax", "gelu_erf", "gelu_mul", "residual1", "qk"):
        node = next(n for n in q.graph.node if n.name == name)
        assert not any(reads_dequantized(q, name, i) for i in range(len(node.input))), name
    reasons = {d.name: d.reason for d in result.left_float}
    assert reasons["softmax"].startswith("Softmax kept float")
    assert reasons["gelu_erf"].startswith("GELU kept float")
    assert "guard" in reasons["mask_mul"] or "mask" in reasons["mask_mul"]
    assert "--quantize-attention" in reasons["qk"]
    assert "6 MatMul/Gemm with weights INT8" in notes[0]
    # the residual reads the float LayerNorm output, not its dequantized copy
    residual = next(n for n in q.graph.node if n.name == "residual1")
    assert "h0" in residual.input
    feeds = stack(token_samples(6, seed=7))
    for i in range(6):
        sample = {k: v[i:i + 1] for k, v in feeds.items()}
        assert cosine(run(model, sample), run(q, sample)) >= 0.99
    advice = advice_for(q, tmp_path)
    kernels = {op.name: op.kernel for op in advice.ops}
    assert all(kernels[name] == "MatMulIntegerToFloat" for name in LINEAR), kernels


def test_quantize_attention_quantizes_the_two_run_time_matmuls(block, tmp_path):
    model, table = block
    settings = QuantizeSettings(quantize_attention=True)
    result, notes = quantize_int8(model, table.ranges, settings, skipped=table.skipped)
    q = result.model
    assert {d.name for d in result.quantized} == LINEAR | ATTENTION
    for name in ATTENTION:
        assert reads_dequantized(q, name, 0) and reads_dequantized(q, name, 1), name
    assert "2 attention MatMuls INT8" in notes[0]
    sample = token_samples(2, seed=9)[1]
    assert cosine(run(model, sample), run(q, sample)) >= 0.99
    advice = advice_for(q, tmp_path)
    assert sum(op.integer for op in advice.ops) == len(LINEAR | ATTENTION)


def test_the_range_guard_fires_for_the_mask_without_the_transformer_scope(block):
    model, table = block
    plain = quantize_qdq(model, table.ranges, QuantizeSettings(), skipped=table.skipped)
    reasons = {d.name: d.reason for d in plain.left_float}
    assert "'additive_mask' stays float" in reasons["add_mask"]
    assert "reaches |x| ≥ 10000" in reasons["add_mask"]


def test_decomposed_layernorm_and_gelu_op_are_recognised():
    n = helper.make_node
    nodes = [n("ReduceMean", ["x"], ["mu"], name="mean", axes=[-1]),
             n("Sub", ["x", "mu"], ["d"], name="sub"),
             n("Pow", ["d", "two"], ["d2"], name="pow"),
             n("ReduceMean", ["d2"], ["var"], name="var", axes=[-1]),
             n("Add", ["var", "eps"], ["var_eps"], name="eps_add"),
             n("Sqrt", ["var_eps"], ["std"], name="sqrt"),
             n("Div", ["d", "std"], ["norm"], name="div"),
             n("Mul", ["norm", "g"], ["scaled"], name="gamma"),
             n("Add", ["scaled", "b"], ["ln"], name="beta"),
             n("MatMul", ["ln", "w"], ["y"], name="fc"),
             n("Add", ["y", "ln"], ["out"], name="residual")]
    inits = [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
             numpy_helper.from_array(np.array(1e-5, np.float32), "eps"),
             numpy_helper.from_array(np.ones(8, np.float32), "g"),
             numpy_helper.from_array(np.zeros(8, np.float32), "b"),
             numpy_helper.from_array(np.eye(8, dtype=np.float32), "w")]
    graph = helper.make_graph(nodes, "ln", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 4, 8])], [helper.make_tensor_value_info(
            "out", TensorProto.FLOAT, [1, 4, 8])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    scope = transformer_scope(model)
    assert scope is not None
    ln_nodes = {k for k, v in scope.categories.items() if v == "layernorm"}
    assert ln_nodes == {"mean", "sub", "pow", "var", "eps_add", "sqrt", "div", "gamma", "beta"}
    assert scope.categories["residual"] == "residual" and scope.linear == ("fc",)
    counts = Counter(scope.categories.values())
    assert counts["layernorm"] == 9


def test_embedding_tables_are_stored_int8_and_dequantized_after_the_lookup():
    model = canonicalize(tiny_block())[0]
    changed = quantize_embeddings(model, min_elements=0)
    assert changed == ["embed"]
    gather = next(n for n in model.graph.node if n.name == "embed")
    table = next(i for i in model.graph.initializer if i.name == gather.input[0])
    assert table.data_type == TensorProto.INT8 and list(table.dims) == [50, 32]
    users = [n for n in model.graph.node if gather.output[0] in n.input]
    assert [u.op_type for u in users] == ["DequantizeLinear"]
    assert users[0].output[0] == "x"  # the float lookup keeps its name for its readers
    onnx.checker.check_model(model)
    reference = canonicalize(tiny_block())[0]
    sample = token_samples(1)[0]
    assert cosine(run(reference, sample), run(model, sample)) > 0.9999


def test_the_attention_mask_input_is_found(block):
    model, _ = block
    assert attention_mask_input(model) == "attention_mask"


def test_a_qtable_keeps_the_transformer_scope_around_its_float_islands(block):
    """Mixed precision on a transformer: the qtable's ops stay float and everything the
    scope keeps float (LayerNorm, Softmax, GELU, residual Adds) stays float too."""
    from lowbit.quantize.mixed.deploy import deploy_mixed

    model, table = block
    mixed = deploy_mixed(model, table.ranges, QuantizeSettings(), {"q_proj": "F32"},
                         skipped=table.skipped)
    q = mixed.model
    onnx.checker.check_model(q)
    assert {d.name for d in mixed.quantized} == LINEAR - {"q_proj"}
    assert not reads_dequantized(q, "q_proj", 1)  # its weight stays float
    for name in ("ln0", "ln1", "ln2", "softmax", "gelu_erf", "gelu_mul", "residual1"):
        node = next(n for n in q.graph.node if n.name == name)
        assert not any(reads_dequantized(q, name, i) for i in range(len(node.input))), name
    plain, _ = quantize_int8(model, table.ranges, QuantizeSettings(), skipped=table.skipped)
    feeds = stack(token_samples(6, seed=7))
    for i in range(6):
        sample = {k: v[i:i + 1] for k, v in feeds.items()}
        want = run(model, sample)
        assert cosine(want, run(q, sample)) >= cosine(want, run(plain.model, sample)) - 1e-3


def test_sensitivity_and_search_score_only_the_real_tokens(block):
    """Outputs at padded positions (attention mask 0) are read by nothing downstream: the
    qtable's scores must not count them."""
    from lowbit.quantize.int8.scope import real_token_masks
    from lowbit.quantize.mixed.search import output_cosine
    from lowbit.quantize.mixed.sensitivity import _score

    model, _ = block
    feeds = token_samples(4)
    masks = real_token_masks(model, feeds)
    assert all(m is not None and np.array_equal(m, f["attention_mask"].astype(bool))
               for m, f in zip(masks, feeds, strict=True))
    assert masks[1] is not None and not masks[1].all()  # the padded sample
    rng = np.random.default_rng(0)
    reference = [[rng.normal(size=(1, m.shape[1], 8))] for m in masks if m is not None]
    garbled = []
    for ref, mask in zip(reference, masks, strict=True):
        out = ref[0].copy()
        out[~mask] = 1e3  # wrong only where the padding is
        garbled.append([out])
    assert output_cosine(reference, garbled, masks) == pytest.approx(1.0)
    assert output_cosine(reference, garbled) < 0.9
    assert _score(reference, garbled, masks)[1] == pytest.approx(1.0)
    assert _score(reference, garbled)[1] < 0.9
