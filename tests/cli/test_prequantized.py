"""Models that arrive quantized: a QDQ model made by ONNX Runtime's quantize_static is
validated against its float original by deploy (its scales kept), paired layer by layer by
compare, explained (integer kernels), re-derived with --requantize; bad scales are one
line, exit 2."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import lowbit
from lowbit.analysis.explain import explain_int8
from lowbit.cli.main import main
from lowbit.quantize.int8.imported import describe_qdq
from tests.models import small_resnet


class _Reader:
    def __init__(self, x: np.ndarray) -> None:
        self._items = iter([{"input": x[i:i + 1]} for i in range(len(x))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    root = tmp_path_factory.mktemp("prequantized")
    onnx.save(small_resnet(batch=1), root / "model.onnx")
    f32 = lowbit.transform(root / "model.onnx", root / "model.f32.onnx").path
    x = np.random.default_rng(0).normal(size=(16, 3, 16, 16)).astype(np.float32)
    np.savez(root / "x.npz", input=x)
    reader = type("Reader", (_Reader, CalibrationDataReader), {})(x)
    with contextlib.redirect_stdout(io.StringIO()):
        quantize_static(str(f32), str(root / "ort.onnx"), reader, quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
    lowbit.calibrate(f32, root / "x.npz", output=root / "model.calib", method="minmax",
                     progress=False)
    return root


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_deploy_keeps_its_scales_and_validates_against_the_float_original(work, tmp_path,
                                                                           capsys):
    out = tmp_path / "kept.onnx"
    code, text, err = _run(["deploy", str(work / "ort.onnx"), "--float-model",
                            str(work / "model.f32.onnx"), "--test-data", str(work / "x.npz"),
                            "-o", str(out), "--json"], capsys)
    assert code == 0, err
    result = json.loads(text)
    assert result["passed"] and result["steps"] == ["keep_scales"]
    assert "arrived quantized (QDQ)" in result["notes"][0]
    assert result["validation"]["checks"][0]["cosine"] > 0.99
    # every scale and integer as ORT wrote them: only lowbit's provenance was added
    before, after = onnx.load(work / "ort.onnx"), onnx.load(out)
    assert {i.name: numpy_helper.to_array(i).tobytes() for i in before.graph.initializer} == \
        {i.name: numpy_helper.to_array(i).tobytes() for i in after.graph.initializer}
    assert lowbit.info(out).provenance.steps == ("keep_scales",)
    summary = describe_qdq(after)
    assert len(summary.quantized) == len(summary.ops) == 4  # 3 convs and the Gemm


def test_deploy_refuses_what_a_kept_model_cannot_use(work, tmp_path, capsys):
    out = tmp_path / "x.onnx"
    for args, needle in (
            (["--test-data", str(work / "x.npz")], "give --float-model"),
            (["--smooth", "0.5"], "--smooth is a setting of lowbit's own quantization"),
            (["--calibration-table", str(work / "model.calib")],
             "--calibration-table is a setting")):
        code, _, err = _run(["deploy", str(work / "ort.onnx"), "-o", str(out), *args], capsys)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_requantize_strips_and_quantizes_with_lowbit_rules(work, tmp_path, capsys):
    out = tmp_path / "again.onnx"
    code, text, err = _run(["deploy", str(work / "ort.onnx"), "--requantize",
                            "--calibration-table", str(work / "model.calib"), "--float-model",
                            str(work / "model.f32.onnx"), "--test-data", str(work / "x.npz"),
                            "--speed", "off", "-o", str(out), "--json"], capsys)
    assert code == 0, err
    result = json.loads(text)
    assert result["notes"][0].startswith("requantize: ")
    assert "Relu restored" in result["notes"][0]  # ORT folded the Relus into the convs
    assert len(result["quantized"]) >= 4 and result["passed"]
    assert lowbit.info(out).provenance.recipe.requantize


def test_float_weights_take_the_originals_back_and_get_closer_to_float(work, tmp_path,
                                                                       capsys):
    """--float-weights: each dequantized weight and bias is the float original's again
    (matched by op name and shape), so requantizing does not round ORT's rounding a second
    time: the result is closer to F32 than --requantize alone, and every weight is the
    original's before lowbit quantizes it."""
    from lowbit.quantize.int8.imported import strip_qdq, take_float_weights

    original = onnx.load(work / "model.f32.onnx")
    stripped = strip_qdq(onnx.load(work / "ort.onnx"))
    weights = take_float_weights(stripped, original)
    assert len(weights.taken) >= 8 and not weights.differing  # 4 weights, 4 biases at least
    want = {i.name: numpy_helper.to_array(i) for i in original.graph.initializer}
    got = {i.name: numpy_helper.to_array(i) for i in weights.model.graph.initializer}
    ops = {n.name: n for n in original.graph.node}
    for node in weights.model.graph.node:
        for index, name in enumerate(node.input):
            if name in weights.taken:
                np.testing.assert_array_equal(got[name], want[ops[node.name].input[index]])
    outs = {}
    for flags, name in (([], "rounded"), (["--float-weights"], "float")):
        out = tmp_path / f"{name}.onnx"
        code, text, err = _run(["deploy", str(work / "ort.onnx"), "--requantize", *flags,
                                "--calibration-table", str(work / "model.calib"),
                                "--float-model", str(work / "model.f32.onnx"), "--test-data",
                                str(work / "x.npz"), "--speed", "off", "-o", str(out),
                                "--json"], capsys)
        assert code == 0, err
        outs[name] = json.loads(text)
    assert any(n.startswith("float weights: ") and "replaced by" in n
               for n in outs["float"]["notes"]), outs["float"]["notes"]
    cosine = {k: v["validation"]["checks"][0]["cosine"] for k, v in outs.items()}
    sqnr = {k: v["validation"]["checks"][0].get("sqnr_db") for k, v in outs.items()}
    assert cosine["float"] >= cosine["rounded"], (cosine, sqnr)


