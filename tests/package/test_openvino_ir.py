"""package --format openvino: IR with its weights' precision kept, re-loaded and validated."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from lowbit.api import package
from lowbit.errors import UsageError
from tests.package_work import Work

ov = pytest.importorskip("openvino")


def test_f32_ir_keeps_f32_weights_and_validates(work: Work, tmp_path) -> None:
    result = package(work.f32, tmp_path / "ir" / "model.xml", format="openvino",
                     test_input=work.x)
    assert result.files == (tmp_path / "ir" / "model.xml", tmp_path / "ir" / "model.bin")
    assert result.weight_types is not None and "f16" not in result.weight_types
    assert result.weight_types["f32"] >= 1
    weights = sum(numpy_helper.to_array(t).nbytes for t in onnx.load(work.f32).graph.initializer
                  if t.data_type == onnx.TensorProto.FLOAT)
    assert result.files[1].stat().st_size >= weights  # F32, not halved to FP16
    assert result.validation is not None and result.passed
    assert result.validated_against == "the float model itself"
    assert result.conversion_error is not None and result.conversion_error < 1e-4
    assert sorted(p.name for p in (tmp_path / "ir").iterdir()) == ["model.bin", "model.xml"]
    compiled = ov.Core().compile_model(str(result.path), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})
    x = np.load(work.x)["input"][:1]
    reference = np.load(work.reference)["logits"][:1]
    np.testing.assert_allclose(compiled(x)[0], reference, rtol=1e-4, atol=1e-4)


def test_int8_ir_validates_against_the_float_reference(work: Work, tmp_path) -> None:
    result = package(work.int8, tmp_path / "int8.xml", format="openvino")
    assert result.validation is not None and result.passed  # deploy's data and reference
    assert "ref_outputs.npz" in (result.validated_against or "")
    assert result.weight_types is not None and result.weight_types.get("i8", 0) >= 3


def test_ir_goes_to_an_xml_file(work: Work, tmp_path) -> None:
    with pytest.raises(UsageError, match=r"\.xml"):
        package(work.f32, tmp_path / "model.lowbit", format="openvino")
    with pytest.raises(UsageError, match="target_platform applies to format ort"):
        package(work.f32, tmp_path / "m.xml", format="openvino", target_platform="arm")
    assert list(tmp_path.iterdir()) == []
