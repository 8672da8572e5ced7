"""SmoothQuant: same function in float, smaller INT8 error where activations have outliers."""

from collections import Counter
from dataclasses import replace

import numpy as np
import onnx
import pytest

import lowbit
from lowbit.calibration.collect import collect_ranges
from lowbit.calibration.observers import CalibrationSettings
from lowbit.errors import CalibrationError, UsageError
from lowbit.passes import canonicalize
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.quantize.int8.static import quantize_int8
from lowbit.quantize.prepare.smoothquant import (
    channel_maxima,
    find_groups,
    recalibrate,
    smooth,
    smooth_for_int8,
    smooth_from_table,
)
from lowbit.runtime.ort import create_session
from tests.quantize.int8.tiny_transformer import linear_outliers_model, tiny_block, token_samples


def run(model, feeds):
    session = create_session(model.SerializeToString())
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in names})


def sqnr(ref, test):
    ref, test = ref.astype(np.float64), test.astype(np.float64)
    return 10 * np.log10(np.sum(ref**2) / np.sum((ref - test) ** 2))


def float_samples(count, seed=0, k=64, seq=16):
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((1, seq, k)).astype(np.float32)} for _ in range(count)]


def int8_model(model, samples):
    table = collect_ranges(model, samples, CalibrationSettings(), progress=False)
    result, _ = quantize_int8(model, table.ranges, QuantizeSettings(), skipped=table.skipped)
    return result.model, table


@pytest.fixture(scope="module")
def outliers():
    return linear_outliers_model(), float_samples(16), float_samples(4, seed=9)


def test_channel_maxima_are_the_max_abs_per_input_channel(outliers):
    model, calib, _ = outliers
    groups = find_groups(model)
    assert [g.matmuls for g in groups] == [("fc",)]
    maxima = channel_maxima(model, groups, calib)["h"]
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(onnx.helper.make_tensor_value_info("h", onnx.TensorProto.FLOAT,
                                                                 None))
    expected = np.max([np.abs(run(probe, s)[-1]).reshape(-1, 64).max(axis=0) for s in calib],
                      axis=0)
    np.testing.assert_allclose(maxima, expected, rtol=1e-6)
    assert maxima[:4].min() > 20 * maxima[4:].max()  # the planted 50x channels


def test_smoothing_keeps_the_function_and_folds_into_layernorm(outliers):
    model, calib, test = outliers
    groups = find_groups(model)
    result = smooth(model, groups, channel_maxima(model, groups, calib), alpha=0.5)
    assert result.groups[0].fold == "LayerNormalization ln"
    assert Counter(n.op_type for n in result.model.graph.node) == \
        Counter(n.op_type for n in model.graph.node)  # no op added
    assert result.changed == {"h"}
    assert result.range_after < result.range_before / 3
    for sample in test:
        np.testing.assert_allclose(run(result.model, sample)[0], run(model, sample)[0],
                                   rtol=1e-4, atol=1e-4)


def test_smoothing_makes_the_int8_error_much_smaller_with_planted_outliers(outliers):
    model, calib, test = outliers
    plain, table = int8_model(model, calib)
    groups = find_groups(model)
    smoothed = smooth(model, groups, channel_maxima(model, groups, calib), alpha=0.5)
    smooth_table = recalibrate(table, smoothed, calib)
    assert smooth_table.ranges["h"].threshold < table.ranges["h"].threshold / 3
    quantized = quantize_int8(smoothed.model, smooth_table.ranges, QuantizeSettings())[0].model
    before = np.mean([sqnr(run(model, s)[0], run(plain, s)[0]) for s in test])
    after = np.mean([sqnr(run(model, s)[0], run(quantized, s)[0]) for s in test])
    assert after > before + 6, (before, after)  # dB: a quarter of the error power (30 → 39 here)


