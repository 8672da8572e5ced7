"""F16 / BF16 conversion: valid graphs, the right types on every slot, numbers close to F32."""

from __future__ import annotations

import functools
import importlib.util
import logging
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from lowbit.analysis.metrics import cosine
from lowbit.errors import UsageError
from lowbit.passes.canonical import canonicalize
from lowbit.quantize.floats.convert import DEFAULT_KEEP_FLOAT, FloatSettings, convert_float
from lowbit.runtime.ort import cannot_run as check_runs_on_ort
from lowbit.runtime.ort import create_session
from tests.models import init, make_model, small_resnet


def _bench_models():
    """bench/models.py (ResNet-18 builder), loaded by path: bench/ is not a package."""
    path = Path(__file__).resolve().parents[3] / "bench" / "models.py"
    spec = importlib.util.spec_from_file_location("lowbit_bench_models", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LOW = {"F16": TensorProto.FLOAT16, "BF16": TensorProto.BFLOAT16}
COMBOS = [(p, m) for p in ("F16", "BF16") for m in ("cast", "full")]
RNG = np.random.default_rng(3)


def tiny_mixed() -> onnx.ModelProto:
    """Conv, a shape computation in float, Resize by sizes and by scales (with roi), Pad with
    a constant value, Clip, LayerNormalization, Range, an existing Cast to FLOAT, Softmax."""
    rng = np.random.default_rng(0)
    f = np.float32
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Shape", ["c"], ["sh"], name="shape"),
        helper.make_node("Cast", ["sh"], ["shf"], to=TensorProto.FLOAT, name="shape_to_float"),
        helper.make_node("Mul", ["shf", "two"], ["shm"], name="shape_mul"),
        helper.make_node("Cast", ["shm"], ["shi"], to=TensorProto.INT64, name="shape_to_int"),
        helper.make_node("Resize", ["c", "", "", "shi"], ["rs"], mode="nearest",
                         name="resize_sizes"),
        helper.make_node("Resize", ["c", "roi", "scales"], ["rl"], mode="linear",
                         name="resize_scales"),
        helper.make_node("Add", ["rs", "rl"], ["features"], name="add_resized"),
        helper.make_node("Pad", ["features", "pads", "pad_value"], ["p"], name="pad"),
        helper.make_node("Clip", ["p", "clip_min", "clip_max"], ["cl"], name="clip"),
        helper.make_node("LayerNormalization", ["cl", "ln_scale", "ln_bias"], ["ln"], axis=-1,
                         name="layernorm"),
        helper.make_node("Range", ["r_start", "r_limit", "r_delta"], ["rg"], name="range"),
        helper.make_node("Mul", ["rg", "r_scale"], ["rgs"], name="range_scale"),
        helper.make_node("Add", ["ln", "rgs"], ["ln2"], name="add_range"),
        helper.make_node("Cast", ["ln2"], ["cf"], to=TensorProto.FLOAT, name="existing_cast"),
        helper.make_node("Softmax", ["cf"], ["probs"], axis=-1, name="softmax"),
    ]
    inits = [init("w", (rng.normal(size=(4, 4, 3, 3)) * 0.3).astype(f)),
             init("b", rng.normal(0, 0.1, 4).astype(f)),
             init("two", np.array([1, 1, 2, 2], f)),
             init("roi", np.zeros(0, f)), init("scales", np.array([1, 1, 2, 2], f)),
             init("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)),
             init("pad_value", np.array(0.5, f)),
             init("clip_min", np.array(-1.0, f)), init("clip_max", np.array(2.0, f)),
             init("ln_scale", rng.uniform(0.5, 1.5, 18).astype(f)),
             init("ln_bias", rng.normal(0, 0.1, 18).astype(f)),
             init("r_start", np.array(0.0, f)), init("r_limit", np.array(18.0, f)),
             init("r_delta", np.array(1.0, f)), init("r_scale", np.array(0.01, f))]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])]
    outputs = [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 4, 18, 18]),
               helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 4, 16, 16])]
    return canonicalize(make_model(nodes, inputs, outputs, inits))[0]


def resnet() -> onnx.ModelProto:
    return canonicalize(small_resnet())[0]


@functools.cache
def _resnet18_bytes() -> bytes:
    model = _bench_models().resnet18(batch=1)
    return canonicalize(model, input_shapes={"input": (1, 3, 64, 64)})[0].SerializeToString()


def resnet18() -> onnx.ModelProto:
    return onnx.ModelProto.FromString(_resnet18_bytes())


