"""deploy --target: the defaults when they are enough, the fewest float ops when not,
exit 1 and the limiting ops when the target cannot be met, mistakes refused up front."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

import lowbit
from lowbit.errors import RecipeError
from lowbit.recipe.provenance import read_provenance
from tests.cli.test_flow import run_cli
from tests.quantize.mixed.test_sensitivity import planted_outlier_model


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model with one op whose outlier input ruins its INT8 (the qtable tests' plant)."""
    root = tmp_path_factory.mktemp("target")
    model, _, samples = planted_outlier_model()
    onnx.save(model, root / "model.onnx")
    np.savez(root / "calib.npz", x=np.concatenate([s["x"] for s in samples]))
    lowbit.calibrate(root / "model.onnx", root / "calib.npz", output=root / "m.calib",
                     method="minmax", progress=False)
    return root


def _deploy(root: Path, target: str, name: str) -> lowbit.DeployResult:
    return lowbit.deploy(root / "model.onnx", calibration_table=root / "m.calib",
                         calibration_data=root / "calib.npz", target=target, speed="off",
                         output=root / name)


def test_a_met_target_keeps_the_defaults(planted: Path) -> None:
    result = _deploy(planted, "cos=0.5", "easy.onnx")
    note = next(n for n in result.notes if n.startswith("target cos=0.5"))
    assert "met by the defaults" in note and result.passed
    assert not result.left_float or all("qtable" not in d.reason for d in result.left_float)


def test_a_harder_target_keeps_the_planted_op_float(planted: Path) -> None:
    plain = lowbit.deploy(planted / "model.onnx", calibration_table=planted / "m.calib",
                          output=planted / "plain.onnx", speed="off")
    hard = _deploy(planted, "cos=0.9999", "hard.onnx")
    note = next(n for n in hard.notes if n.startswith("target cos=0.9999"))
    assert "op(s) F32" in note and ": met" in note, note
    assert len(hard.quantized) < len(plain.quantized)
    assert any(d.reason.startswith("kept F32 by deploy --target") for d in hard.left_float)
    assert hard.passed and "target" in hard.steps
    recipe = read_provenance(onnx.load(hard.path)).recipe
    assert recipe is not None and recipe.target == "cos=0.9999"


