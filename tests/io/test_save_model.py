"""save_model's check runs on the written file before the rename; a refusal keeps the old one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper

from lowbit.errors import ModelError
from lowbit.io.model import load_model, save_model
from lowbit.runtime import create_session
from tests.models import small_resnet


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _unloadable() -> onnx.ModelProto:
    """A model the checker accepts and ONNX Runtime refuses (an op it does not know)."""
    model = small_resnet()
    model.graph.node[2].domain = "com.example"
    model.opset_import.append(onnx.helper.make_opsetid("com.example", 1))
    return model


def _weights(model: onnx.ModelProto) -> dict[str, bytes]:
    return {t.name: numpy_helper.to_array(t).tobytes() for t in model.graph.initializer}


@pytest.mark.parametrize("external_data", [False, True])
def test_a_model_ort_cannot_load_keeps_the_old_file(tmp_path: Path, external_data: bool) -> None:
    out = tmp_path / "m.onnx"
    save_model(small_resnet(seed=1), out, external_data=external_data)
    before = {p.name: _digest(p) for p in tmp_path.iterdir()}
    with pytest.raises(ModelError):
        save_model(_unloadable(), out, external_data=external_data, check=create_session)
    assert {p.name: _digest(p) for p in tmp_path.iterdir()} == before  # no temp files either
    create_session(out)


@pytest.mark.parametrize("external_data", [False, True])
def test_a_passing_check_writes_the_model(tmp_path: Path, external_data: bool) -> None:
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    model = small_resnet()
    save_model(model, out, external_data=external_data, check=create_session)
    assert _weights(load_model(out)) == _weights(small_resnet())
    assert _weights(model) == _weights(small_resnet())  # the caller's weights were read back after writing
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
