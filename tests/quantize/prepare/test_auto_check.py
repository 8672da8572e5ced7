"""auto's output check: blends between its per-tensor thresholds and minmax, chosen by the
INT8 model's output."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import lowbit
from lowbit.calibration.collect import collect_ranges
from lowbit.calibration.float_outputs import FloatOutputs
from lowbit.calibration.observers import CalibrationSettings, TensorRange
from lowbit.calibration.table import read_table
from lowbit.errors import UsageError
from lowbit.passes import canonicalize
from lowbit.quantize.int8.qdq import quantize_qdq
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.quantize.prepare import auto_check
from lowbit.quantize.prepare.auto_check import (
    ALPHAS,
    FINALISTS,
    FIRST_ROUND,
    blend,
    check_auto_table,
    with_alpha,
)
from lowbit.runtime.memory import MemoryBudget
from lowbit.runtime.ort import create_session
from tests.models import small_resnet


def test_blend_runs_from_the_threshold_to_the_max() -> None:
    rng = TensorRange(2.0, -1.0, 6.0)
    assert blend(rng, 0.0).threshold == 2.0
    assert blend(rng, 0.5).threshold == 4.0
    assert blend(rng, 1.0).threshold == 6.0  # minmax's threshold
    assert blend(TensorRange(3.0, -3.0, 1.0), 1.0).threshold == 3.0  # never past the max


@pytest.fixture(scope="module")
def resnet():
    model, _ = canonicalize(small_resnet())
    x = np.random.default_rng(3).normal(size=(48, 3, 16, 16)).astype(np.float32)
    return model, [{"input": x[i:i + 1]} for i in range(len(x))]


def test_the_check_scores_every_blend_with_the_real_quantizer(resnet) -> None:
    model, samples = resnet
    table = collect_ranges(model, samples, CalibrationSettings("auto"), progress=False)
    check = check_auto_table(model, samples[:16], table)
    assert check is not None and set(check.first_round) == set(ALPHAS)
    assert check.samples == 16 and check.first_samples == FIRST_ROUND
    assert check.sqnr[check.alpha] == max(check.sqnr.values())
    # α = 1 is minmax: its score is the INT8 minmax model's output SQNR on those samples
    minmax = collect_ranges(model, samples, CalibrationSettings("minmax"), progress=False)
    for name, rng in minmax.ranges.items():
        assert with_alpha(table, 1.0).ranges[name].threshold == pytest.approx(rng.threshold)
    quantized = quantize_qdq(model, minmax.ranges, QuantizeSettings()).model
    x = np.concatenate([s["input"] for s in samples[:16]]).astype(np.float64)
    ref = create_session(model).run(None, {"input": x.astype(np.float32)})[0]
    out = create_session(quantized).run(None, {"input": x.astype(np.float32)})[0]
    sqnr = 10 * np.log10((ref.astype(np.float64) ** 2).sum()
                         / ((ref - out).astype(np.float64) ** 2).sum())
    assert check.sqnr[1.0] == pytest.approx(sqnr, abs=0.05)  # minmax: always a finalist
    assert f"chose α={check.alpha:g}" in check.summary()


def test_every_blend_runs_the_first_round_and_the_best_two_and_minmax_the_rest(
        resnet, monkeypatch: pytest.MonkeyPatch) -> None:
    """Successive halving: all five blends on the first FIRST_ROUND samples, then only
    the two best there and minmax on the rest; the choice is theirs over all samples,
    and a check that fits in one round scores every blend on all of it."""
    from lowbit.quantize.prepare import auto_check

    model, samples = resnet
    table = collect_ranges(model, samples, CalibrationSettings("auto"), progress=False)
    runs: list[int] = []
    real_runner = auto_check.OrtRunner

    class Counted(real_runner):
        def run(self, feeds, output_names=None):
            runs.append(len(next(iter(feeds.values()))))
            return super().run(feeds, output_names)

    monkeypatch.setattr(auto_check, "OrtRunner", Counted)
    check = check_auto_table(model, samples[:24], table)
    assert check is not None
    ranked = sorted(check.first_round, key=lambda a: (-check.first_round[a], a))
    assert set(check.sqnr) == set(ranked[:FINALISTS]) | {1.0}
    rest = 24 - FIRST_ROUND
    assert sum(runs) == 24 + FIRST_ROUND * len(ALPHAS) + rest * len(check.sqnr)
    assert check.sqnr[check.alpha] == max(check.sqnr.values())
    assert check.sqnr[check.alpha] >= check.sqnr[1.0]  # never worse than minmax here
    # each finalist's figure is its SQNR over all 24 samples, not over the first round
    one_round = check_auto_table(model, samples[:FIRST_ROUND], table)
    assert one_round is not None and set(one_round.sqnr) == set(ALPHAS)
    assert one_round.first_round == pytest.approx(check.first_round, abs=1e-9)
    assert any(abs(check.sqnr[a] - check.first_round[a]) > 1e-6 for a in check.sqnr)
    dropped = set(ALPHAS) - set(check.sqnr)
    assert dropped and all(f"{a:g}: " in check.summary() for a in dropped)


def test_calibrate_auto_writes_the_check_into_the_table(resnet, tmp_path: Path) -> None:
    model, samples = resnet
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "calib.npz", input=np.concatenate([s["input"] for s in samples]))
    lowbit.calibrate(tmp_path / "m.onnx", tmp_path / "calib.npz", output=tmp_path / "a.calib",
                     check_samples=8, progress=False)
    table = read_table(tmp_path / "a.calib")
    assert len(table.notes) == 1 and table.notes[0].startswith("auto output check on 8")
    assert table.notes[0] in table.summary()
    lowbit.calibrate(tmp_path / "m.onnx", tmp_path / "calib.npz", output=tmp_path / "b.calib",
                     check_samples=0, progress=False)
    assert read_table(tmp_path / "b.calib").notes == []
    with pytest.raises(UsageError, match="check_samples must be from 0"):
        lowbit.calibrate(tmp_path / "m.onnx", tmp_path / "calib.npz", check_samples=-1,
                         progress=False)


def test_padded_positions_are_not_scored(monkeypatch: pytest.MonkeyPatch) -> None:
    """A transformer's outputs at masked positions are noise nobody reads: scoring them
    with garbage must not change the SQNRs of the check."""
    from tests.quantize.int8.tiny_transformer import tiny_block, token_samples

    model, _ = canonicalize(tiny_block())
    samples = token_samples(8)
    table = collect_ranges(model, samples, CalibrationSettings("auto"), progress=False)
    check = check_auto_table(model, samples, table, alphas=(0.0, 1.0))
    assert check is not None and all(15 < s < 90 for s in check.sqnr.values()), check.sqnr
    from lowbit.quantize.prepare import auto_check

    real_runner = auto_check.OrtRunner

    class Padded(real_runner):  # the INT8 runs return garbage where the mask is 0
        int8 = False

        def run(self, feeds, output_names=None):
            out = super().run(feeds, output_names)
            if "attention_mask" in feeds and self.int8:
                pad = feeds["attention_mask"] == 0
                out = {name: np.where(pad[..., None], 1e3, o) for name, o in out.items()}
            return out

    calls = {"n": 0}

    def runner(model, threads=None, **options):
        calls["n"] += 1
        wrapped = Padded(model, threads=threads, **options)
        wrapped.int8 = calls["n"] > 1  # the first runner is the float reference
        return wrapped

    monkeypatch.setattr(auto_check, "OrtRunner", runner)
    noisy = check_auto_table(model, samples, table, alphas=(0.0, 1.0))
    assert noisy is not None
    for alpha, sqnr in check.sqnr.items():
        assert noisy.sqnr[alpha] == pytest.approx(sqnr, abs=1e-9)


def test_a_transformer_whose_default_is_all_smoothed_is_checked_without_smoothing() -> None:
    """On the tiny block every quantized MatMul input is smoothed by deploy's default, whose
    ranges then come from the channel ranges alone: by default nothing is scored (α = 0,
    the summary says how to score for --smooth off); with check_unsmoothed the blend is
    scored on the model deploy builds with --smooth off, where it matters."""
    from tests.quantize.int8.tiny_transformer import tiny_block, token_samples

    model = canonicalize(tiny_block())[0]
    samples = token_samples(8)
    settings = CalibrationSettings(method="auto")
    with_channels = collect_ranges(model, samples, settings, progress=False,
                                   channel_ranges=True)
    skipped = check_auto_table(model, samples, with_channels)
    assert skipped is not None and skipped.unscored and skipped.alpha == 0.0
    assert not skipped.sqnr and "--check-unsmoothed" in skipped.summary()
    check = check_auto_table(model, samples, with_channels, check_unsmoothed=True)
    assert check is not None and check.unsmoothed and not check.unscored
    assert len(set(check.sqnr.values())) > 1 and "--smooth off" in check.summary()
    without = check_auto_table(model, samples,
                               collect_ranges(model, samples, settings, progress=False))
    assert without is not None and not without.unsmoothed
    assert without.sqnr == check.sqnr  # the same unsmoothed models, scored alike


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_output_check_shows_progress(resnet, monkeypatch: pytest.MonkeyPatch) -> None:
    """calibrate's last phase runs for seconds on a real model: it has its own bar, and
    none without progress."""
    model, samples = resnet
    table = collect_ranges(model, samples, CalibrationSettings("auto"), progress=False)
    screen = _Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    shown = check_auto_table(model, samples[:8], table, progress=True)
    assert "auto output check" in screen.getvalue()
    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    silent = check_auto_table(model, samples[:8], table, progress=False)
    assert quiet.getvalue() == ""
    assert shown is not None and silent is not None and shown.sqnr == silent.sqnr


def test_the_check_reads_its_samples_again_when_they_do_not_fit(resnet) -> None:
    """Past half the memory budget the float outputs are not kept: the samples are read
    (and the float model run) once per blend, with the same scores."""
    model, samples = resnet
    table = collect_ranges(model, samples, CalibrationSettings("auto"), progress=False)
    kept = check_auto_table(model, samples[:12], table)
    passes = []

    class Counted(list):
        def __iter__(self):
            passes.append(1)
            return super().__iter__()

    tiny = check_auto_table(model, Counted(samples[:12]), table,
                            memory_budget=MemoryBudget(16 << 10))
    assert kept is not None and tiny is not None
    assert tiny.sqnr == pytest.approx(kept.sqnr, abs=1e-9) and tiny.alpha == kept.alpha
    assert len(passes) > 2  # the first sample, the reference pass, then one per blend


def test_the_check_scores_against_the_outputs_calibration_kept(
        resnet, monkeypatch: pytest.MonkeyPatch) -> None:
    """The float outputs kept by the calibration runs stand for the check's own float pass:
    the same choice and scores, one session fewer (the float model's)."""
    model, samples = resnet
    kept = FloatOutputs.for_model(model, 16, 1 << 30)
    table = collect_ranges(model, samples, CalibrationSettings("auto"), progress=False,
                           float_outputs=kept)
    assert kept.samples is not None
    made: list[object] = []
    runner = auto_check.OrtRunner

    def counted(source: object, **options: object) -> object:
        made.append(source)
        return runner(source, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(auto_check, "OrtRunner", counted)
    own = check_auto_table(model, samples[:16], table)
    sessions = len(made)
    made.clear()
    reused = check_auto_table(model, samples[:16], table, float_outputs=kept.samples)
    assert own is not None and reused is not None
    assert reused.alpha == own.alpha and reused.first_round.keys() == own.first_round.keys()
    assert reused.sqnr == pytest.approx(own.sqnr, rel=1e-6)
    assert len(made) == sessions - 1


def test_the_bar_moves_while_the_smoothed_ends_are_built(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A transformer's check first builds the smoothed α = 0 and α = 1 models (seconds each
    on MiniLM) before any INT8 run: each counts a step, and the bar's total holds them."""
    from contextlib import contextmanager

    from tests.quantize.int8.tiny_transformer import tiny_block, token_samples

    model = canonicalize(tiny_block())[0]
    samples = token_samples(8)
    table = collect_ranges(model, samples, CalibrationSettings(method="auto"), progress=False,
                           channel_ranges=True)
    done: list[int] = []
    totals: list[int | None] = []
    at_digest: list[int] = []

    @contextmanager
    def bar(label: str, enabled: bool, total: int | None):  # type: ignore[no-untyped-def]
        totals.append(total)
        yield done.append

    digest = auto_check._digest

    def counted(model: onnx.ModelProto | None) -> str | None:
        at_digest.append(sum(done))
        return digest(model)

    monkeypatch.setattr(auto_check, "progress_bar", bar)
    monkeypatch.setattr(auto_check, "_digest", counted)
    check = check_auto_table(model, samples, table, progress=True)
    assert check is not None and check.unsmoothed
    assert at_digest[1] == at_digest[0] + 1  # the first smoothed build counted a step
    assert sum(done) == totals[0]
