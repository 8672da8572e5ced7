"""lowbit-run: outputs equal ONNX Runtime on the .onnx, images fed as lowbit feeds them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import lowbit
from lowbit.api import package
from lowbit.data import ImageFolderDataset, ImageOptions
from lowbit.io.model import input_specs, load_model
from lowbit.runtime import create_session
from lowbit_run.cli import main, top_classes
from tests.package_work import LABELS, PREPROCESSING, Work


def _onnx_outputs(model: Path, x: np.ndarray) -> np.ndarray:
    session = create_session(model)
    return np.concatenate([session.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])


@pytest.mark.parametrize("which", ["f32", "int8"])
def test_npz_outputs_equal_ort_on_the_onnx(work: Work, tmp_path, capsys, which) -> None:
    bundle, model = (work.f32_bundle, work.f32) if which == "f32" else \
        (work.int8_bundle, work.int8)
    out = tmp_path / "y.npz"
    assert main([str(bundle), "--input", str(work.x), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    x = np.load(work.x)["input"]
    expected = _onnx_outputs(model, x)
    with np.load(out) as found:
        assert list(found.files) == ["logits"]
        logits = found["logits"]
    assert logits.shape == expected.shape == (6, 10)
    if which == "int8":
        np.testing.assert_array_equal(logits, expected)  # the same integer kernels
    else:  # float: only the order of fused additions may differ
        np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    assert printed.count("top 5 of 'logits'") == 6
    best = int(np.argmax(expected[0]))
    assert f"1. {LABELS[best]} ({best})" in printed.split("sample 1:")[0]


def test_an_image_is_preprocessed_as_lowbit_does(work: Work, tmp_path, capsys) -> None:
    out = tmp_path / "y.npz"
    assert main([str(work.int8_bundle), "--input", str(work.image), "--output", str(out),
                 "--top", "3"]) == 0
    printed = capsys.readouterr().out
    specs = input_specs(load_model(work.int8))
    sample = ImageFolderDataset(work.image, specs, [work.image], PREPROCESSING).stacked(1)
    expected = create_session(work.int8).run(None, sample)[0]
    np.testing.assert_array_equal(np.load(out)["logits"], expected)
    assert "photo.png: top 3 of 'logits'" in printed
    assert printed.count("\n  ") == 3


def test_a_fused_model_gets_raw_uint8_pixels(work: Work, tmp_path, capsys) -> None:
    fused = lowbit.transform(work.root / "model.onnx", tmp_path / "fused.f32.onnx",
                             image_options=PREPROCESSING, fuse_preprocess=True)
    bundle = package(fused.path, tmp_path / "fused.lowbit").path
    out = tmp_path / "y.npz"
    assert main([str(bundle), "--input", str(work.image), "--output", str(out)]) == 0
    plain = create_session(work.f32)
    specs = input_specs(load_model(work.f32))
    sample = ImageFolderDataset(work.image, specs, [work.image], PREPROCESSING).stacked(1)
    np.testing.assert_allclose(np.load(out)["logits"], plain.run(None, sample)[0],
                               rtol=1e-4, atol=1e-4)


def test_top_classes_softmax_logits_and_keep_probabilities() -> None:
    shown, kind = top_classes(np.array([0.0, 2.0, 1.0]), 2, ("a", "b", "c"))
    assert [p.label for p in shown] == ["b", "c"] and kind == "softmax of the output"
    assert sum(np.exp([0.0, 2.0, 1.0]) / np.exp([0.0, 2.0, 1.0]).sum()) == pytest.approx(1)
    shown, kind = top_classes(np.array([0.2, 0.7, 0.1]), 5, None)
    assert [(p.label, p.score) for p in shown][:1] == [("class 1", 0.7)]
    assert len(shown) == 3 and "probabilities" in kind


def test_top_zero_prints_only_the_summary(work: Work, capsys) -> None:
    assert main([str(work.int8_bundle), "--input", str(work.x), "--top", "0"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1


def _identity(shape: list[int], dtype: int = TensorProto.FLOAT) -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["y"])], "id",
                              [helper.make_tensor_value_info("input", dtype, shape)],
                              [helper.make_tensor_value_info("y", dtype, shape)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize(("shape", "options", "fused"), [
    ([1, 3, 16, 24], ImageOptions(), False),
    ([1, 3, 16, 24], ImageOptions(resize=(30,), pixel_format="bgr", mean=(1, 2, 3),
                                  scale=(0.5,)), False),
    ([1, 16, 24, 3], ImageOptions(resize=(30, 40), crop=(20,), layout="auto"), False),
    ([1, 1, 16, 24], ImageOptions(keep_aspect_ratio=True, pixel_format="gray"), False),
    ([1, 16, 24, 3], ImageOptions(resize=(30,), mean=(9,), scale=(0.1,)), True),
])
def test_the_runner_reads_the_meta_as_lowbit_does(tmp_path, shape, options, fused) -> None:
    """lowbit-run's reading of a meta file gives the arrays lowbit's own data layer feeds
    (ModelMeta.feed_options, ImageFolderDataset) for every kind of preprocessing."""
    from PIL import Image

    from lowbit.io.meta import describe_model, meta_text
    from lowbit_run.cli import image_feed

    path = tmp_path / "p.png"
    pixels = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path)
    model = _identity(shape, TensorProto.UINT8 if fused else TensorProto.FLOAT)
    meta = describe_model(model, preprocessing=options, fused=fused,
                          fused_layout="nhwc" if fused else None)
    session = create_session(model)
    found = image_feed(path, json.loads(meta_text(meta)), session)["input"]
    specs = input_specs(model)
    expected = ImageFolderDataset(path, specs, [path], meta.feed_options()).stacked(1)["input"]
    assert found.dtype == expected.dtype
    np.testing.assert_array_equal(found, expected)
