"""ImageOptions' crop, keep_aspect_ratio and layout "auto": the pixels load_image gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lowbit.data import open_dataset
from lowbit.data.images import ImageOptions, load_image
from lowbit.errors import UsageError
from lowbit.spec import TensorSpec


def gradient(path: Path, width: int, height: int) -> Path:
    """Column index in red, row index in green: every pixel says where it came from."""
    x = np.arange(width)[None, :].repeat(height, 0)
    y = np.arange(height)[:, None].repeat(width, 1)
    Image.fromarray(np.stack([x, y, np.full_like(x, 7)], -1).astype(np.uint8)).save(path)
    return path


def test_crop_takes_the_centre_of_the_resized_image(tmp_path: Path) -> None:
    path = gradient(tmp_path / "g.png", 40, 30)
    x = load_image(path, ImageOptions(crop=(10, 20)), height=10, width=20)
    assert x.shape == (1, 3, 10, 20)  # resize None: straight to the crop size, no resampling
    assert x[0, 0, 0, 0] != x[0, 0, 0, -1]


def test_crop_of_another_size_than_the_input_is_resized_to_it(tmp_path: Path) -> None:
    path = gradient(tmp_path / "g.png", 64, 64)
    options = ImageOptions(resize=(64, 64), crop=(32, 32))
    x = load_image(path, options, height=16, width=16)
    assert x.shape == (1, 3, 16, 16)
    # The centre 32x32 of a 0..63 ramp spans 16..47; squeezed to 16 columns it stays inside.
    assert 15 <= x[0, 0].min() and x[0, 0].max() <= 48
    assert ImageOptions(crop=20).crop == (20, 20)  # one number: a square crop


def test_keep_aspect_ratio_letterboxes_with_black_bars(tmp_path: Path) -> None:
    path = tmp_path / "white.png"
    Image.new("RGB", (40, 20), (255, 255, 255)).save(path)  # 2:1 landscape
    x = load_image(path, ImageOptions(keep_aspect_ratio=True), height=20, width=20)
    rows = x[0, 0, :, 10]
    np.testing.assert_array_equal(rows[:5], 0)  # 20x10 image centred: 5 black rows above
    np.testing.assert_array_equal(rows[5:15], 255)
    np.testing.assert_array_equal(rows[15:], 0)
    stretched = load_image(path, ImageOptions(), height=20, width=20)
    assert np.all(stretched == 255)  # without it the image is stretched to fill


def test_resize_smaller_than_the_crop_is_refused() -> None:
    with pytest.raises(UsageError, match="resize shorter side 200 is smaller than the 224x224 crop"):
        ImageOptions(resize=(200,), crop=(224, 224)).check_fits(192, 192, 3, "input")
    with pytest.raises(UsageError, match="crop must be"):
        ImageOptions(crop=(1, 2, 3))


def test_layout_auto_is_told_from_the_input_shape(tmp_path: Path) -> None:
    auto = ImageOptions(layout="auto")
    assert auto.for_shape((1, 3, 8, 8)).layout == "nchw"
    assert auto.for_shape((1, 8, 8, 3)).layout == "nhwc"
    assert auto.for_shape(("N", 8, 8, 3)).layout == "nhwc"
    assert ImageOptions(layout="nchw").for_shape((1, 8, 8, 3)).layout == "nchw"  # explicit wins
    folder = tmp_path / "images"
    folder.mkdir()
    gradient(folder / "a.png", 12, 10)
    data = open_dataset(folder, [TensorSpec("x", (1, 8, 8, 3), np.dtype(np.float32))],
                        image_options=auto)
    assert next(iter(data))["x"].shape == (1, 8, 8, 3)
