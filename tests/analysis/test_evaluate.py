"""evaluate(): top-k on hand-checkable models, labels from every source, PSNR/SSIM/cos, vs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper
from PIL import Image

from lowbit.analysis.evaluate import (
    EvalReport,
    EvalResult,
    evaluate,
    evaluate_models,
    parse_metrics,
)
from lowbit.analysis.labels import load_labels
from lowbit.data import ImageOptions
from lowbit.errors import DatasetError, UsageError
from lowbit.io.model import save_model
from tests.models import init, make_model

CLASSES = 10
# Rank of the true label among each sample's logits (0 = highest): 7 top-1 hits, 9 top-5 hits.
RANKS = [0, 0, 0, 0, 0, 0, 0, 2, 4, 7]
PERMUTATION = np.random.default_rng(1).permutation(CLASSES)


def _linear_model(path: Path, weights: np.ndarray) -> Path:
    """logits = x @ weights, x of shape (N, 10)."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["logits"])]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])],
                       [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                      ["N", weights.shape[1]])],
                       [init("w", weights.astype(np.float32))])
    return save_model(model, path)


def _permutation_matrix() -> np.ndarray:
    matrix = np.zeros((CLASSES, CLASSES), np.float32)
    matrix[np.arange(CLASSES), PERMUTATION] = 1.0  # logits[PERMUTATION[i]] = x[i]
    return matrix


@pytest.fixture
def classifier(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """A permutation-matrix classifier, a 10-sample .npz with labels, and the labels."""
    rng = np.random.default_rng(0)
    logits = np.stack([rng.permutation(CLASSES) for _ in RANKS]).astype(np.float32)
    order = np.argsort(-logits, axis=1)
    labels = np.array([order[i, rank] for i, rank in enumerate(RANKS)], dtype=np.int64)
    x = logits @ _permutation_matrix().T  # so that x @ P == logits exactly
    model = _linear_model(tmp_path / "clf.onnx", _permutation_matrix())
    data = tmp_path / "data.npz"
    np.savez(data, x=x, label=labels)
    return model, data, labels


def test_top1_top5_are_exact_on_a_known_model(classifier):
    model, data, _ = classifier
    report = evaluate(model, data)
    assert isinstance(report, EvalReport)
    (result,) = report.results
    assert result == EvalResult("clf.onnx", {"top1": 70.0, "top5": 90.0}, 10)
    assert report.agreement is None


def test_num_limits_the_samples(classifier):
    model, data, _ = classifier
    result = evaluate(model, data, num=8).results[0]
    assert result.num_samples == 8
    assert result.metrics["top1"] == pytest.approx(100 * 7 / 8)


def test_labels_from_npz_key_npy_and_text(classifier, tmp_path):
    model, _, labels = classifier
    x = np.load(tmp_path / "data.npz")["x"]
    bare = tmp_path / "bare.npz"
    np.savez(bare, x=x)
    np.savez(tmp_path / "gt.npz", classes=labels)
    np.save(tmp_path / "gt.npy", labels)
    (tmp_path / "gt.txt").write_text("# one label a line\n" + "\n".join(map(str, labels)) + "\n")
    for source in (f"{tmp_path / 'gt.npz'}:classes", tmp_path / "gt.npy", tmp_path / "gt.txt"):
        metrics = evaluate(model, bare, labels=source).results[0].metrics
        assert metrics == {"top1": 70.0, "top5": 90.0}, source


def test_label_errors_name_the_problem(classifier, tmp_path):
    model, data, labels = classifier
    short = tmp_path / "short.txt"
    short.write_text("\n".join(map(str, labels[:9])))
    with pytest.raises(DatasetError, match=r"9 labels.*10 samples"):
        evaluate(model, data, labels=short)
    np.savez(tmp_path / "wrong.npz", classes=labels)
    with pytest.raises(DatasetError, match="no 'label'.*classes"):
        evaluate(model, data, labels=tmp_path / "wrong.npz")
    with pytest.raises(DatasetError, match="no array 'nope'"):
        evaluate(model, data, labels=f"{tmp_path / 'wrong.npz'}:nope")
    with pytest.raises(DatasetError, match="not found"):
        evaluate(model, data, labels=tmp_path / "missing.txt")
    (tmp_path / "bad.txt").write_text("1\ncat\n")
    with pytest.raises(DatasetError, match="line 2.*'cat'"):
        evaluate(model, data, labels=tmp_path / "bad.txt")
    out_of_range = tmp_path / "big.txt"
    out_of_range.write_text("\n".join(["10"] * 10))
    with pytest.raises(DatasetError, match="outside the model's 10 classes"):
        evaluate(model, data, labels=out_of_range)


def test_classification_without_labels_says_how_to_give_them(classifier, tmp_path):
    model, _, _ = classifier
    bare = tmp_path / "bare.npz"
    np.savez(bare, x=np.load(tmp_path / "data.npz")["x"])
    with pytest.raises(DatasetError, match="top1, top5 need.*give labels"):
        evaluate(model, bare)


def test_unknown_metric_lists_the_known_ones(classifier):
    model, data, _ = classifier
    with pytest.raises(UsageError, match="unknown metric 'map'.*top1, top5, psnr, ssim, cos"):
        evaluate(model, data, metrics=("top1", "map"))
    assert parse_metrics("Top-1, top5,top1") == ("top1", "top5")


def test_vs_reports_both_models_drop_and_agreement(classifier, tmp_path):
    model, data, labels = classifier
    swapped = _permutation_matrix()[:, [1, 0, *range(2, CLASSES)]]  # classes 0 and 1 swap
    other = _linear_model(tmp_path / "other.onnx", swapped)
    report = evaluate(other, data, vs=model)
    x = np.load(data)["x"]
    other_pred = np.argmax(x @ swapped, axis=1)
    float_pred = np.argmax(x @ _permutation_matrix(), axis=1)
    expected_top1 = 100.0 * np.mean(other_pred == labels)
    expected_agreement = 100.0 * np.mean(other_pred == float_pred)
    assert 0 < expected_agreement < 100  # the swap changes some predictions, not all
    assert [r.model for r in report.results] == ["other.onnx", "clf.onnx"]
    assert report.results[0].metrics["top1"] == pytest.approx(expected_top1)
    assert report.results[1].metrics["top1"] == 70.0
    assert report.drop("top1") == pytest.approx(70.0 - expected_top1)
    assert report.agreement == pytest.approx(expected_agreement)
    assert "agreement" in report.summary()


# --------------------------------------------------------------------------- class folders


def _image_classifier(path: Path) -> Path:
    """2x2 grey image -> 3 logits: logit k is pixel k (row-major)."""
    weights = np.zeros((4, 3), np.float32)
    weights[[0, 1, 2], [0, 1, 2]] = 1.0
    nodes = [helper.make_node("Flatten", ["img"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["logits"])]
    model = make_model(nodes,
                       [helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 1, 2, 2])],
                       [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])],
                       [init("w", weights)])
    return save_model(model, path)


