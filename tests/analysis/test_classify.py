"""lowbit.classify: scores, class names, the drawn image, and the errors a user can cause."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

import lowbit
from lowbit.analysis.classify import imagenet_class_names, read_class_names, scores_of
from lowbit.data import ImageOptions
from lowbit.errors import DatasetError, LowbitError, UsageError
from tests.models import init, make_model, small_resnet


def linear_classifier(classes: int, softmax: bool = False) -> onnx.ModelProto:
    """[1,3,8,8] → mean per channel → Gemm to ``classes`` scores (optionally Softmax)."""
    w = np.zeros((classes, 3), np.float32)
    w[min(7, classes - 1)] = [1.0, 0.0, 0.0]  # red images score class 7 highest
    w[0] = [0.0, 0.0, 1.0]  # blue ones class 0
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "w"], ["logits" if not softmax else "s"], transB=1)]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["s"], ["logits"], axis=1))
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                      [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])],
                      [init("w", w * 4)])


@pytest.fixture()
def red(tmp_path: Path) -> Path:
    path = tmp_path / "red.png"
    Image.new("RGB", (20, 16), (250, 10, 10)).save(path)
    return path


OPTIONS = ImageOptions(scale=(1 / 255,))


def test_logits_are_softmaxed_and_probabilities_kept():
    scores, kind = scores_of(np.array([2.0, 0.0, -1.0]))
    np.testing.assert_allclose(scores.sum(), 1.0)
    assert scores.argmax() == 0 and kind.startswith("softmax")
    probs = np.array([0.7, 0.2, 0.1])
    same, kind = scores_of(probs)
    np.testing.assert_array_equal(same, probs)
    assert "already probabilities" in kind


def test_shipped_imagenet_names_are_the_standard_order():
    names = imagenet_class_names()
    assert len(names) == 1000
    assert (names[0], names[281], names[282], names[285], names[967]) == (
        "tench", "tabby", "tiger cat", "Egyptian cat", "espresso")


def test_labels_file_lines_lose_a_synset_id_and_trailing_blanks(tmp_path: Path):
    path = tmp_path / "synset.txt"
    path.write_text("n01440764 tench, Tinca tinca\nn01443537 goldfish\n\n")
    assert read_class_names(path) == ("tench, Tinca tinca", "goldfish")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(DatasetError, match="empty.txt is empty"):
        read_class_names(tmp_path / "empty.txt")


def test_imagenet_sized_output_is_named_and_the_image_drawn(tmp_path: Path, red: Path):
    onnx.save(linear_classifier(1000), tmp_path / "m.onnx")
    result = lowbit.classify(tmp_path / "m.onnx", red, image_options=OPTIONS,
                             output=tmp_path / "out.jpg")
    assert result.predictions[0].index == 7
    assert result.predictions[0].label == imagenet_class_names()[7]
    assert len(result.predictions) == 5
    assert result.labels_source.startswith("ImageNet")
    assert result.score_kind.startswith("softmax")
    assert all(a.score >= b.score for a, b in zip(result.predictions, result.predictions[1:]))
    drawn = np.asarray(Image.open(tmp_path / "out.jpg").convert("RGB"))
    assert drawn.shape == (16, 20, 3)  # the original image, not the model's crop
    assert drawn[1, 1].max() < 200  # the dark label box covers the top-left corner
    assert result.drawn == tmp_path / "out.jpg"


def test_softmax_output_scores_are_shown_as_they_are(tmp_path: Path, red: Path):
    onnx.save(linear_classifier(10, softmax=True), tmp_path / "m.onnx")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"thing{i}" for i in range(10)) + "\n")
    result = lowbit.classify(tmp_path / "m.onnx", red, labels=labels, top=3,
                             image_options=OPTIONS)
    assert result.predictions[0].label == "thing7"
    assert "already probabilities" in result.score_kind
    assert result.labels_source == "labels.txt"
    assert len(result.predictions) == 3


def test_errors_name_what_is_wrong(tmp_path: Path, red: Path):
    onnx.save(linear_classifier(10), tmp_path / "m.onnx")
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    with pytest.raises(UsageError, match="name 3 classes but output 'logits' .* has 10 scores"):
        lowbit.classify(tmp_path / "m.onnx", red, labels=labels, image_options=OPTIONS)
    with pytest.raises(DatasetError, match="image not found"):
        lowbit.classify(tmp_path / "m.onnx", tmp_path / "cat.jpg", image_options=OPTIONS)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="cannot read image"):
        lowbit.classify(tmp_path / "m.onnx", tmp_path / "broken.jpg", image_options=OPTIONS)
    with pytest.raises(UsageError, match=r"no meta file \(m.meta.json\) .* give image_options"):
        lowbit.classify(tmp_path / "m.onnx", red)
    with pytest.raises(UsageError, match="top must be from 1"):
        lowbit.classify(tmp_path / "m.onnx", red, top=0, image_options=OPTIONS)
    with pytest.raises(UsageError, match="image format"):
        lowbit.classify(tmp_path / "m.onnx", red, image_options=OPTIONS,
                        output=tmp_path / "out.xyz")
    assert not (tmp_path / "out.xyz").exists()


def test_quantized_model_classifies_with_the_meta_file_of_its_float_original(tmp_path: Path,
                                                                            red: Path):
    onnx.save(small_resnet(), tmp_path / "model.onnx")
    result = lowbit.transform(tmp_path / "model.onnx", tmp_path / "model.f32.onnx",
                              image_options=ImageOptions(mean=(127.0,), scale=(1 / 128,)),
                              fuse_preprocess=True)
    np.savez(tmp_path / "calib.npz",
             input=np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3)).astype(np.uint8))
    lowbit.calibrate(result.path, tmp_path / "calib.npz", output=tmp_path / "model.calib",
                     progress=False)
    lowbit.deploy(result.path, calibration_table=tmp_path / "model.calib",
                  output=tmp_path / "model.int8.onnx")
    f32 = lowbit.classify(result.path, red, top=3)
    int8 = lowbit.classify(tmp_path / "model.int8.onnx", red, top=3)
    assert f32.labels_source == "class indices"  # 10 scores: not ImageNet's
    assert int8.precision.startswith("INT8") and f32.precision == "F32"
    assert int8.predictions[0].index == f32.predictions[0].index
    with pytest.raises(LowbitError):
        lowbit.classify(tmp_path / "model.int8.onnx", red, labels=["a"])
