"""The backend registry: names, precision hints, errors; runs without openvino installed."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest

from lowbit.analysis.bench import BenchSettings, BenchVariant
from lowbit.calibration.observers import TensorRange
from lowbit.errors import UsageError
from lowbit.passes import canonicalize
from lowbit.quantize.int8.qdq import quantize_qdq
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.runtime.backends import (
    Runner,
    backend_names,
    check_precision,
    graph_precision,
    make_runner,
)
from lowbit.runtime.ort import OrtRunner
from tests.models import minmax_ranges, small_resnet

X = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)


def _qdq_model() -> onnx.ModelProto:
    model, _ = canonicalize(small_resnet())
    ranges: dict[str, TensorRange] = minmax_ranges(model, {"input": X})
    return quantize_qdq(model, ranges, QuantizeSettings()).model


def test_ort_runner_satisfies_runner_and_reports_f32() -> None:
    runner = make_runner(small_resnet(), threads=1)
    assert isinstance(runner, OrtRunner)
    assert isinstance(runner, Runner)
    assert runner.precision_used == "F32"
    assert runner.run({"input": X})["logits"].shape == (2, 10)


def test_ort_runner_reports_int8_qdq_for_a_quantized_model() -> None:
    model = _qdq_model()
    assert make_runner(model.SerializeToString(), threads=1).precision_used == "INT8 (QDQ)"
    # the float parts of a QDQ graph run in F32 on ORT, so that hint is accepted
    assert make_runner(model, precision="f32").precision_used == "INT8 (QDQ)"


def test_graph_precision_reads_paths_and_half_float_weights(tmp_path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(small_resnet(), str(path))
    assert graph_precision(path) == "F32"
    half = small_resnet()
    half.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(
        onnx.numpy_helper.to_array(half.graph.initializer[0]).astype(np.float16),
        half.graph.initializer[0].name))
    assert graph_precision(half) == "F16"


def test_unknown_backend_lists_the_known_ones() -> None:
    assert backend_names() == ("ort", "openvino")
    with pytest.raises(UsageError, match="unknown backend 'tensorrt'; known backends: ort, "
                                         "openvino"):
        make_runner(small_resnet(), backend="tensorrt")
    with pytest.raises(UsageError, match="unknown backend"):
        BenchSettings(backend="ov")
    with pytest.raises(UsageError, match="unknown backend"):
        BenchVariant("m.onnx", backend="ov")


def test_precision_hints_are_normalised_and_checked() -> None:
    assert check_precision("bf16") == "BF16"
    assert check_precision(None) is None
    assert BenchSettings(precision="f16").precision == "F16"
    with pytest.raises(UsageError, match="deploy the model to INT8"):
        check_precision("int8")
    with pytest.raises(UsageError, match="unknown precision 'fp8'"):
        make_runner(small_resnet(), precision="fp8")


def test_ort_refuses_a_precision_its_graph_does_not_declare() -> None:
    with pytest.raises(UsageError, match="ONNX Runtime computes the in-memory model in F32.*"
                                         "needs backend openvino"):
        make_runner(small_resnet(), precision="BF16")


def test_openvino_not_installed_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` fail
    with pytest.raises(UsageError) as info:
        make_runner(small_resnet(), backend="openvino")
    assert str(info.value) == ("OpenVINO is not installed: pip install '.[openvino]' in lowbit's "
                               "source folder (or 'lowbit[openvino]')")