def test_a_layernorm_output_read_elsewhere_gets_an_inserted_mul():
    model = linear_outliers_model(residual=True)
    calib = float_samples(8)
    groups = find_groups(model)
    result = smooth(model, groups, channel_maxima(model, groups, calib), alpha=0.5)
    assert result.groups[0].fold.startswith("Mul ")
    ops = Counter(n.op_type for n in result.model.graph.node)
    assert ops["Mul"] == 1
    for sample in float_samples(2, seed=4):
        for ours, ref in zip(run(result.model, sample), run(model, sample), strict=True):
            np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def test_the_attention_output_projection_folds_into_the_value_projection():
    model = canonicalize(tiny_block())[0]
    calib = token_samples(8)
    groups = find_groups(model)
    result = smooth(model, groups, channel_maxima(model, groups, calib), alpha=0.5)
    folds = {g.matmuls: g.fold for g in result.groups}
    assert folds[("o_proj",)] == "value v_proj"
    assert folds[("q_proj", "k_proj", "v_proj")].startswith("Mul ")  # h0 feeds the residual
    assert {"v_b", "context_heads", "context"} <= result.changed
    assert "SmoothQuant: α=0.5, 6 MatMuls" in result.summary()
    for sample in token_samples(3, seed=11):
        np.testing.assert_allclose(run(result.model, sample)[0], run(model, sample)[0],
                                   rtol=1e-3, atol=1e-3)


def test_auto_tries_the_grid_and_keeps_the_best_output_sqnr(outliers):
    model, calib, _ = outliers
    table = collect_ranges(model, calib, CalibrationSettings(), progress=False)
    outcome = smooth_for_int8(model, table, calib, "auto", QuantizeSettings(),
                              alphas=(0.0, 0.5, 0.8))
    assert set(outcome.scores) == {0.0, 0.5, 0.8}
    assert outcome.result.alpha == max(outcome.scores, key=outcome.scores.get)
    assert outcome.result.alpha > 0.0  # α = 0 leaves the outliers where they are
    assert "auto chose α" in outcome.summary()


