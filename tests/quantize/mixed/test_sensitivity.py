"""Sensitivity ranking: a planted outlier layer ranks first; the suffix method measures
exactly what running each mixed model whole measures; passes are counted."""

import numpy as np
import pytest
from onnx import TensorProto, helper

from lowbit.analysis.metrics import cosine, sqnr_db
from lowbit.errors import DatasetError
from lowbit.passes import canonicalize
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.quantize.mixed.deploy import deploy_mixed
from lowbit.quantize.mixed.sensitivity import candidate_ops, node_costs, rank_sensitivity
from lowbit.runtime.ort import create_session
from tests.models import init, make_model, minmax_ranges, small_resnet


def planted_outlier_model(seed: int = 0):
    """conv_a → relu → conv_b → relu → conv_c → GAP → fc, where conv_a's output channel 0
    is 1000× the others and conv_b divides it back: per-tensor INT8 on conv_b's input
    flattens channels 1-7, so conv_b is THE sensitive layer."""
    rng = np.random.default_rng(seed)

    def conv_w(cout, cin):
        return (rng.normal(size=(cout, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))).astype(np.float32)

    w_a, b_a = conv_w(8, 4), rng.uniform(0.1, 0.3, 8).astype(np.float32)
    w_a[0], b_a[0] = np.abs(w_a[0]) * 1000.0, 300.0   # channel 0: large and positive
    w_b = conv_w(8, 8)
    w_b[:, 0] /= 1000.0
    nodes = [
        helper.make_node("Conv", ["x", "w_a", "b_a"], ["t_a"], pads=[1, 1, 1, 1], name="conv_a"),
        helper.make_node("Relu", ["t_a"], ["r_a"], name="relu_a"),
        helper.make_node("Conv", ["r_a", "w_b"], ["t_b"], pads=[1, 1, 1, 1], name="conv_b"),
        helper.make_node("Relu", ["t_b"], ["r_b"], name="relu_b"),
        helper.make_node("Conv", ["r_b", "w_c"], ["t_c"], pads=[1, 1, 1, 1], name="conv_c"),
        helper.make_node("GlobalAveragePool", ["t_c"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1, name="fc"),
    ]
    inits = [init("w_a", w_a), init("b_a", b_a), init("w_b", w_b), init("w_c", conv_w(8, 8)),
             init("fc_w", (rng.normal(size=(10, 8)) * 0.5).astype(np.float32)),
             init("fc_b", np.zeros(10, np.float32))]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                             ["N", 4, 8, 8])],
                       [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
                       inits)
    model, _ = canonicalize(model)
    x = np.abs(rng.normal(size=(12, 4, 8, 8))).astype(np.float32)
    return model, minmax_ranges(model, {"x": x}), [{"x": x[i:i + 1]} for i in range(len(x))]


def _whole_model_scores(model, ranges, samples, name, precision="F32"):
    mixed = deploy_mixed(model, ranges, QuantizeSettings(), {name: precision}).model
    ref_session, session = create_session(model), create_session(mixed)
    ref = np.concatenate([ref_session.run(None, s)[0] for s in samples])
    got = np.concatenate([session.run(None, s)[0] for s in samples])
    cos = np.mean([cosine(ref[i], got[i]) for i in range(len(ref))])
    return sqnr_db(ref, got), cos


def test_planted_layer_ranks_first_by_far():
    model, ranges, samples = planted_outlier_model()
    result = rank_sensitivity(model, ranges, QuantizeSettings(), samples)
    assert [r.order for r in result.rows] == list(range(1, len(result.rows) + 1))
    assert result.rows[0].name == "conv_b"
    assert result.rows[0].sqnr_db > result.rows[1].sqnr_db + 10
    assert {r.name for r in result.rows} == {"conv_a", "conv_b", "conv_c", "gap", "fc"}
    sqnrs = [r.sqnr_db for r in result.rows]
    assert sqnrs == sorted(sqnrs, reverse=True)


@pytest.mark.parametrize("precision", ["F32", "F16"])
def test_suffix_runs_measure_what_whole_mixed_models_measure(precision):
    model, _ = canonicalize(small_resnet())
    x = np.random.default_rng(3).normal(size=(6, 3, 16, 16)).astype(np.float32)
    ranges = minmax_ranges(model, {"input": x})
    samples = [{"input": x[i:i + 1]} for i in range(6)]
    result = rank_sensitivity(model, ranges, QuantizeSettings(), samples, precision=precision)
    for row in result.rows:
        sqnr, cos = _whole_model_scores(model, ranges, samples, row.name, precision)
        assert row.sqnr_db == pytest.approx(sqnr, abs=1e-6), row.name
        assert row.cosine == pytest.approx(cos, abs=1e-9), row.name


def test_forward_passes_are_counted_and_below_naive():
    model, ranges, samples = planted_outlier_model()
    n = 5
    result = rank_sensitivity(model, ranges, QuantizeSettings(), samples, num=n)
    candidates = len(result.rows)
    assert result.samples == n
    # F32 reference + INT8 model with boundaries exposed + one suffix run per candidate.
    assert result.runs == n * (2 + candidates)
    naive = n * (1 + candidates)  # reference + every mixed model run whole
    assert 2 * n < result.forward_passes < naive
    costs = node_costs(model)
    # The classifier's suffix is a sliver of the model; conv_a's is nearly all of it.
    assert costs["conv_a"] > 100 * costs["fc"]
    again = rank_sensitivity(model, ranges, QuantizeSettings(), samples, num=n)
    assert again.forward_passes == result.forward_passes and again.rows == result.rows


def test_candidates_are_the_ops_with_their_own_int8_output():
    model, ranges, _ = planted_outlier_model()
    ops = dict(candidate_ops(model, ranges, QuantizeSettings()))
    assert ops == {"conv_a": "Conv", "conv_b": "Conv", "conv_c": "Conv",
                   "gap": "GlobalAveragePool", "fc": "Gemm"}  # no Flatten, no folded Relu


def test_no_samples_is_a_dataset_error():
    model, ranges, _ = planted_outlier_model()
    with pytest.raises(DatasetError):
        rank_sensitivity(model, ranges, QuantizeSettings(), [])