MODELS = {"tiny": tiny_mixed, "resnet": resnet}
FEEDS = {"tiny": lambda: {"x": RNG.normal(size=(1, 4, 8, 8)).astype(np.float32)},
         "resnet": lambda: {"input": RNG.normal(size=(2, 3, 16, 16)).astype(np.float32)},
         "resnet18": lambda: {"input": RNG.normal(size=(1, 3, 64, 64)).astype(np.float32)}}


# -- helpers ------------------------------------------------------------------------------
def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.output, *g.value_info)}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


def _check_valid(model: onnx.ModelProto, original: onnx.ModelProto) -> dict[str, int]:
    onnx.checker.check_model(model, full_check=True)
    types = _types(model)
    known = {v.name for v in model.graph.input} | {t.name for t in model.graph.initializer}
    for node in model.graph.node:  # topological order
        missing = [i for i in node.input if i and i not in known]
        assert not missing, f"{node.name} reads {missing} before they are produced"
        known.update(node.output)
    added = {n.name for n in model.graph.node} - {n.name for n in original.graph.node}
    for node in model.graph.node:
        if node.op_type == "Cast":
            to = node.attribute[0].i
            assert types[node.output[0]] == to
            if node.name in added:  # no Cast that changes nothing
                assert types[node.input[0]] != to, node.name
    return types


def _producer(model: onnx.ModelProto, tensor: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if tensor in n.output)


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(o, np.float32) for o in create_session(model).run(None, feeds)]


def _rel_error(ref: np.ndarray, out: np.ndarray) -> float:
    return float(np.abs(ref - out.astype(np.float32)).max() / np.abs(ref).max())


def _reference_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(o, np.float32) for o in ReferenceEvaluator(model).run(None, feeds)]


# -- settings ------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [{"precision": "F8"}, {"precision": "f16"},
                                    {"precision": "F16", "method": "half"},
                                    {"precision": "F16", "keep_float": "Softmax"},
                                    {"precision": "F16", "keep_float": ("",)}])
def test_bad_settings_are_usage_errors(kwargs):
    with pytest.raises(UsageError):
        FloatSettings(**kwargs)


def test_keep_float_entry_that_is_neither_op_nor_node_is_a_usage_error():
    with pytest.raises(UsageError, match="'SoftMax'"):
        convert_float(tiny_mixed(), FloatSettings("F16", keep_float=("SoftMax",)))


def test_keep_float_takes_node_names_and_op_types():
    result = convert_float(resnet(), FloatSettings("F16", keep_float=("fc", "MaxPool")))
    kept = {k.name: k.reason for k in result.kept_float}
    assert "fc" in kept and "pool" in kept
    assert "fc" not in result.converted and "stem_conv" in result.converted


# -- structure -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("precision,method", COMBOS)
@pytest.mark.parametrize("keep_io", [True, False])
def test_graph_is_valid_and_io_types_follow_keep_io_types(name, precision, method, keep_io):
    original = MODELS[name]()
    result = convert_float(original, FloatSettings(precision, method, keep_io_types=keep_io))
    _check_valid(result.model, original)
    want = TensorProto.FLOAT if keep_io else LOW[precision]
    g = result.model.graph
    assert [v.name for v in g.input] == [v.name for v in original.graph.input]
    assert [v.name for v in g.output] == [v.name for v in original.graph.output]
    assert {v.type.tensor_type.elem_type for v in (*g.input, *g.output)} == {want}
    assert result.converted


@pytest.mark.parametrize("precision,method", COMBOS)
def test_typed_slots_of_tiny_model(precision, method):
    low = LOW[precision]
    result = convert_float(tiny_mixed(), FloatSettings(precision, method))
    types = _check_valid(result.model, tiny_mixed())
    nodes = {n.name: n for n in result.model.graph.node}
    # Data-typed operands follow the data; fixed and integer operands do not.
    for node, index in (("pad", 2), ("clip", 1), ("clip", 2), ("conv", 1), ("conv", 2)):
        assert types[nodes[node].input[index]] == low, (node, index)
    assert types[nodes["resize_scales"].input[2]] == TensorProto.FLOAT  # scales: tensor(float)
    assert types[nodes["pad"].input[1]] == TensorProto.INT64
    assert types[nodes["resize_scales"].output[0]] == low
    # An existing Cast to FLOAT that is converted now casts to the low type.
    assert nodes["existing_cast"].attribute[0].i == low
    # Float arithmetic on shapes stays F32 (float16 would round sizes above 2048).
    kept = {k.name: k.reason for k in result.kept_float}
    assert {"shape_to_float", "shape_mul", "shape_to_int"} <= set(kept)
    assert types["shm"] == TensorProto.FLOAT and "range" in kept
    # In 'full' the weights are stored low; in 'cast' they stay F32 behind a Cast.
    w_type = {t.name: t.data_type for t in result.model.graph.initializer}["w"]
    assert w_type == (low if method == "full" else TensorProto.FLOAT)
    if method == "cast":
        assert _producer(result.model, nodes["conv"].input[1]).op_type == "Cast"


