"""ONNX sources: opsets ≥ 11 upgraded to the target, older ones refused, external data.

Outputs are compared with ONNX Runtime before and after.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from lowbit.errors import ModelError
from lowbit.io.importers import TARGET_OPSET, import_model
from lowbit.io.model import load_model, save_model
from lowbit.runtime import create_session
from tests.models import small_resnet


def _run(model: onnx.ModelProto | Path, x: np.ndarray) -> np.ndarray:
    return create_session(model).run(None, {"input": x})[0]


def _x() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(2, 3, 16, 16)).astype(np.float32)


def _at_opset(opset: int) -> onnx.ModelProto:
    model = small_resnet()   # only ops whose form is the same at opset 11 and 17
    model.opset_import[0].version = opset
    model.ir_version = 6 if opset <= 11 else 8
    onnx.checker.check_model(model)
    return model


def test_opset_11_is_upgraded_to_the_target(tmp_path: Path) -> None:
    source = _at_opset(11)
    onnx.save(source, tmp_path / "old.onnx")
    imported = import_model(tmp_path / "old.onnx")
    assert TARGET_OPSET == 17
    assert imported.opset == 17 and imported.source_format == "onnx"
    assert imported.exporter == "onnx"
    assert imported.notes == ("ONNX opset 11 upgraded to 17 with onnx's version converter",)
    onnx.checker.check_model(imported.model, full_check=True)
    np.testing.assert_allclose(_run(imported.model, _x()), _run(source, _x()), rtol=1e-5,
                               atol=1e-6)


def test_an_explicit_opset_is_the_target(tmp_path: Path) -> None:
    onnx.save(_at_opset(13), tmp_path / "m.onnx")
    assert import_model(tmp_path / "m.onnx", opset=15).opset == 15


def test_newer_opsets_are_kept(tmp_path: Path) -> None:
    onnx.save(_at_opset(19), tmp_path / "new.onnx")
    imported = import_model(tmp_path / "new.onnx")
    assert imported.opset == 19
    assert imported.notes == ("ONNX opset 19 kept (above lowbit's target 17)",)


def test_opset_below_11_is_refused_in_one_line(tmp_path: Path) -> None:
    model = _at_opset(11)
    model.opset_import[0].version = 9
    onnx.save(model, tmp_path / "ancient.onnx")
    with pytest.raises(ModelError, match="uses ONNX opset 9; lowbit imports opset ≥ 11") as err:
        import_model(tmp_path / "ancient.onnx")
    assert "\n" not in str(err.value)


def test_external_data_round_trip(tmp_path: Path) -> None:
    source = small_resnet()
    (tmp_path / "src").mkdir()
    onnx.save_model(small_resnet(), tmp_path / "src" / "model.onnx", save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    imported = import_model(tmp_path / "src" / "model.onnx")
    assert not any(onnx.external_data_helper.uses_external_data(t)
                   for t in imported.model.graph.initializer)
    want = _run(source, _x())
    np.testing.assert_array_equal(_run(imported.model, _x()), want)

    # written twice with external data: the data file is replaced, never appended to
    out = tmp_path / "out" / "model.f32.onnx"
    for _ in range(2):
        save_model(imported.model, out, external_data=True)
    data = out.parent / "model.f32.onnx.data"
    weights = sum(t.ByteSize() for t in source.graph.initializer)
    assert data.is_file() and data.stat().st_size <= weights
    assert out.stat().st_size < weights / 4          # the weights are not inline
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.f32.onnx",
                                                            "model.f32.onnx.data"]
    # the caller's model still holds its weights after the write
    np.testing.assert_array_equal(_run(imported.model, _x()), want)
    np.testing.assert_array_equal(_run(load_model(out), _x()), want)
    np.testing.assert_array_equal(_run(out, _x()), want)   # ORT reads it from the path too


def test_a_missing_external_data_file_is_named(tmp_path: Path) -> None:
    onnx.save_model(small_resnet(), tmp_path / "model.onnx", save_as_external_data=True,
                    location="weights.bin", size_threshold=0)
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(ModelError, match="external data file 'weights.bin', which is not "
                                         "beside it"):
        import_model(tmp_path / "model.onnx")


def test_names_and_examples_are_refused_for_onnx(tmp_path: Path) -> None:
    from lowbit.errors import UsageError

    onnx.save(small_resnet(), tmp_path / "m.onnx")
    with pytest.raises(UsageError, match="an ONNX model names its own inputs and outputs"):
        import_model(tmp_path / "m.onnx", output_names=["logits"])
    with pytest.raises(UsageError, match="example traces a PyTorch module"):
        import_model(tmp_path / "m.onnx", example=np.zeros((1, 3, 16, 16), np.float32))