def test_an_impossible_target_exits_1_and_names_the_limiting_ops(
        planted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run_cli(["deploy", planted / "model.onnx", "--calibration-table",
                          planted / "m.calib", "--calibration-data", planted / "calib.npz",
                          "--target", "sqnr=500", "--speed", "off", "-o",
                          planted / "never.onnx"], capsys)
    assert code == 1, text
    assert "target sqnr=500 not met" in text and "limited most by" in text
    assert (planted / "never.onnx").exists()


@pytest.mark.parametrize(("options", "message"), [
    ({"target": "cos=0.99"}, "target is measured on data: give calibration_data"),
    ({"target": "cosine=0.99", "calibration_data": "c.npz"}, "target"),
    ({"target": "cos=2", "calibration_data": "c.npz"}, "target"),
    ({"target": "cos=0.99", "calibration_data": "c.npz", "quantize": "F16"},
     "target applies to quantize INT8 only"),
])
def test_target_mistakes_are_refused_up_front(options: dict[str, str], message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        lowbit.plan(calibration_table="t.calib", **options) if options.get("quantize") != \
            "F16" else lowbit.plan(**options)


def test_auto_target_is_stricter_for_vectors_than_for_dense_maps() -> None:
    from lowbit.recipe.steps.target import DENSE_TARGET, VECTOR_TARGET, auto_target
    from tests.models import small_resnet
    from tests.recipe.test_speed import prelu_chain

    assert auto_target(small_resnet()) == VECTOR_TARGET == "cos=0.999"   # logits [N, 10]
    assert auto_target(prelu_chain()) == DENSE_TARGET == "cos=0.995"     # [N, 8, 16, 16]
    assert lowbit.plan(calibration_table="t", calibration_data="c.npz",
                       target="AUTO").target == "auto"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_search_shows_its_phases_on_a_terminal_and_each_model_in_the_log(
        planted: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    screen = _Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    with caplog.at_level(logging.INFO, logger="lowbit"):
        result = _deploy(planted, "cos=0.9999", "shown.onnx")
    shown = screen.getvalue()
    assert "deploy --target cos=0.9999: the defaults scored" in shown
    assert "mixed models measured" in shown
    measured = [r.getMessage() for r in caplog.records
                if r.name == "lowbit.quantize.mixed.search" and "float op(s)" in r.getMessage()]
    assert measured and any(m.endswith(" met") for m in measured), measured
    assert any(r.getMessage().startswith("target cos=0.9999: defaults") for r in caplog.records)
    assert result.passed


def test_the_speed_guard_after_the_target_keeps_the_targets_float_ops(
        planted: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard rebuilds the model with islands kept float for speed; the ops the target
    search kept float for accuracy stay float in every one of its candidates (they had
    been quantized again, losing the target the note said was met)."""
    from lowbit.recipe.steps import speed

    def start(self: Any, *args: object, **kwargs: object) -> None:
        self.timed = 0

    def fake(self: Any, model: onnx.ModelProto) -> speed.Speed:
        # each guard's first timing (all-INT8) slower than float, any island float fast;
        # the target step puts the defaults to a guard of its own first
        self.timed += 1
        return speed.Speed({1: 0.5 if self.timed == 1 else 1.2})

    monkeypatch.setattr(speed._Timer, "speed", fake)
    monkeypatch.setattr(speed._Timer, "__init__", start)
    plain = lowbit.deploy(planted / "model.onnx", calibration_table=planted / "m.calib",
                          output=planted / "plain_again.onnx", speed="off")
    hard = _deploy(planted, "cos=0.9999", "hard_again.onnx")
    guarded = lowbit.deploy(planted / "model.onnx", calibration_table=planted / "m.calib",
                            calibration_data=planted / "calib.npz", target="cos=0.9999",
                            speed="guard", output=planted / "guarded.onnx")
    assert any(n.startswith("speed: all-INT8 ran 0.50x") for n in guarded.notes), guarded.notes
    target_float = {d.name for d in plain.quantized} - {d.name for d in hard.quantized}
    assert target_float  # the target kept at least the planted op float
    assert not target_float & {d.name for d in guarded.quantized}
    assert {d.name for d in guarded.quantized} < {d.name for d in hard.quantized}


def test_no_int8_gain_spares_the_search_and_ships_f32(
        planted: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> None:
    """Where every INT8 configuration runs slower than float, the guard keeps the model F32
    after any search: the target step asks it first, searches nothing (AdaRound and the
    ranking had cost the text-direction net 28 s to end F32) and F32 meets the target."""
    from lowbit.recipe.steps import speed, target

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("searched although the guard kept the model F32")

    timed: list[int] = []

    def slow(self: object, model: onnx.ModelProto) -> speed.Speed:
        timed.append(1)
        return speed.Speed({1: 0.6})  # every INT8 configuration slower than float

    monkeypatch.setattr(target, "search_mixed", never)
    monkeypatch.setattr(target, "_with_adaround", never)
    monkeypatch.setattr(speed._Timer, "speed", slow)
    monkeypatch.setattr(speed._Timer, "__init__", lambda self, *args, **kwargs: None)
    code, text = run_cli(["deploy", planted / "model.onnx", "--calibration-table",
                          planted / "m.calib", "--calibration-data", planted / "calib.npz",
                          "--target", "cos=0.9999", "--speed", "guard", "-o",
                          planted / "f32.onnx"], capsys)
    assert code == 0, text
    assert "no INT8 gain on this CPU" in text and "met by the F32 model" in text, text
    assert "Conv (conv_a, conv_b, conv_c): kept F32 by the speed guard" in text, text
    shipped = onnx.load(planted / "f32.onnx")
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear")
                   for n in shipped.graph.node)
    guard_timings = len(timed)
    assert guard_timings > 1  # the guard ran once (not again in the speed step): its
    result = lowbit.deploy(planted / "model.onnx", calibration_table=planted / "m.calib",
                           calibration_data=planted / "calib.npz", target="cos=0.9999",
                           speed="guard", output=planted / "f32_again.onnx")
    assert len(timed) == 2 * guard_timings  # second deploy: the same count again
    assert result.passed and not result.quantized and "speed" not in result.steps