def _png(path: Path, bright: int) -> None:
    pixels = np.zeros(4, np.uint8)
    pixels[bright] = 200
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.reshape(2, 2), mode="L").save(path)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Class folders ant (0), bee (1), cow (2); cow/c2.png looks like a bee: 3 of 4 right."""
    root = tmp_path / "images"
    _png(root / "bee" / "b1.png", 1)
    _png(root / "ant" / "a1.png", 0)
    _png(root / "cow" / "c1.png", 2)
    _png(root / "cow" / "c2.png", 1)
    return root


def test_labels_from_class_folders(tmp_path, image_folder):
    model = _image_classifier(tmp_path / "img.onnx")
    gray = ImageOptions(pixel_format="gray")
    report = evaluate(model, image_folder, metrics=("top1",), image_options=gray)
    assert report.results[0].metrics == {"top1": 75.0}
    labels = load_labels(None, image_folder, 4)
    assert labels.tolist() == [0, 1, 2, 2]  # ant/a1, bee/b1, cow/c1, cow/c2


def test_filename_label_lines_match_image_files(tmp_path, image_folder):
    model = _image_classifier(tmp_path / "img.onnx")
    text = tmp_path / "val.txt"
    text.write_text("c2.png 1\nc1.png 2\nbee/b1.png 1\na1.png 0\n")  # any order
    report = evaluate(model, image_folder, labels=text, metrics="top1",
                      image_options=ImageOptions(pixel_format="gray"))
    assert report.results[0].metrics == {"top1": 100.0}
    text.write_text("c1.png 2\nb1.png 1\na1.png 0\n")
    with pytest.raises(DatasetError, match="no line for cow/c2.png"):
        load_labels(text, image_folder, 4)


def test_loose_images_give_no_folder_labels(tmp_path):
    root = tmp_path / "flat"
    _png(root / "x.png", 0)
    with pytest.raises(DatasetError, match="class folder.*give labels"):
        load_labels(None, root, 1)


# --------------------------------------------------------------------------- image metrics


def _image_model(path: Path, noise: np.ndarray | None) -> Path:
    """(N,1,8,12) -> itself, plus a fixed noise image when given."""
    value = helper.make_tensor_value_info
    if noise is None:
        nodes, inits = [helper.make_node("Identity", ["img"], ["out"])], []
    else:
        nodes = [helper.make_node("Add", ["img", "noise"], ["out"])]
        inits = [init("noise", noise.astype(np.float32))]
    model = make_model(nodes, [value("img", TensorProto.FLOAT, ["N", 1, 8, 12])],
                       [value("out", TensorProto.FLOAT, ["N", 1, 8, 12])], inits)
    return save_model(model, path)


@pytest.fixture
def image_pair(tmp_path: Path) -> tuple[Path, Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 1, (4, 1, 8, 12)).astype(np.float32)
    noise = rng.normal(0, 0.05, (1, 1, 8, 12)).astype(np.float32)
    data = tmp_path / "imgs.npz"
    np.savez(data, img=images)
    return (_image_model(tmp_path / "id.onnx", None), _image_model(tmp_path / "noisy.onnx", noise),
            data, images, noise)


def test_identical_outputs_give_inf_psnr_and_unit_ssim_and_cos(image_pair):
    identity, _, data, _, _ = image_pair
    report = evaluate(identity, data, metrics=("psnr", "ssim", "cos"), reference=identity)
    assert report.results[0].metrics == {"psnr": math.inf, "ssim": 1.0, "cos": 1.0}
    assert report.reference == "id.onnx"


def test_noisy_model_psnr_and_cos_match_numpy(image_pair):
    identity, noisy, data, images, noise = image_pair
    metrics = evaluate(noisy, data, metrics="psnr,ssim,cos", reference=identity).results[0].metrics
    out = (images + noise).astype(np.float32)
    peak = float(images.max() - images.min())
    mse = ((out.astype(np.float64) - images) ** 2).reshape(4, -1).mean(axis=1)
    assert metrics["psnr"] == pytest.approx(np.mean(10 * np.log10(peak**2 / mse)), rel=1e-6)
    flat_a, flat_b = images.reshape(4, -1).astype(np.float64), out.reshape(4, -1).astype(float)
    cos = np.sum(flat_a * flat_b, 1) / np.linalg.norm(flat_a, axis=1) / np.linalg.norm(flat_b,
                                                                                      axis=1)
    assert metrics["cos"] == pytest.approx(cos.mean(), rel=1e-9)
    assert 0.5 < metrics["ssim"] < 1.0


def test_vs_alone_is_the_psnr_reference(image_pair):
    identity, noisy, data, _, _ = image_pair
    report = evaluate(noisy, data, metrics=("psnr",), vs=identity)
    assert report.results[1].metrics["psnr"] == math.inf
    assert math.isfinite(report.results[0].metrics["psnr"])
    assert report.agreement is None  # image outputs: no argmax agreement


def test_targets_in_the_npz_are_the_reference(image_pair, tmp_path):
    identity, _, _, images, _ = image_pair
    paired = tmp_path / "paired.npz"
    np.savez(paired, img=images, target=images)
    assert evaluate(identity, paired, metrics=("psnr",)).results[0].metrics["psnr"] == math.inf
    with pytest.raises(UsageError, match="reference model.*'target'"):
        evaluate(identity, tmp_path / "imgs.npz", metrics=("ssim",))


def test_evaluate_models_runs_the_reference_once_and_scores_every_model(image_pair):
    identity, noisy, data, _, _ = image_pair
    results = evaluate_models([identity, noisy], data, metrics=("cos",), reference=identity)
    assert [r.model for r in results] == ["id.onnx", "noisy.onnx"]
    assert results[0].metrics["cos"] == 1.0
    assert results[1].metrics["cos"] < 1.0
