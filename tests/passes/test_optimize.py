"""optimize(): per-pass steps, the summary line, the caller's model untouched."""

from __future__ import annotations

import onnx
import pytest

from lowbit.errors import UsageError
from lowbit.passes import DEFAULT_PASSES, optimize
from tests.passes.checks import assert_invariants, assert_same_outputs, ops
from tests.passes.zoo import conv_bn_relu, shape_subgraph


def test_steps_count_nodes_and_rewrites_per_pass() -> None:
    model, feeds = conv_bn_relu()
    result = optimize(model)
    assert [s.name for s in result.steps] == list(DEFAULT_PASSES)
    assert result.nodes_before == 12 and result.nodes_after == 7
    by_name = {s.name: s for s in result.steps}
    assert by_name["fold_batchnorm"].rewrites == 3
    assert by_name["fold_batchnorm"].nodes_before - by_name["fold_batchnorm"].nodes_after == 3
    assert ops(result.model) == ["Conv", "Relu", "Conv", "Relu", "GlobalAveragePool", "Flatten",
                                 "Gemm"]
    assert result.summary().startswith("12 → 7 nodes: ")
    assert "fold_batchnorm 3" in result.summary()
    assert_same_outputs(model, result.model, feeds)


def test_chosen_passes_run_in_the_order_given() -> None:
    model, feeds = shape_subgraph()
    result = optimize(model, ["fold_constants", "collapse_reshapes"])
    assert [s.name for s in result.steps] == ["fold_constants", "collapse_reshapes"]
    assert result.steps[1].rewrites >= 2
    assert ops(result.model).count("Reshape") == 1
    assert "Shape" not in ops(result.model)
    assert_invariants(result.model)
    assert_same_outputs(model, result.model, feeds)


def test_the_callers_model_is_not_changed() -> None:
    model, _ = conv_bn_relu()
    before = model.SerializeToString()
    optimize(model)
    assert model.SerializeToString() == before


def test_no_passes_only_sorts_and_names() -> None:
    model, feeds = conv_bn_relu()
    result = optimize(model, [])
    assert result.steps == () and result.nodes_after == 12
    assert result.summary() == "12 → 12 nodes"
    assert_same_outputs(model, result.model, feeds)


def test_an_unknown_pass_fails_before_any_work() -> None:
    model, _ = conv_bn_relu()
    with pytest.raises(UsageError, match="unknown graph pass 'fold_all'; registered passes: "):
        optimize(model, ["fold_constants", "fold_all"])


def test_optimized_model_round_trips_through_onnx() -> None:
    model, feeds = conv_bn_relu()
    out = optimize(model).model
    again = onnx.ModelProto.FromString(out.SerializeToString())
    assert_same_outputs(model, again, feeds)
