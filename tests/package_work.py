"""small_resnet through transform → calibrate → deploy, then packaged: the files the package
and `lowbit package` tests share (build_work)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from PIL import Image

import lowbit
from lowbit.api import package
from lowbit.data import ImageOptions
from tests.models import small_resnet

PREPROCESSING = ImageOptions(mean=(127.5,), scale=(1 / 127.5,), pixel_format="rgb",
                             resize=(20,))
LABELS = tuple(f"thing {i}" for i in range(10))


@dataclass(frozen=True)
class Work:
    root: Path
    f32: Path
    int8: Path
    x: Path  # 6 test samples
    reference: Path  # the F32 outputs on x
    image: Path  # a 24x30 RGB photo-like image
    f32_bundle: Path
    int8_bundle: Path


def build_work(root: Path) -> Work:
    onnx.save(small_resnet(), root / "model.onnx")
    rng = np.random.default_rng(3)
    np.savez(root / "x.npz", input=rng.normal(size=(6, 3, 16, 16)).astype(np.float32))
    np.savez(root / "calib.npz", input=rng.normal(size=(24, 3, 16, 16)).astype(np.float32))
    f32 = lowbit.transform(root / "model.onnx", root / "model.f32.onnx",
                           test_input=root / "x.npz", image_options=PREPROCESSING)
    lowbit.calibrate(f32.path, root / "calib.npz", output=root / "model.calib",
                     method="minmax", progress=False)
    int8 = lowbit.deploy(f32.path, calibration_table=root / "model.calib",
                         output=root / "model.int8.onnx", test_input=root / "x.npz",
                         test_reference=f32.reference_path, tolerance="0.99,0.90")
    pixels = (rng.uniform(0, 255, size=(24, 30, 3))).astype(np.uint8)
    Image.fromarray(pixels, mode="RGB").save(root / "photo.png")
    f32_bundle = package(f32.path, root / "model.f32.lowbit", test_input=root / "x.npz",
                         labels=LABELS).path
    int8_bundle = package(int8.path, root / "model.int8.lowbit", labels=LABELS).path
    assert f32.reference_path is not None
    return Work(root, f32.path, int8.path, root / "x.npz", f32.reference_path,
                root / "photo.png", f32_bundle, int8_bundle)