@pytest.mark.parametrize("precision", ["F16", "BF16"])
@pytest.mark.parametrize("keep_io", [True, False])
def test_softmax_and_layernorm_run_in_f32_between_casts(precision, keep_io):
    result = convert_float(tiny_mixed(), FloatSettings(precision, keep_io_types=keep_io))
    types = _check_valid(result.model, tiny_mixed())
    nodes = {n.name: n for n in result.model.graph.node}
    for name in ("softmax", "layernorm"):
        node = nodes[name]
        assert types[node.input[0]] == types[node.output[0]] == TensorProto.FLOAT
        cast_in = _producer(result.model, node.input[0])
        assert cast_in.op_type == "Cast" and cast_in.attribute[0].i == TensorProto.FLOAT
    assert {"softmax", "layernorm"} <= {k.name for k in result.kept_float}
    ln_users = [n for n in result.model.graph.node if nodes["layernorm"].output[0] in n.input]
    assert [(n.op_type, n.attribute[0].i) for n in ln_users] == [("Cast", LOW[precision])]
    if not keep_io:  # the F32 Softmax output is cast back to the low type at the boundary
        last = _producer(result.model, "probs")
        assert last.op_type == "Cast" and last.input[0] == nodes["softmax"].output[0]


def test_default_keep_float_set():
    assert {"Softmax", "LogSoftmax", "LayerNormalization", "ReduceMean", "ReduceSum",
            "ReduceSumSquare", "Exp", "Log", "Pow", "TopK"} == set(DEFAULT_KEEP_FLOAT)


def test_bf16_upgrades_to_opset_22_so_conv_can_be_bfloat16():
    result = convert_float(resnet(), FloatSettings("BF16", "full"))
    opset = {o.domain: o.version for o in result.model.opset_import}[""]
    assert opset >= 22
    assert "stem_conv" in result.converted and not result.kept_float


# -- weights -------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["F16", "BF16"])
def test_full_halves_the_weights_and_cast_keeps_them(precision):
    original = resnet18()
    full = convert_float(original, FloatSettings(precision, "full")).model
    cast = convert_float(original, FloatSettings(precision, "cast")).model

    def weight_bytes(m: onnx.ModelProto) -> int:
        return sum(len(t.raw_data) or numpy_helper.to_array(t).nbytes for t in m.graph.initializer)

    assert 0.49 < weight_bytes(full) / weight_bytes(original) < 0.51
    assert weight_bytes(cast) == weight_bytes(original)


def test_bf16_weights_round_to_nearest_even():
    original = resnet()
    result = convert_float(original, FloatSettings("BF16", "full"))
    before = {t.name: numpy_helper.to_array(t) for t in original.graph.initializer}
    for tensor in result.model.graph.initializer:
        if tensor.data_type == TensorProto.BFLOAT16:
            got = numpy_helper.to_array(tensor)
            assert got.dtype == ml_dtypes.bfloat16
            want = before[tensor.name].astype(ml_dtypes.bfloat16)  # ml_dtypes: RNE
            assert np.array_equal(got.view(np.uint16), want.view(np.uint16)), tensor.name


def _big_weight_model() -> onnx.ModelProto:
    w = np.array([[1e5, -2e5], [0.5, 1.0]], np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w_big"], ["y0"], name="matmul"),
             helper.make_node("Mul", ["y0", "tiny"], ["y"], name="scale")]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                       [init("w_big", w), init("tiny", np.array(1e-3, np.float32))])
    return canonicalize(model)[0]


@pytest.mark.parametrize("method", ["cast", "full"])
def test_f16_weights_beyond_65504_are_clamped_with_a_warning(method, caplog):
    with caplog.at_level(logging.WARNING, logger="lowbit.quantize.floats.rewrite"):
        result = convert_float(_big_weight_model(), FloatSettings("F16", method))
    assert [(c.tensor, c.count) for c in result.clamped] == [("w_big", 2)]
    assert any("w_big" in r.getMessage() and "65504" in r.getMessage() for r in caplog.records)
    out = _run(result.model, {"x": np.ones((1, 2), np.float32)})[0]
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, [[65.504, -65.503]], rtol=1e-3)


def test_bf16_does_not_clamp():
    result = convert_float(_big_weight_model(), FloatSettings("BF16", "full"))
    assert result.clamped == []


