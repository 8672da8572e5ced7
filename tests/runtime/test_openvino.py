"""OpenVINO runner: F32 matches ORT, BF16 is reported as computed, INT8 QDQ, errors, bench."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from lowbit.analysis.bench import BenchSettings, BenchVariant, bench_models
from lowbit.errors import ModelError
from lowbit.passes import canonicalize
from lowbit.quantize.int8.qdq import quantize_qdq
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.runtime.backends import Runner, make_runner
from lowbit.runtime.isa import ENV_VAR
from tests.models import make_model, minmax_ranges, small_resnet

ov = pytest.importorskip("openvino")

from lowbit.runtime.openvino import OpenVinoRunner, probe_bf16_native  # needs openvino

X = np.random.default_rng(0).standard_normal((5, 3, 16, 16)).astype(np.float32)


def _reference(model: onnx.ModelProto, x: np.ndarray = X) -> np.ndarray:
    return make_runner(model, threads=1).run({"input": x})["logits"]


def _openvino(model: onnx.ModelProto | Path, precision: str | None = None) -> OpenVinoRunner:
    runner = make_runner(model, backend="openvino", threads=1, precision=precision)
    assert isinstance(runner, OpenVinoRunner)
    return runner


def _relative(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def test_f32_hint_is_honoured_and_matches_ort() -> None:
    model = small_resnet()
    runner = _openvino(model, precision="F32")
    assert isinstance(runner, Runner)
    assert runner.inference_precision == "F32"
    assert runner.precision_used == "F32"
    assert runner.layer_precisions == {"Convolution F32": 3, "FullyConnected F32": 1}
    assert runner.execution_devices == ["CPU"]
    assert runner.input_names == ["input"] and runner.output_names == ["logits"]
    assert _relative(runner.run({"input": X})["logits"], _reference(model)) < 1e-4


def test_no_hint_means_f32_even_where_openvino_defaults_to_bf16() -> None:
    runner = _openvino(small_resnet())
    assert runner.precision_used == "F32"
    assert runner.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"


@pytest.mark.parametrize("half", ["native BF16", "no BF16"])
def test_bf16_hint_reports_what_the_compiled_model_says(monkeypatch, half: str) -> None:
    """Both sides of the BF16 branch: native kernels (skipped, saying so, on a CPU without
    them) compute BF16, measurably off F32; without them (that CPU's, or LOWBIT_FORCE_ISA
    bf16=0 here) the hint compiles F32 and the runner says so."""
    if half == "native BF16" and not probe_bf16_native():
        pytest.skip("the native-BF16 half could not run: OpenVINO has no BF16 kernels on "
                    "this CPU (no AVX512-BF16 or AMX-BF16)")
    monkeypatch.setenv(ENV_VAR, "bf16=1" if half == "native BF16" else "bf16=0")
    model = small_resnet()
    runner = _openvino(model, precision="bf16")
    read_back = runner.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    assert runner.inference_precision == read_back.upper()
    error = _relative(runner.run({"input": X})["logits"], _reference(model))
    if half == "native BF16":
        assert runner.precision_used == "BF16"
        assert set(runner.layer_precisions) == {"Convolution BF16", "FullyConnected BF16"}
        assert 1e-4 < error < 2e-2, error
    else:
        assert runner.precision_used == runner.inference_precision == "F32"
        assert set(runner.layer_precisions) == {"Convolution F32", "FullyConnected F32"}
        assert error < 1e-4, error


def test_any_batch_size_runs_on_a_dynamic_batch_model(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(small_resnet(), str(path))
    runner = make_runner(path, backend="openvino", threads=1)
    for batch in (1, 5, 2):
        out = runner.run({"input": X[:batch]})
        assert out["logits"].shape == (batch, 10)
        assert _relative(out["logits"], _reference(small_resnet(), X[:batch])) < 1e-4


def test_int8_qdq_model_runs_integer_layers() -> None:
    model, _ = canonicalize(small_resnet())
    ranges = minmax_ranges(model, {"input": X})
    quantized = quantize_qdq(model, ranges, QuantizeSettings()).model
    runner = _openvino(quantized)
    assert runner.precision_used == "INT8 (QDQ)"
    assert runner.layer_precisions == {"Convolution INT8": 3, "FullyConnected INT8": 1}
    assert _relative(runner.run({"input": X})["logits"], _reference(model)) < 5e-2


def test_wrong_inputs_are_model_errors() -> None:
    runner = make_runner(small_resnet(), backend="openvino", threads=1)
    with pytest.raises(ModelError, match=r"missing \['input'\], unknown \['image'\]"):
        runner.run({"image": X})
    with pytest.raises(ModelError, match=r"'input' must have shape \[\?, 3, 16, 16\], found "
                                         r"\[5, 2, 16, 16\]"):
        runner.run({"input": X[:, :2]})
    with pytest.raises(ModelError, match="'input' must be float32, found float64"):
        runner.run({"input": X.astype(np.float64)})
    with pytest.raises(ModelError, match="no output"):
        runner.run({"input": X}, output_names=["nope"])


def test_unreadable_and_unsupported_models_are_one_line_model_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        make_runner(tmp_path / "missing.onnx", backend="openvino")
    with pytest.raises(ModelError) as info:
        make_runner(b"not a model", backend="openvino")
    assert "OpenVINO cannot load the in-memory model" in str(info.value)
    assert "\n" not in str(info.value)
    from onnx import TensorProto, helper
    odd = make_model([helper.make_node("Foo", ["x"], ["y"], domain="custom")],
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [],
                     check=False)
    odd.opset_import.append(helper.make_opsetid("custom", 1))
    with pytest.raises(ModelError, match="Foo") as info:
        make_runner(odd, backend="openvino")
    assert "\n" not in str(info.value)


def test_bench_times_openvino_variants_beside_ort(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(small_resnet(), str(path))
    settings = BenchSettings(batches=(1, 4), threads=1, warmup=1, repeats=3)
    comparison = bench_models(
        [path, BenchVariant(path, backend="openvino", precision="F32"),
         BenchVariant(path, backend="openvino", precision="BF16")], settings, progress=False)
    ort_result, ov_f32, ov_bf16 = comparison.results
    assert (ort_result.backend, ort_result.precision_used) == ("ort", "F32")
    assert (ov_f32.backend, ov_f32.precision_used) == ("openvino", "F32")
    assert ov_bf16.precision_used == ("BF16" if probe_bf16_native() else "F32")
    assert ov_f32.label == "m.onnx (openvino F32)" and ort_result.label == "m.onnx"
    for result in comparison.results:
        assert [t.batch for t in result.timings] == [1, 4]
        for timing in result.timings:
            assert timing.median_ms > 0 and timing.p90_ms >= timing.median_ms
            assert not timing.sequential
    assert comparison.ratio(4, 1, 0) > 0


def test_bench_settings_backend_applies_to_plain_paths(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(small_resnet(batch=1), str(path))  # fixed batch: batch 2 runs twice
    settings = BenchSettings(batches=(2,), threads=1, warmup=0, repeats=2, backend="openvino",
                             precision="F32")
    (result,) = bench_models([path], settings, progress=False).results
    assert result.backend == "openvino" and result.precision_used == "F32"
    assert result.timing(2).sequential