def test_float_weights_of_another_model_are_refused(work, tmp_path, capsys):
    """A float model that is not this one's original (other weights): nothing matches
    within rounding, one line, exit 2, nothing written; without --float-model or
    --requantize the flag is refused."""
    onnx.save(small_resnet(seed=7, batch=1), tmp_path / "raw.onnx")
    lowbit.transform(tmp_path / "raw.onnx", tmp_path / "other.onnx")  # same names, other weights
    out = tmp_path / "x.onnx"
    code, _, err = _run(["deploy", str(work / "ort.onnx"), "--requantize", "--float-weights",
                         "--calibration-table", str(work / "model.calib"), "--float-model",
                         str(tmp_path / "other.onnx"), "--test-data", str(work / "x.npz"),
                         "--speed", "off", "-o", str(out)], capsys)
    assert code == 2 and "--float-weights" in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
    code, _, err = _run(["deploy", str(work / "ort.onnx"), "--requantize", "--float-weights",
                         "--calibration-table", str(work / "model.calib"), "-o", str(out)],
                        capsys)
    assert code == 2 and "--float-model" in err, err
    assert not out.exists()


def test_compare_pairs_it_layer_by_layer_and_explain_names_integer_kernels(work, capsys):
    report = lowbit.compare(work / "model.f32.onnx", work / "ort.onnx", work / "x.npz",
                            progress=False)
    paired = {row.name for row in report.diffs}
    assert {"input", "r0", "p0", "r1", "r2", "logits"} <= paired
    assert all(row.cosine > 0.98 for row in report.diffs)
    advice = explain_int8(work / "ort.onnx", profile=False)
    assert advice.summary().startswith("4/4")


@pytest.mark.parametrize("value, word", [(0.0, "zero"), (-0.5, "negative"),
                                          (float("nan"), "not finite")])
def test_a_bad_scale_is_one_line_naming_the_tensor(work, tmp_path, capsys, value, word):
    model = onnx.load(work / "ort.onnx")
    target = next(n for n in model.graph.node if n.op_type == "QuantizeLinear").input[1]
    for i, tensor in enumerate(model.graph.initializer):
        if tensor.name == target:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(
                np.array(value, np.float32), target))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, bad)
    for args in (["deploy", str(bad), "-o", str(tmp_path / "o.onnx")],
                 ["compare", str(work / "model.f32.onnx"), str(bad), "--data",
                  str(work / "x.npz")],
                 ["explain", str(bad), "--no-profile"]):
        code, _, err = _run(args, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"the scale '{target}'" in err and word in err
    assert not (tmp_path / "o.onnx").exists()