# -- numbers -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tiny", "resnet", "resnet18"])
@pytest.mark.parametrize("method", ["cast", "full"])
def test_f16_runs_on_ort_close_to_f32(name, method):
    original = resnet18() if name == "resnet18" else MODELS[name]()
    result = convert_float(original, FloatSettings("F16", method))
    assert check_runs_on_ort(result.model) is None
    feeds = FEEDS[name]()
    for ref, out in zip(_run(original, feeds), _run(result.model, feeds), strict=True):
        assert out.dtype == np.float32
        assert _rel_error(ref, out) < 2e-3
        assert cosine(ref, out) > 0.9999


def test_f16_with_low_io_types_takes_float16_inputs():
    original = resnet()
    result = convert_float(original, FloatSettings("F16", "full", keep_io_types=False))
    feeds = FEEDS["resnet"]()
    out = create_session(result.model).run(None, {"input": feeds["input"].astype(np.float16)})[0]
    assert out.dtype == np.float16
    assert _rel_error(_run(original, feeds)[0], out) < 2e-3


@pytest.mark.parametrize("name", ["tiny", "resnet"])
@pytest.mark.parametrize("method", ["cast", "full"])
def test_bf16_close_to_f32_on_the_reference_evaluator(name, method):
    original = MODELS[name]()
    result = convert_float(original, FloatSettings("BF16", method))
    feeds = FEEDS[name]()
    for ref, out in zip(_run(original, feeds), _reference_run(result.model, feeds), strict=True):
        assert _rel_error(ref, out) < 2e-2
        assert cosine(ref, out) > 0.999


def test_bf16_resnet18_on_openvino(tmp_path):
    ov = pytest.importorskip("openvino")
    original = resnet18()
    result = convert_float(original, FloatSettings("BF16", "full"))
    core = ov.Core()
    compiled = core.compile_model(core.read_model(result.model.SerializeToString(), b""), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    feeds = FEEDS["resnet18"]()
    ref = _run(original, feeds)[0]
    out = np.asarray(compiled(feeds)[compiled.outputs[0]], np.float32)
    assert _rel_error(ref, out) < 3e-2
    assert cosine(ref, out) > 0.999


def test_ort_check_gives_one_line_for_bf16():
    result = convert_float(resnet(), FloatSettings("BF16", "full"))
    reason = check_runs_on_ort(result.model)
    assert reason is not None and "\n" not in reason
    assert "BF16" in reason and "Conv" in reason and "openvino" in reason


# -- subgraphs and inputs ------------------------------------------------------------------
def _if_model() -> onnx.ModelProto:
    def vi(name, shape, elem=TensorProto.FLOAT):
        return helper.make_tensor_value_info(name, elem, shape)

    then_g = helper.make_graph([helper.make_node("Add", ["r", "one"], ["t"], name="then_add")],
                               "then", [], [vi("t", [1, 4])])
    else_g = helper.make_graph([helper.make_node("Sub", ["r", "one"], ["e"], name="else_sub")],
                               "else", [], [vi("e", [1, 4])])
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("If", ["cond"], ["i"], then_branch=then_g, else_branch=else_g,
                              name="if"),
             helper.make_node("Mul", ["i", "r"], ["y"], name="mul")]
    model = make_model(nodes, [vi("x", [1, 4]), vi("cond", [], TensorProto.BOOL)],
                       [vi("y", [1, 4])], [init("one", np.ones(4, np.float32))])
    return canonicalize(model)[0]


@pytest.mark.parametrize("precision,method", COMBOS)
def test_values_read_inside_subgraphs_stay_f32(precision, method):
    original = _if_model()
    result = convert_float(original, FloatSettings(precision, method))
    onnx.checker.check_model(result.model, full_check=True)
    assert [k.name for k in result.kept_float] == ["if"] and result.converted == ["relu", "mul"]
    if_node = next(n for n in result.model.graph.node if n.op_type == "If")
    branch_inputs = {i for a in if_node.attribute for n in a.g.node for i in n.input}
    types = {t.name: t.data_type for t in result.model.graph.initializer}
    assert types["one"] == TensorProto.FLOAT and "r" not in branch_inputs
    if precision == "F16":
        feeds = {"x": np.arange(4, dtype=np.float32).reshape(1, 4), "cond": np.array(False)}
        np.testing.assert_array_equal(_run(result.model, feeds)[0], _run(original, feeds)[0])


def test_input_model_is_not_modified():
    original = tiny_mixed()
    before = original.SerializeToString()
    convert_float(original, FloatSettings("F16", "full", keep_io_types=False))
    assert original.SerializeToString() == before


def test_ort_check_names_a_broken_model_in_one_line():
    model = tiny_mixed()
    model.graph.node[0].op_type = "NoSuchOp"
    reason = check_runs_on_ort(model)
    assert reason is not None and reason.startswith("ONNX Runtime cannot run") and "\n" not in reason
