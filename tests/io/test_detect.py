"""Format detection by content: each kind of file, an unknown one, and broken ONNX files.

The files are built byte by byte (no framework needed): the real files each framework writes
are detected again in the importer tests.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import onnx
import pytest

from lowbit.errors import ModelError, UsageError
from lowbit.io.importers import detect_format, import_model, importers
from lowbit.io.importers.base import Importer, register
from tests.models import small_resnet


def _zip(path: Path, names: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name in names:
            archive.writestr(name, b"x")
    return path


def _graph_def_bytes() -> bytes:
    # GraphDef { node { name: "x" op: "Placeholder" } versions { producer: 1 } }
    node = b"\x0a\x01x\x12\x0bPlaceholder"
    return b"\x0a" + bytes([len(node)]) + node + b"\x22\x02\x08\x01"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("detect")
    onnx.save(small_resnet(), root / "model.onnx")
    saved = root / "saved"
    (saved / "variables").mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"\x08\x01\x12\x00")   # schema 1, a meta graph
    (root / "frozen.pb").write_bytes(_graph_def_bytes())
    (root / "model.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(40))
    (root / "model.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(40))
    return {
        "onnx": root / "model.onnx",
        # a file named like another format is still told by its content
        "onnx-renamed": (root / "model.bin").write_bytes((root / "model.onnx").read_bytes())
        and root / "model.bin",
        "savedmodel": saved,
        "savedmodel-pb": saved / "saved_model.pb",
        "graphdef": root / "frozen.pb",
        "tflite": root / "model.tflite",
        "keras-h5": root / "model.h5",
        "keras": _zip(root / "model.keras", ["metadata.json", "config.json", "model.weights.h5"]),
        "torchscript": _zip(root / "model.pt", ["m/data.pkl", "m/code/__torch__.py",
                                                 "m/constants.pkl", "m/version"]),
    }


@pytest.mark.parametrize("kind", ["onnx", "onnx-renamed", "savedmodel", "savedmodel-pb",
                                  "graphdef", "tflite", "keras-h5", "keras", "torchscript"])
def test_each_kind_is_told_by_content(files: dict[str, Path], kind: str) -> None:
    want = kind if kind == "keras-h5" else kind.split("-")[0]
    assert detect_format(files[kind]).name == want
    # exactly one detector answers: the registry's order does not matter
    assert [i.name for i in importers() if i.detect(files[kind])] == [want]


def test_unknown_file_lists_what_lowbit_reads(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just some text\n")
    with pytest.raises(ModelError, match="cannot tell what kind of model .*notes.txt is") as err:
        import_model(path)
    message = str(err.value)
    assert "\n" not in message
    for label in ("ONNX (.onnx)", "TorchScript (.pt)", "TFLite (.tflite)", "Keras (.keras)",
                  "SavedModel", "GraphDef"):
        assert label in message


def test_truncated_onnx_is_called_truncated(files: dict[str, Path], tmp_path: Path) -> None:
    data = files["onnx"].read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    assert detect_format(cut).name == "onnx"
    with pytest.raises(ModelError, match="not a readable ONNX model .corrupt or truncated"):
        import_model(cut)


def test_garbage_named_onnx_says_its_content_is_not_onnx(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\xff\xfe not a protobuf at all")
    with pytest.raises(ModelError, match="named as ONNX but its content is not ONNX"):
        import_model(bad)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        import_model(tmp_path / "absent.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        import_model(tmp_path / "empty.onnx")


def test_pickled_torch_file_is_refused_with_a_way_forward(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pickled = _zip(tmp_path / "weights.pt", ["w/data.pkl", "w/version", "w/data/0"])
    assert detect_format(pickled).name == "torchscript"
    with pytest.raises(ModelError, match=r"pickled PyTorch object \(torch.save\).*jit"):
        import_model(pickled)


def test_registry_refuses_a_duplicate_name() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(importers()[0])


def test_a_missing_extra_is_named(tmp_path: Path) -> None:
    importer = Importer(name="never-registered", label="Imaginary (.imag)",
                        detect=lambda p: True, convert=lambda p, o: None,  # type: ignore[arg-type,return-value]
                        extra="imaginary", modules=("lowbit_no_such_package",))
    with pytest.raises(UsageError, match=r"pip install '\.\[imaginary\]' in lowbit's source folder"):
        importer.require()


def test_bad_options_are_usage_errors() -> None:
    model = small_resnet()
    with pytest.raises(UsageError, match="exporter must be one of"):
        import_model("model.onnx", exporter="onnxscript")
    with pytest.raises(UsageError, match="opset must be from 11 to"):
        import_model("model.onnx", opset=9)
    with pytest.raises(UsageError, match="cannot import a ModelProto"):
        import_model(model)
