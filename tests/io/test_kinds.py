"""Mix-ups name what the file really is: an image or a data set given as a model, a data
set or a model given as a calibration table."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lowbit.calibration.table import read_table
from lowbit.errors import CalibrationError, ModelError
from lowbit.io.kinds import what_file
from lowbit.io.model import load_model
from tests.models import small_resnet


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    made = {"jpg": tmp_path / "cat.jpg", "png": tmp_path / "cat.png",
            "npz": tmp_path / "calib.npz", "npy": tmp_path / "x.npy",
            "onnx": tmp_path / "model.onnx", "text": tmp_path / "notes.txt"}
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(made["jpg"])
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(made["png"])
    np.savez(made["npz"], input=np.zeros((2, 3), np.float32))
    np.save(made["npy"], np.zeros(3, np.float32))
    made["onnx"].write_bytes(small_resnet().SerializeToString())
    made["text"].write_text("hello\n")
    return made


def test_what_file_tells_the_common_kinds(files: dict[str, Path]) -> None:
    assert what_file(files["jpg"]) == "a JPEG image"
    assert what_file(files["png"]) == "a PNG image"
    assert what_file(files["npz"]) == "a NumPy .npz archive (a data set)"
    assert what_file(files["npy"]) == "a NumPy .npy array (a data set)"
    assert what_file(files["text"]) is None and what_file(files["onnx"]) is None


@pytest.mark.parametrize("kind", ["jpg", "npz", "npy"])
def test_a_model_that_is_something_else(files: dict[str, Path], kind: str) -> None:
    with pytest.raises(ModelError, match=re.escape(f"is {what_file(files[kind])}, not an ONNX")):
        load_model(files[kind])


@pytest.mark.parametrize(("kind", "message"), [
    ("npz", "is a NumPy .npz archive \\(a data set\\), not a calibration table"),
    ("jpg", "is a JPEG image, not a calibration table"),
    ("onnx", "is an ONNX model or another binary file, not a calibration table"),
])
def test_a_table_that_is_something_else(files: dict[str, Path], kind: str,
                                        message: str) -> None:
    with pytest.raises(CalibrationError, match=message):
        read_table(files[kind])
