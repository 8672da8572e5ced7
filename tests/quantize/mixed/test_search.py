"""search_mixed: measured targets, the planted layer chosen alone, counted passes."""

import numpy as np
import pytest

from lowbit.errors import UsageError
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.quantize.mixed.search import Target, search_mixed
from tests.quantize.mixed.test_sensitivity import planted_outlier_model


def test_planted_layer_alone_meets_cos_0999():
    model, ranges, samples = planted_outlier_model()
    result = search_mixed(model, ranges, QuantizeSettings(), samples, "cos=0.999")
    assert result.met and result.qtable.precisions == {"conv_b": "F32"}
    assert result.path[0].action == "all INT8" and not result.path[0].met
    assert result.path[-1].met and result.path[-1].metric >= 0.999
    assert result.qtable.loss is not None and result.qtable.loss[0].name == "conv_b"
    # Reference + all-INT8 + one checked set, each over every sample, plus the ranking.
    assert result.ranking is not None
    n = len(samples)
    assert result.forward_passes == pytest.approx(3 * n + result.ranking.forward_passes)


def test_pruning_keeps_the_target_and_every_step_is_measured():
    model, ranges, samples = planted_outlier_model()
    result = search_mixed(model, ranges, QuantizeSettings(), samples, Target("cos", 0.99999))
    final = frozenset(result.qtable.precisions)
    measured = {frozenset(step.added_ops): step for step in result.path}
    assert result.met and measured[final].met and measured[final].metric >= 0.99999
    assert "conv_b" in final and len(final) < 5
    for step in result.path:
        assert step.met == (step.metric >= 0.99999)
    tried = {step.action: step for step in result.path}
    for name in final:  # the pruning pass tried dropping every chosen op, the last included
        assert not tried[f"without {name}"].met


def test_all_int8_good_enough_gives_an_empty_table():
    model, ranges, samples = planted_outlier_model()
    result = search_mixed(model, ranges, QuantizeSettings(), samples, "cos=-1")
    assert result.met and result.qtable.precisions == {} and len(result.path) == 1
    assert result.ranking is None and result.forward_passes == 2 * len(samples)


def test_top1_drop_with_labels_and_f16_fallback():
    model, ranges, samples = planted_outlier_model()
    from lowbit.runtime.ort import create_session

    session = create_session(model)
    labels = np.array([int(np.argmax(session.run(None, s)[0])) for s in samples])
    result = search_mixed(model, ranges, QuantizeSettings(), samples, "top1-drop=0",
                          labels=labels, fallback="F16")
    assert result.met and set(result.qtable.precisions.values()) == {"F16"}
    assert result.path[-1].metric <= 0


def test_max_steps_and_bad_targets():
    model, ranges, samples = planted_outlier_model()
    result = search_mixed(model, ranges, QuantizeSettings(), samples, "cos=1.0", max_steps=2)
    assert len({frozenset(s.added_ops) for s in result.path}) <= 3
    with pytest.raises(UsageError, match="cos=0.99, sqnr=30 or top1-drop"):
        Target.parse("cosine")
    with pytest.raises(UsageError, match="unknown target"):
        Target.parse("top5=1")
    with pytest.raises(UsageError, match="needs labels"):
        search_mixed(model, ranges, QuantizeSettings(), samples, "top1-drop=1")
    with pytest.raises(UsageError, match="fallback 'INT4'"):
        search_mixed(model, ranges, QuantizeSettings(), samples, "cos=0.9", fallback="INT4")


def test_pruning_two_at_a_time_chooses_as_one_at_a_time():
    """With ``measure_many`` (workers) the pruning pass measures the next two drops at
    once: every set gets the metric one process gives it, the choice and each step are
    those of the one-at-a-time search, and the pass takes fewer rounds."""
    from lowbit.quantize.mixed.search import Judge

    model, ranges, samples = planted_outlier_model()
    goal = Target("cos", 0.99999)
    alone = search_mixed(model, ranges, QuantizeSettings(), samples, goal)
    worker = Judge(model, ranges, QuantizeSettings(), list(samples), goal, None, "F32", None)
    rounds: list[int] = []

    def measure_many(sets):
        rounds.append(len(sets))
        return [worker.metric(ops) for ops in sets]

    paired = search_mixed(model, ranges, QuantizeSettings(), samples, goal,
                          measure_many=measure_many)
    assert paired.qtable.precisions == alone.qtable.precisions
    assert [(s.added_ops, s.met, s.action) for s in paired.path] == \
        [(s.added_ops, s.met, s.action) for s in alone.path]
    for a, b in zip(paired.path, alone.path, strict=True):
        assert a.metric == pytest.approx(b.metric, abs=1e-9)
    assert rounds and all(count == 2 for count in rounds)
    pruned = sum(step.action.startswith("without ") for step in alone.path)
    assert pruned > 1 and len(rounds) < pruned  # pairs: fewer rounds than one-by-one trials
