"""Image preprocessing: the one implementation that lowbit and lowbit-run share.

    x = load_image("cat.jpg", height=224, width=224, mean=(123.675, 116.28, 103.53),
                   scale=(1 / 58.395, 1 / 57.12, 1 / 57.375), pixel_format="rgb",
                   resize=(256,), crop=None, keep_aspect_ratio=False, layout="nchw")
    x.shape, x.dtype                    # (1, 3, 224, 224) float32

Steps, in order: decode with Pillow; convert to RGB or L (``bgr`` is RGB with the
channels reversed); resize with bilinear filtering; centre-crop; resize the crop to
the input's height and width if it differs; ``value = (pixel - mean) * scale`` per
channel; NCHW or NHWC; add the batch axis. ``resize`` is None (straight to the crop
size), ``(side,)`` (shorter side, aspect kept, then centre-crop) or ``(h, w)``;
``keep_aspect_ratio`` letterboxes into the target with black bars.

It imports only numpy, Pillow and the standard library, because lowbit-run (which
runs a bundle where lowbit is not installed) uses it; :mod:`lowbit.data.images`
validates the options (``ImageOptions``) and calls these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


class ImageError(ValueError):
    """An image file that Pillow cannot read; the message names the file."""


def load_image(path: str | Path, *, height: int, width: int, mean: Sequence[float],
               scale: Sequence[float], pixel_format: str, resize: Sequence[int] | None,
               crop: Sequence[int] | None, keep_aspect_ratio: bool,
               layout: str) -> np.ndarray:
    """Decode and preprocess one image: float32, (1, C, H, W) or (1, H, W, C)."""
    image = open_image(Path(path), "L" if pixel_format == "gray" else "RGB")
    image = resize_and_crop(image, height, width, resize=resize, crop=crop,
                            keep_aspect_ratio=keep_aspect_ratio)
    return to_array(image, mean=mean, scale=scale, pixel_format=pixel_format, layout=layout)


def open_image(path: Path, mode: str) -> Image.Image:
    """The decoded image in ``mode`` ("RGB" or "L"); ImageError when it cannot be read."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert(mode)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        # UnidentifiedImageError and truncated-file errors are OSErrors.
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ImageError(f"cannot read image {path}: {detail}") from err


def to_array(image: Image.Image, *, mean: Sequence[float], scale: Sequence[float],
             pixel_format: str, layout: str) -> np.ndarray:
    """``(pixel - mean) * scale`` per channel, in ``layout`` ("nhwc", else NCHW), batch 1."""
    pixels = np.asarray(image, dtype=np.float32)  # (H, W, 3) or (H, W)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixel_format == "bgr":
        pixels = pixels[:, :, ::-1]
    values = (pixels - np.asarray(mean, dtype=np.float32)) * np.asarray(scale, dtype=np.float32)
    if layout != "nhwc":  # "auto" without a shape to look at is NCHW
        values = values.transpose(2, 0, 1)
    return np.ascontiguousarray(values[None], dtype=np.float32)


def resize_and_crop(image: Image.Image, height: int, width: int, *,
                    resize: Sequence[int] | None, crop: Sequence[int] | None,
                    keep_aspect_ratio: bool) -> Image.Image:
    """Resize (or letterbox), centre-crop to ``crop`` (default height x width), and resize
    the crop to height x width when it has another size."""
    crop_h, crop_w = (crop[0], crop[-1]) if crop else (height, width)
    if resize is None or len(resize) == 2:
        target_h, target_w = (resize[0], resize[1]) if resize is not None else (crop_h, crop_w)
        image = letterbox(image, target_h, target_w) if keep_aspect_ratio else \
            resize_to(image, target_h, target_w)
    else:
        short = resize[0]
        w, h = image.size
        if w <= h:
            new_w, new_h = short, max(short, round(h * short / w))
        else:
            new_w, new_h = max(short, round(w * short / h)), short
        image = resize_to(image, new_h, new_w)
    image = centre_crop(image, crop_h, crop_w)
    return resize_to(image, height, width)


def letterbox(image: Image.Image, height: int, width: int) -> Image.Image:
    """Fit inside height x width keeping the aspect ratio; pad with black, centred."""
    check_pixels(height, width)
    w, h = image.size
    ratio = min(height / h, width / w)
    new_w, new_h = max(1, min(width, round(w * ratio))), max(1, min(height, round(h * ratio)))
    canvas = Image.new(image.mode, (width, height))  # black (0) in every mode
    canvas.paste(resize_to(image, new_h, new_w), ((width - new_w) // 2, (height - new_h) // 2))
    return canvas


def resize_to(image: Image.Image, height: int, width: int) -> Image.Image:
    if image.size == (width, height):
        return image
    check_pixels(height, width)
    return image.resize((width, height), Image.Resampling.BILINEAR)


def check_pixels(height: int, width: int) -> None:
    """Refuse an image larger than Pillow lets a file decode to (its decompression-bomb
    limit): a resize, crop or input size that large cannot be held, let alone fed."""
    limit = Image.MAX_IMAGE_PIXELS or 0
    if limit and height * width > limit:
        raise ImageError(f"making a {width}x{height} image ({height * width / 1e6:.0f} "
                         f"megapixels) is over the {limit / 1e6:.0f}-megapixel limit: check "
                         "the resize and crop sizes and the model's input height and width")


def centre_crop(image: Image.Image, height: int, width: int) -> Image.Image:
    w, h = image.size
    # Same rounding as torchvision's CenterCrop.
    top = round((h - height) / 2.0)
    left = round((w - width) / 2.0)
    return image.crop((left, top, left + width, top + height))
