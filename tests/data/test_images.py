"""Image preprocessing: ImageOptions validation and the numbers load_image produces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lowbit.data.images import ImageOptions, is_image_file, load_image
from lowbit.errors import DatasetError, UsageError


def solid(path: Path, colour: tuple[int, ...], size: tuple[int, int] = (8, 6),
          mode: str = "RGB") -> Path:
    Image.new(mode, size, colour).save(path)
    return path


def test_solid_rgb_gives_pixel_minus_mean_times_scale_per_channel(tmp_path: Path) -> None:
    path = solid(tmp_path / "c.png", (10, 20, 30), size=(8, 6))
    options = ImageOptions(mean=(1.0, 2.0, 3.0), scale=(0.5, 0.25, 2.0))
    x = load_image(path, options, height=4, width=5)
    assert x.shape == (1, 3, 4, 5)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], [(10 - 1) * 0.5, (20 - 2) * 0.25, (30 - 3) * 2.0])
    assert np.all(x == x[:, :, :1, :1])  # a solid image stays solid through resizing


def test_single_mean_and_scale_broadcast_to_all_channels(tmp_path: Path) -> None:
    path = solid(tmp_path / "c.png", (10, 20, 30))
    x = load_image(path, ImageOptions(mean=(127.5,), scale=(1 / 127.5,)), 2, 2)
    np.testing.assert_allclose(x[0, :, 1, 1], (np.array([10, 20, 30]) - 127.5) / 127.5,
                               rtol=1e-6)


def test_bgr_reverses_channels_before_mean_and_scale(tmp_path: Path) -> None:
    path = solid(tmp_path / "c.png", (10, 20, 30))
    options = ImageOptions(mean=(1.0, 2.0, 3.0), scale=(1.0,), pixel_format="bgr")
    x = load_image(path, options, 2, 2)
    np.testing.assert_allclose(x[0, :, 0, 0], [30 - 1, 20 - 2, 10 - 3])


def test_gray_gives_one_channel(tmp_path: Path) -> None:
    path = solid(tmp_path / "c.png", (100, 100, 100))
    x = load_image(path, ImageOptions(pixel_format="gray", mean=(50.0,), scale=(0.1,)), 3, 3)
    assert x.shape == (1, 1, 3, 3)
    np.testing.assert_allclose(x, 5.0, rtol=1e-6)


def test_nhwc_layout_puts_channels_last(tmp_path: Path) -> None:
    path = solid(tmp_path / "c.png", (10, 20, 30))
    x = load_image(path, ImageOptions(layout="nhwc"), 4, 5)
    assert x.shape == (1, 4, 5, 3)
    np.testing.assert_allclose(x[0, 2, 3], [10, 20, 30])


def test_rgba_and_palette_images_convert_to_rgb(tmp_path: Path) -> None:
    rgba = solid(tmp_path / "a.png", (10, 20, 30, 255), mode="RGBA")
    palette = tmp_path / "p.png"
    Image.new("RGB", (4, 4), (10, 20, 30)).convert("P", palette=Image.Palette.ADAPTIVE).save(palette)
    for path in (rgba, palette):
        x = load_image(path, ImageOptions(), 2, 2)
        assert x.shape == (1, 3, 2, 2)
        np.testing.assert_allclose(x[0, :, 0, 0], [10, 20, 30], atol=3)


def test_jpeg_is_read_close_to_its_colour(tmp_path: Path) -> None:
    path = solid(tmp_path / "c.jpg", (200, 100, 50), size=(16, 16))
    x = load_image(path, ImageOptions(), 8, 8)
    np.testing.assert_allclose(x[0, :, 4, 4], [200, 100, 50], atol=4)


def three_band_image(path: Path, width: int = 60, height: int = 30) -> Path:
    """Red left quarter, green middle half, blue right quarter."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 4] = (255, 0, 0)
    pixels[:, width // 4 : 3 * width // 4] = (0, 255, 0)
    pixels[:, 3 * width // 4 :] = (0, 0, 255)
    Image.fromarray(pixels).save(path)
    return path


def test_resize_shorter_side_then_centre_crop_keeps_the_middle(tmp_path: Path) -> None:
    path = three_band_image(tmp_path / "bands.png")  # 60x30 → shorter side 10 → 20x10
    x = load_image(path, ImageOptions(resize=(10,)), 10, 8)
    assert x.shape == (1, 3, 10, 8)
    # The crop (columns 6..13 of 20) lies inside the green band (columns 5..14).
    assert np.all(x[0, 1] > 200)
    assert np.all(x[0, 0] < 60) and np.all(x[0, 2] < 60)


def test_resize_to_height_width_then_centre_crop(tmp_path: Path) -> None:
    path = three_band_image(tmp_path / "bands.png")
    x = load_image(path, ImageOptions(resize=(12, 24)), 12, 10)  # crop columns 7..16 of 24
    assert np.all(x[0, 1] > 200)


def test_no_resize_option_stretches_the_whole_image(tmp_path: Path) -> None:
    path = three_band_image(tmp_path / "bands.png")
    x = load_image(path, ImageOptions(), 4, 8)  # all three bands remain
    assert x[0, 0, 2, 0] > 200 and x[0, 1, 2, 4] > 200 and x[0, 2, 2, 7] > 200


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(b"not an image at all")
    with pytest.raises(DatasetError, match=r"cannot read image .*broken\.png"):
        load_image(path, ImageOptions(), 2, 2)


def test_truncated_image_names_the_file(tmp_path: Path) -> None:
    good = solid(tmp_path / "good.jpg", (1, 2, 3), size=(64, 64))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(DatasetError, match=r"cut\.jpg"):
        load_image(cut, ImageOptions(), 2, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pixel_format": "yuv"}, "pixel_format must be one of rgb, bgr, gray, got 'yuv'"),
        ({"layout": "chw"}, "layout must be one of nchw, nhwc, got 'chw'"),
        ({"mean": ()}, "mean must have at least one value"),
        ({"scale": ("a",)}, "scale must be a list of numbers"),
        ({"mean": (float("nan"),)}, "mean must be finite"),
        ({"resize": (0, 3)}, "resize must be"),
        ({"resize": (1, 2, 3)}, "resize must be"),
        ({"resize": (2.5,)}, "resize must be"),
    ],
)
def test_image_options_are_checked_on_construction(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ImageOptions(**kwargs)


def test_image_options_coerce_lists_and_scalars() -> None:
    options = ImageOptions(mean=[1, 2, 3], scale=2, resize=256)  # type: ignore[arg-type]
    assert options.mean == (1.0, 2.0, 3.0)
    assert options.scale == (2.0,)
    assert options.resize == (256,)
    assert options.channels == 3 and ImageOptions(pixel_format="gray").channels == 1


def test_check_fits_rejects_wrong_mean_length_and_small_resize() -> None:
    with pytest.raises(UsageError, match="mean has 2 values but input 'x' has 3 channel"):
        ImageOptions(mean=(1.0, 2.0)).check_fits(4, 4, 3, "input 'x'")
    with pytest.raises(UsageError, match="resize shorter side 200 is smaller than the 224x224"):
        ImageOptions(resize=(200,)).check_fits(224, 224, 3, "input 'x'")
    with pytest.raises(UsageError, match="resize 256x100 is smaller than the 224x224"):
        ImageOptions(resize=(256, 100)).check_fits(224, 224, 3, "input 'x'")
    ImageOptions(resize=(256,)).check_fits(224, 224, 3, "input 'x'")


def test_is_image_file_by_suffix_and_skips_hidden_files() -> None:
    assert is_image_file(Path("a/B.JPG")) and is_image_file(Path("x.webp"))
    assert not is_image_file(Path("._x.jpg")) and not is_image_file(Path("labels.txt"))
