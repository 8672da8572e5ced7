"""deploy_mixed: F32 and F16 islands in an INT8 graph, checked, run, and closer to F32."""

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from lowbit.analysis.metrics import cosine
from lowbit.errors import UsageError
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.quantize.mixed.deploy import BF16_NOTE, deploy_mixed
from lowbit.quantize.mixed.qtable import QTable
from lowbit.runtime.ort import create_session
from tests.quantize.int8.test_rules import no_dq_q_pairs
from tests.quantize.mixed.test_sensitivity import planted_outlier_model


def _outputs(model, samples):
    session = create_session(model)
    return np.concatenate([session.run(None, s)[0] for s in samples])


def _node(model, name):
    return next(n for n in model.graph.node if n.name == name)


def _producers(model):
    return {o: n for n in model.graph.node for o in n.output}


def test_f32_op_stays_float_reads_float_and_beats_all_int8():
    model, ranges, samples = planted_outlier_model()
    int8 = deploy_mixed(model, ranges, QuantizeSettings(), {})
    mixed = deploy_mixed(model, ranges, QuantizeSettings(), QTable({"conv_b": "F32"}))
    onnx.checker.check_model(mixed.model, full_check=True)
    assert ("conv_b", "kept F32 by the qtable") in {(d.name, d.reason) for d in mixed.left_float}
    assert mixed.precisions == {"conv_b": "F32", "relu_b": "F32"}  # its Relu joins it
    assert no_dq_q_pairs(mixed.model)
    conv_b, producers = _node(mixed.model, "conv_b"), _producers(mixed.model)
    inits = {i.name: i for i in mixed.model.graph.initializer}
    assert inits[conv_b.input[1]].data_type == TensorProto.FLOAT   # float weights, no DQ
    relu_a = producers[conv_b.input[0]]                           # float input, no Q/DQ:
    assert relu_a.op_type == "Relu" and producers[relu_a.input[0]].op_type == "Conv"
    ref = _outputs(model, samples)
    # 0.9995, not 0.9999: CPUs without VNNI quantize the remaining weights to 7 bits.
    assert cosine(ref, _outputs(mixed.model, samples)) > 0.9995
    assert cosine(ref, _outputs(mixed.model, samples)) > cosine(ref, _outputs(int8.model,
                                                                              samples))
    counts = Counter(n.op_type for n in mixed.model.graph.node)
    assert counts["QuantizeLinear"] < Counter(n.op_type for n in int8.model.graph.node)[
        "QuantizeLinear"]


def test_f16_island_casts_at_its_boundary_and_runs_on_ort():
    model, ranges, samples = planted_outlier_model()
    mixed = deploy_mixed(model, ranges, QuantizeSettings(), {"conv_b": "F16", "conv_c": "F16"})
    onnx.checker.check_model(mixed.model, full_check=True)
    graph = mixed.model.graph
    inits = {i.name: i for i in graph.initializer}
    for name in ("conv_b", "conv_c"):
        node = _node(mixed.model, name)
        assert inits[node.input[1]].data_type == TensorProto.FLOAT16
    casts = [n for n in graph.node if n.op_type == "Cast"]
    to = Counter(next(a.i for a in n.attribute if a.name == "to") for n in casts)
    # One Cast into the island, one out; conv_b → relu_b → conv_c talk in float16.
    assert to == {TensorProto.FLOAT16: 1, TensorProto.FLOAT: 1}
    producers = _producers(mixed.model)
    assert not any(n.op_type == "Cast" and producers.get(n.input[0]) is not None
                   and producers[n.input[0]].op_type == "Cast" for n in casts)
    ref = _outputs(model, samples)
    assert cosine(ref, _outputs(mixed.model, samples)) > 0.999
    assert mixed.notes == []


def test_bf16_island_is_checked_and_the_result_says_ort_may_not_run_it():
    model, ranges, _ = planted_outlier_model()
    mixed = deploy_mixed(model, ranges, QuantizeSettings(), {"conv_b": "BF16", "fc": "BF16"})
    onnx.checker.check_model(mixed.model, full_check=True)
    assert BF16_NOTE in mixed.notes
    # Conv has no bfloat16 at opset 17: it stays F32 and the result says so.
    assert mixed.precisions["conv_b"] == "F32" and mixed.precisions["fc"] == "BF16"
    fc = _node(mixed.model, "fc")
    inits = {i.name: i for i in mixed.model.graph.initializer}
    assert inits[fc.input[1]].data_type == TensorProto.BFLOAT16
    assert any("conv_b (Conv) kept F32, not BF16" in note for note in mixed.notes)


def test_unknown_qtable_name_is_a_usage_error():
    model, ranges, _ = planted_outlier_model()
    with pytest.raises(UsageError, match="not_there"):
        deploy_mixed(model, ranges, QuantizeSettings(), {"not_there": "F32"})
