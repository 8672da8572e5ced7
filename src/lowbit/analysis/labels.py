"""Ground truth for evaluation: class labels (and image targets) per data-set sample.

    labels = load_labels("val_labels.txt", "val/", num_samples=500)        # int64, shape (500,)
    labels = load_labels(None, "mnist_test.npz", num_samples=1000)         # the npz's 'label' key
    labels = load_labels("gt.npz:classes", "test.npz", num_samples=1000)   # a named key
    targets = load_targets(None, "pairs.npz", num_samples=20)              # the npz's 'target' key

Where labels come from (``source`` first, then the data set itself):

- an ``.npz``: key ``label`` or ``labels``, or the key named after a colon
  (``file.npz:key``); an ``.npy`` holds the labels array itself;
- a text file: one integer per line, in data-set order; or ``name label`` lines
  (ImageNet's ``ILSVRC2012_val_00000001.JPEG 65`` form), matched to the data
  set's files by path relative to the data-set folder, else by file name.
  Blank lines and ``#`` comments are skipped;
- no source, data set an ``.npz`` with a ``label``/``labels`` key: that key;
- no source, data set a folder of images in class folders: the class of an
  image is the index of its immediate parent folder's name in the sorted list of
  the class folder names (the distinct parent folders of all images). This is
  torchvision's ``ImageFolder`` rule when every class folder holds its images
  directly; a folder that holds only some of a model's classes gives wrong
  indices, so give a labels file for such a subset.

Every error is a one-line DatasetError that names the file and what was expected.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lowbit.data.datasets import npz_keys, read_array
from lowbit.data.images import is_image_file
from lowbit.errors import DatasetError

log = logging.getLogger(__name__)

LABEL_KEYS = ("label", "labels")
TARGET_KEY = "target"
HOW_TO_GIVE_LABELS = ("give {labels} (labels.npz[:key], a text file of one integer "
                      "per line or 'filename label' lines), put a 'label' array in the data set "
                      ".npz, or lay the images out in one folder per class")


def load_labels(source: str | Path | None, dataset_path: str | Path, num_samples: int, *,
                sample_paths: Sequence[Path] | None = None) -> np.ndarray:
    """One int64 class index per data-set sample, from ``source`` or the data set itself.

    ``sample_paths`` are the data set's files in sample order (an image or sample
    folder's ``.paths``); when None and the data set is a folder they are listed
    the way :func:`lowbit.data.open_dataset` lists images.
    """
    dataset_path = Path(dataset_path)
    if source is not None:
        labels = _labels_from_source(source, dataset_path, sample_paths)
        where = str(source)
    else:
        labels, where = _labels_from_dataset(dataset_path, sample_paths)
    return _checked(labels, where, dataset_path, num_samples)


def load_targets(source: str | Path | None, dataset_path: str | Path,
                 num_samples: int) -> np.ndarray | None:
    """The ``target`` array (first axis = samples) of the labels .npz or of the data-set .npz;
    None when neither holds one."""
    for candidate in (source, dataset_path):
        if candidate is None:
            continue
        path, _ = _split_npz_key(candidate)
        if path.suffix.lower() != ".npz" or not path.is_file():
            continue
        keys = _npz_keys(path)
        if TARGET_KEY in keys:
            targets = _read_npz_key(path, TARGET_KEY)
            if targets.ndim == 0 or targets.shape[0] != num_samples:
                found = "a scalar" if targets.ndim == 0 else f"{targets.shape[0]}"
                raise DatasetError(f"'{TARGET_KEY}' in {path} holds {found} targets, but data "
                                   f"set {dataset_path} has {num_samples} samples")
            return targets
    return None


# --------------------------------------------------------------------------- sources


def _labels_from_source(source: str | Path, dataset_path: Path,
                        sample_paths: Sequence[Path] | None) -> np.ndarray:
    path, key = _split_npz_key(source)
    if not path.exists():
        raise DatasetError(f"labels file not found: {path}")
    if not path.is_file():
        raise DatasetError(f"labels must be a file (.npz, .npy or text), found a folder: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _read_npz_key(path, key or _label_key(path))
    if suffix == ".npy":
        return read_array(path)
    return _labels_from_text(path, dataset_path, sample_paths)


def _labels_from_dataset(dataset_path: Path,
                         sample_paths: Sequence[Path] | None) -> tuple[np.ndarray, str]:
    if dataset_path.is_file() and dataset_path.suffix.lower() == ".npz":
        keys = _npz_keys(dataset_path)
        key = next((k for k in LABEL_KEYS if k in keys), None)
        if key is None:
            raise DatasetError(f"data set {dataset_path} has no '{LABEL_KEYS[0]}' array (keys: "
                               f"{', '.join(keys) or 'none'}); {HOW_TO_GIVE_LABELS}")
        return _read_npz_key(dataset_path, key), f"{dataset_path}:{key}"
    if dataset_path.is_dir():
        paths = list(sample_paths) if sample_paths is not None else _image_paths(dataset_path)
        if paths and all(is_image_file(p) for p in paths):
            return (_labels_from_class_folders(dataset_path, paths),
                    f"class folders of {dataset_path}")
    raise DatasetError(f"no labels for data set {dataset_path}; {HOW_TO_GIVE_LABELS}")


def _labels_from_class_folders(root: Path, paths: Sequence[Path]) -> np.ndarray:
    loose = [p for p in paths if p.parent.resolve() == root.resolve()]
    if not paths or loose:
        example = f" ({loose[0].name} lies directly in it)" if loose else ""
        raise DatasetError(f"cannot take labels from folder names: {root} does not keep every "
                           f"image in a class folder{example}; {HOW_TO_GIVE_LABELS}")
    classes = sorted({p.parent.name for p in paths})
    index = {name: i for i, name in enumerate(classes)}
    log.info("labels from %d class folders of %s: %s", len(classes), root,
             ", ".join(f"{name}={i}" for name, i in list(index.items())[:5])
             + (", ..." if len(classes) > 5 else ""))
    return np.array([index[p.parent.name] for p in paths], dtype=np.int64)


def _labels_from_text(path: Path, dataset_path: Path,
                      sample_paths: Sequence[Path] | None) -> np.ndarray:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read labels {path}: {_first_line(err)}") from err
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if line:
            entries.append((number, line.rsplit(None, 1)))
    if not entries:
        raise DatasetError(f"labels file {path} holds no labels")
    named = [len(fields) == 2 for _, fields in entries]
    if any(named) and not all(named):
        odd_line = entries[named.index(not named[0])][0]
        raise DatasetError(f"labels file {path} mixes 'label' and 'name label' lines (line "
                           f"{odd_line}); use one form")
    values = [_parse_int(fields[-1], path, number) for number, fields in entries]
    if not named[0]:
        return np.array(values, dtype=np.int64)
    by_name = {fields[0]: value for (_, fields), value in zip(entries, values, strict=True)}
    return _match_names(by_name, path, dataset_path, sample_paths)


def _match_names(by_name: dict[str, int], path: Path, dataset_path: Path,
                 sample_paths: Sequence[Path] | None) -> np.ndarray:
    if sample_paths is None and dataset_path.is_dir():
        sample_paths = _image_paths(dataset_path)
    if not sample_paths:
        raise DatasetError(f"labels file {path} has 'name label' lines, but data set "
                           f"{dataset_path} is not a folder of files to match them to; use one "
                           f"integer per line in sample order")
    labels = []
    for sample in sample_paths:
        relative = _relative(sample, dataset_path)
        value = by_name.get(relative, by_name.get(sample.name))
        if value is None:
            raise DatasetError(f"labels file {path} has no line for {relative} (matched by "
                               f"path relative to {dataset_path}, then by file name)")
        labels.append(value)
    return np.array(labels, dtype=np.int64)


# --------------------------------------------------------------------------- npz helpers


def _split_npz_key(source: str | Path) -> tuple[Path, str | None]:
    """'file.npz:key' -> (file.npz, key); anything else -> (path, None)."""
    text = str(source)
    head, sep, key = text.rpartition(":")
    if sep and head.lower().endswith(".npz") and key and "/" not in key and "\\" not in key:
        return Path(head), key
    return Path(text), None


def _npz_keys(path: Path) -> list[str]:
    return npz_keys(path)


def _label_key(path: Path) -> str:
    keys = _npz_keys(path)
    for key in LABEL_KEYS:
        if key in keys:
            return key
    raise DatasetError(f"labels file {path} has no '{LABEL_KEYS[0]}' or '{LABEL_KEYS[1]}' array "
                       f"(keys: {', '.join(keys) or 'none'}); name the key as {path}:KEY")


def _read_npz_key(path: Path, key: str) -> np.ndarray:
    keys = _npz_keys(path)
    if key not in keys:
        raise DatasetError(f"{path} has no array '{key}' (keys: {', '.join(keys) or 'none'})")
    return read_array(path, key)


# --------------------------------------------------------------------------- checks


def _checked(labels: np.ndarray, where: str, dataset_path: Path, num_samples: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DatasetError(f"labels in {where} have shape {list(labels.shape)}; expected one "
                           f"integer per sample, shape [{num_samples}]")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise DatasetError(f"labels in {where} are not whole numbers (dtype {labels.dtype})")
    elif labels.dtype.kind not in "iub":
        raise DatasetError(f"labels in {where} are not integers (dtype {labels.dtype})")
    if labels.shape[0] != num_samples:
        raise DatasetError(f"{where} holds {labels.shape[0]} labels, but data set "
                           f"{dataset_path} has {num_samples} samples")
    if labels.size and labels.min() < 0:
        first = int(np.argmax(labels < 0))
        raise DatasetError(f"label {int(labels[first])} for sample {first} in {where} is negative;"
                           f" class indices start at 0")
    return labels.astype(np.int64)


def _image_paths(root: Path) -> list[Path]:
    """Image files under ``root`` in the order open_dataset reads them."""
    return sorted((p for p in root.rglob("*") if p.is_file() and is_image_file(p)),
                  key=lambda p: p.relative_to(root).as_posix())


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def _parse_int(text: str, path: Path, line: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise DatasetError(f"labels file {path}, line {line}: expected an integer label, found "
                           f"'{text}'") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
