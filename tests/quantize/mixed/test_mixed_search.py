"""deploy_mixed islands and the automatic search on a model with one planted sensitive layer."""

from collections import Counter

import numpy as np
import onnx
import pytest

from lowbit.analysis.metrics import cosine
from lowbit.quantize.int8.qdq import quantize_qdq
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.quantize.mixed.deploy import deploy_mixed
from lowbit.quantize.mixed.search import Target, search_mixed
from lowbit.runtime.ort import create_session
from tests.quantize.mixed.test_sensitivity import planted_outlier_model


def _outputs(model, samples):
    session = create_session(model)
    return np.concatenate([session.run(None, s)[0] for s in samples])


def _mean_cos(a, b):
    return float(np.mean([cosine(a[i], b[i]) for i in range(len(a))]))


@pytest.mark.parametrize("precision", ["F32", "F16"])
def test_island_runs_and_beats_all_int8(precision):
    model, ranges, samples = planted_outlier_model()
    reference = _outputs(model, samples)
    all_int8 = _outputs(quantize_qdq(model, ranges, QuantizeSettings()).model, samples)
    result = deploy_mixed(model, ranges, QuantizeSettings(), {"conv_b": precision})
    onnx.checker.check_model(result.model, full_check=True)
    mixed = _outputs(result.model, samples)
    assert _mean_cos(reference, mixed) > _mean_cos(reference, all_int8)
    conv_b = next(n for n in result.model.graph.node if n.name == "conv_b")
    producers = {o: n.op_type for n in result.model.graph.node for o in n.output}
    inits = {i.name: i.data_type for i in result.model.graph.initializer}
    weight_type = inits.get(conv_b.input[1]) or producers.get(conv_b.input[1])
    if precision == "F32":
        assert weight_type == onnx.TensorProto.FLOAT  # the float weight, not a DequantizeLinear
    else:
        assert producers.get(conv_b.input[0]) == "Cast"
    # no redundant DequantizeLinear → QuantizeLinear pair anywhere
    assert not any(n.op_type == "QuantizeLinear" and producers.get(n.input[0]) ==
                   "DequantizeLinear" for n in result.model.graph.node)


def test_search_finds_the_planted_layer_and_checks_by_running():
    model, ranges, samples = planted_outlier_model()
    reference = _outputs(model, samples)
    all_int8 = _mean_cos(reference, _outputs(
        quantize_qdq(model, ranges, QuantizeSettings()).model, samples))
    target = Target.parse(f"cos={min(0.9999, (1 + all_int8) / 2):.6f}")
    assert not target.holds(all_int8)
    result = search_mixed(model, ranges, QuantizeSettings(), samples, target)
    assert result.met and result.float_ops[0] == "conv_b"
    assert len(result.float_ops) <= 2 and result.forward_passes > 0
    assert result.path and result.path[-1].met
    # the claim is checked: build the chosen mixed model and measure it here
    mixed = deploy_mixed(model, ranges, QuantizeSettings(), result.qtable).model
    assert target.holds(_mean_cos(reference, _outputs(mixed, samples)))
    assert Counter(result.qtable.precisions.values()) == {"F32": len(result.float_ops)}