def test_deploy_smooth_writes_the_note_and_checks_its_options(outliers, tmp_path):
    model, calib, _ = outliers
    src = tmp_path / "m.onnx"
    onnx.save(model, src)
    data = tmp_path / "calib.npz"
    np.savez(data, x=np.concatenate([s["x"] for s in calib]))
    table = lowbit.calibrate(src, data, output=tmp_path / "m.calib", progress=False)
    assert table.ranges
    result = lowbit.deploy(src, calibration_table=tmp_path / "m.calib", smooth="0.5",
                           smooth_data=data, output=tmp_path / "m.int8.onnx", test_input=data)
    assert result.passed
    assert result.notes[0].startswith("SmoothQuant: α=0.5, 1 MatMuls")
    # A number α needs no data: the table's channel ranges give the maxima.
    tabled = lowbit.deploy(src, calibration_table=tmp_path / "m.calib", smooth="0.5",
                           output=tmp_path / "m.table.onnx", test_input=data)
    assert tabled.passed
    assert tabled.notes[0].startswith("SmoothQuant: α=0.5, 1 MatMuls")
    assert "from the calibration table's channel ranges" in tabled.notes[0]
    with pytest.raises(UsageError, match="smooth_data or calibration_data"):  # auto: data
        lowbit.deploy(src, calibration_table=tmp_path / "m.calib", smooth="auto",
                      output=tmp_path / "x.onnx")
    lowbit.calibrate(src, data, output=tmp_path / "bare.calib", progress=False,
                     channel_ranges=False)
    with pytest.raises(UsageError, match="channel ranges"):
        lowbit.deploy(src, calibration_table=tmp_path / "bare.calib", smooth="0.5",
                      output=tmp_path / "x.onnx")
    with pytest.raises(UsageError, match=r"\[0, 1\]"):
        lowbit.deploy(src, calibration_table=tmp_path / "m.calib", smooth="1.5",
                      smooth_data=data, output=tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_the_table_keeps_each_linear_input_s_channel_extremes(outliers):
    model, calib, _ = outliers
    table = collect_ranges(model, calib, CalibrationSettings(), progress=False,
                           channel_ranges=True)
    assert set(table.channel_ranges) == {"h"}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(onnx.helper.make_tensor_value_info("h", onnx.TensorProto.FLOAT,
                                                                 None))
    values = np.concatenate([run(probe, s)[-1].reshape(-1, 64) for s in calib])
    low, high = table.channel_ranges["h"]
    np.testing.assert_allclose(low, values.min(axis=0), rtol=1e-6)
    np.testing.assert_allclose(high, values.max(axis=0), rtol=1e-6)
    assert not collect_ranges(model, calib, CalibrationSettings(), progress=False).channel_ranges


def test_smoothing_from_the_table_derives_the_ranges_the_data_would_give():
    """Every fold kind (inserted Mul, value projection, LayerNorm) on the tiny block: the
    derived ranges of the smoothed MatMul inputs are the ones minmax measures on the
    smoothed model, and the tensors it cannot derive leave the table."""
    model = canonicalize(tiny_block())[0]
    calib = token_samples(8)
    settings = CalibrationSettings(method="minmax")
    table = collect_ranges(model, calib, settings, progress=False, channel_ranges=True)
    done = smooth_from_table(model, table, 0.8)
    assert done is not None
    result, derived = done
    measured = collect_ranges(result.model, calib, settings, progress=False,
                              skip_derived=False)
    nodes = {n.name: n for n in result.model.graph.node}
    inputs = {nodes[m].input[0] for g in result.groups for m in g.matmuls}
    assert len(result.groups) == 4 and len(inputs) == 4
    for name in inputs:
        want, got = measured.ranges[name], derived.ranges[name]
        assert got.min == pytest.approx(want.min, rel=1e-5, abs=1e-6), name
        assert got.max == pytest.approx(want.max, rel=1e-5, abs=1e-6), name
    stale = (result.changed - inputs) & set(table.ranges)
    assert stale and not stale & set(derived.ranges)
    assert all("SmoothQuant" in derived.skipped[name] for name in stale)
    assert smooth_from_table(model, collect_ranges(model, calib, settings, progress=False),
                             0.8) is None  # no channel ranges, nothing to smooth with
    tensor = next(iter(table.channel_ranges))
    low, high = table.channel_ranges[tensor]
    wrong = replace(table, channel_ranges={**table.channel_ranges,
                                           tensor: (low[:-1], high[:-1])})
    with pytest.raises(CalibrationError, match="made for another model"):
        smooth_from_table(model, wrong, 0.8)


def test_a_smoothing_reused_for_another_blend_gives_what_smoothing_again_gives():
    """The smoothed model depends on the channel ranges alone: the result for one table,
    passed as ``smoothed`` with a table of other thresholds, gives the same model and the
    same table as smoothing that table afresh (auto's output check smooths once)."""
    from lowbit.quantize.prepare.auto_check import with_alpha

    model = canonicalize(tiny_block())[0]
    calib = token_samples(8)
    table = collect_ranges(model, calib, CalibrationSettings(method="auto"), progress=False,
                           channel_ranges=True)
    first = smooth_from_table(model, with_alpha(table, 0.0), 0.8)
    assert first is not None
    fresh = smooth_from_table(model, with_alpha(table, 1.0), 0.8)
    reused = smooth_from_table(model, with_alpha(table, 1.0), 0.8, smoothed=first[0])
    assert fresh is not None and reused is not None
    assert reused[0].model.SerializeToString() == fresh[0].model.SerializeToString()
    assert reused[1].ranges == fresh[1].ranges and reused[1].skipped == fresh[1].skipped
    assert reused[1].ranges != first[1].ranges  # the blend moved the other thresholds


def test_deploy_smooths_a_transformer_by_default_from_the_table(tmp_path):
    model = canonicalize(tiny_block())[0]
    src, data = tmp_path / "block.onnx", tmp_path / "x.npz"
    onnx.save(model, src)
    samples = token_samples(8)
    np.savez(data, **{k: np.concatenate([s[k] for s in samples]) for k in samples[0]})
    lowbit.calibrate(src, data, output=tmp_path / "b.calib", progress=False)
    default = lowbit.deploy(src, calibration_table=tmp_path / "b.calib",
                            output=tmp_path / "default.onnx", test_input=data)
    assert default.notes[0].startswith("SmoothQuant: α=0.8, 6 MatMuls")
    assert "the default for transformers" in default.notes[0]
    off = lowbit.deploy(src, calibration_table=tmp_path / "b.calib", smooth="off",
                        output=tmp_path / "off.onnx", test_input=data)
    assert not any("SmoothQuant" in note for note in off.notes)
    test = token_samples(4, seed=21)
    ref = [run(model, s)[0] for s in test]
    err = {name: np.mean([sqnr(r, run(onnx.load(tmp_path / f"{name}.onnx"), s)[0])
                          for r, s in zip(ref, test, strict=True)])
           for name in ("default", "off")}
    assert err["default"] > err["off"] + 3, err  # dB: the planted outlier channels
    lowbit.calibrate(src, data, output=tmp_path / "bare.calib", progress=False,
                     channel_ranges=False)
    bare = lowbit.deploy(src, calibration_table=tmp_path / "bare.calib",
                         output=tmp_path / "bare.onnx")
    assert any(note.startswith("no SmoothQuant: the calibration table holds no channel")
               for note in bare.notes)
