"""Image preprocessing: one image file to one model-ready array.

    options = ImageOptions(mean=(123.675, 116.28, 103.53), scale=(1 / 58.395, 1 / 57.12, 1 / 57.375),
                           pixel_format="rgb", resize=(256,), layout="nchw")
    x = load_image("cat.jpg", options, height=224, width=224)   # (1, 3, 224, 224) float32

Steps, in order: decode with Pillow; convert to RGB or L (``bgr`` is RGB with the
channels reversed); resize with bilinear filtering; centre-crop; resize the crop
to the input's height and width if it differs; ``value = (pixel - mean) * scale``
per channel (tpu-mlir's convention); NCHW or NHWC; add the batch axis. The steps
themselves are :mod:`lowbit_run.preprocess`, which lowbit-run shares, so a bundle is
fed exactly as lowbit fed the model; this module validates the options.

``resize`` decides the geometry:

- ``None``: resize straight to the crop size (the input's height and width unless
  ``crop`` is given), ignoring the aspect ratio;
- ``(side,)``: resize so the shorter side equals ``side`` (aspect ratio kept),
  then centre-crop — the torchvision ``Resize(256)`` + ``CenterCrop(224)`` recipe;
- ``(h, w)``: resize to exactly h×w, then centre-crop (tpu-mlir's ``resize_dims``).

``keep_aspect_ratio`` (with ``None`` or ``(h, w)``): scale the image to fit inside
the target keeping its aspect ratio and pad the rest with black, centred (tpu-mlir's
``--keep_aspect_ratio``, a letterbox). ``crop`` ``(h, w)`` is the size of the centre
crop (default: the input's height and width); a crop of another size is resized to
the input's. ``layout`` ``"auto"`` is resolved per input by :meth:`ImageOptions.for_shape`:
NCHW when axis 1 holds the channels, NHWC when axis 3 does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from lowbit.errors import DatasetError, UsageError
from lowbit_run import preprocess

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".pnm"}
)
PIXEL_FORMATS = ("rgb", "bgr", "gray")
LAYOUTS = ("nchw", "nhwc")


@dataclass(frozen=True)
class ImageOptions:
    """How image files become model inputs; checked on construction (UsageError)."""

    mean: tuple[float, ...] = (0.0,)  # per channel, broadcast if length 1
    scale: tuple[float, ...] = (1.0,)  # value = (pixel - mean) * scale
    pixel_format: str = "rgb"  # rgb | bgr | gray
    resize: tuple[int, ...] | None = None  # None, (shorter_side,) or (height, width)
    layout: str = "nchw"  # nchw | nhwc | auto (see for_shape)
    crop: tuple[int, ...] | None = None  # centre crop (h, w) or (side,); None: input size
    keep_aspect_ratio: bool = False  # letterbox into resize (h, w) or the crop size

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _float_tuple("mean", self.mean))
        object.__setattr__(self, "scale", _float_tuple("scale", self.scale))
        if self.pixel_format not in PIXEL_FORMATS:
            raise UsageError(f"pixel_format must be one of {', '.join(PIXEL_FORMATS)}, "
                             f"got {self.pixel_format!r}")
        if self.layout not in (*LAYOUTS, "auto"):
            raise UsageError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r} "
                             f"(or auto: chosen from the input's shape)")
        if self.resize is not None:
            object.__setattr__(self, "resize", _resize_tuple(self.resize))
        if self.crop is not None:
            crop = _resize_tuple(self.crop, "crop")
            object.__setattr__(self, "crop", crop * 2 if len(crop) == 1 else crop)
        if not isinstance(self.keep_aspect_ratio, bool):
            raise UsageError(f"keep_aspect_ratio must be True or False, "
                             f"got {self.keep_aspect_ratio!r}")

    @property
    def channels(self) -> int:
        return 1 if self.pixel_format == "gray" else 3

    def for_shape(self, shape: tuple[object, ...]) -> ImageOptions:
        """These options with ``layout`` "auto" resolved for a 4-D input of this shape:
        NCHW when axis 1 has the channels (or is not a number), NHWC when only axis 3 has."""
        if self.layout != "auto":
            return self
        nhwc = len(shape) == 4 and shape[1] != self.channels and shape[3] == self.channels
        return replace(self, layout="nhwc" if nhwc else "nchw")

    def check_fits(self, height: int, width: int, channels: int, where: str) -> None:
        """Raise UsageError if these options cannot produce a (channels, height, width) input."""
        for label, values in (("mean", self.mean), ("scale", self.scale)):
            if len(values) not in (1, channels):
                raise UsageError(f"{label} has {len(values)} values but {where} has "
                                 f"{channels} channel(s); give 1 or {channels}")
        crop_h, crop_w = self.crop or (height, width)
        what = f"the {crop_h}x{crop_w} crop that {where} needs" if self.crop is None else \
            f"the {crop_h}x{crop_w} crop"
        if self.resize is None:
            return
        if len(self.resize) == 1:
            if self.resize[0] < max(crop_h, crop_w):
                raise UsageError(f"resize shorter side {self.resize[0]} is smaller than {what}")
        elif self.resize[0] < crop_h or self.resize[1] < crop_w:
            raise UsageError(f"resize {self.resize[0]}x{self.resize[1]} is smaller than {what}")


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def load_image(path: str | Path, options: ImageOptions, height: int, width: int) -> np.ndarray:
    """Decode and preprocess one image: float32, (1, C, H, W) or (1, H, W, C)."""
    try:
        return preprocess.load_image(
            path, height=height, width=width, mean=options.mean, scale=options.scale,
            pixel_format=options.pixel_format, resize=options.resize, crop=options.crop,
            keep_aspect_ratio=options.keep_aspect_ratio, layout=options.layout)
    except preprocess.ImageError as err:
        raise DatasetError(str(err)) from err


def resize_and_crop(image: Image.Image, options: ImageOptions, height: int,
                    width: int) -> Image.Image:
    """The geometry steps of :func:`load_image`: resize (or letterbox), centre-crop, and
    resize the crop to height x width when ``options.crop`` has another size."""
    return preprocess.resize_and_crop(image, height, width, resize=options.resize,
                                      crop=options.crop,
                                      keep_aspect_ratio=options.keep_aspect_ratio)


def _float_tuple(label: str, values: object) -> tuple[float, ...]:
    if isinstance(values, int | float):
        values = (values,)
    try:
        result = tuple(float(v) for v in values)  # type: ignore[attr-defined]
    except (TypeError, ValueError) as err:
        raise UsageError(f"{label} must be a list of numbers, got {values!r}") from err
    if not result:
        raise UsageError(f"{label} must have at least one value")
    if not all(math.isfinite(v) for v in result):
        raise UsageError(f"{label} must be finite numbers, got {result}")
    return result


def _resize_tuple(values: object, label: str = "resize") -> tuple[int, ...]:
    items: tuple[object, ...] = (
        (values,) if isinstance(values, int) else tuple(values) if isinstance(values, list | tuple)
        else ()
    )
    sizes = tuple(int(v) for v in items
                  if isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0)
    if len(items) not in (1, 2) or len(sizes) != len(items):
        raise UsageError(f"{label} must be (side,) or (height, width) of positive integers, "
                         f"got {values!r}")
    return sizes
