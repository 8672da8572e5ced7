"""Tell which registered importer reads a path.

    importer = detect_format(Path("model.tflite"))   # Importer(name="tflite", ...)

Detectors look at content, not names; the extension only sharpens the message when
nothing recognises the file (a ``.onnx`` that no detector takes is called corrupt).
"""

from __future__ import annotations

from pathlib import Path

from lowbit.errors import ModelError
from lowbit.io.importers.base import Importer, importers
from lowbit.io.kinds import what_file

# Extensions users give, for the error message only: never used to choose an importer.
_EXTENSION_FORMAT = {".onnx": "ONNX", ".pt": "TorchScript", ".pth": "TorchScript",
                     ".tflite": "TFLite", ".pb": "TensorFlow GraphDef", ".keras": "Keras",
                     ".h5": "Keras HDF5", ".hdf5": "Keras HDF5"}

# The order formats are listed in when none matched (framework by framework).
_LISTED = ("onnx", "torchscript", "savedmodel", "graphdef", "keras", "keras-h5", "tflite")


def detect_format(path: Path) -> Importer:
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if path.is_file() and path.stat().st_size == 0:
        raise ModelError(f"model file is empty: {path}")
    for importer in importers():
        if importer.detect(path):
            return importer
    listed = sorted(importers(), key=lambda i: _LISTED.index(i.name) if i.name in _LISTED
                    else len(_LISTED))
    readable = ", ".join(importer.label for importer in listed)
    named = _EXTENSION_FORMAT.get(path.suffix.lower())
    if named is not None:
        raise ModelError(f"{path} is named as {named} but its content is not {named} "
                         f"(corrupt, truncated or another format); lowbit reads: {readable}")
    kind = what_file(Path(path))
    if kind is not None:
        raise ModelError(f"{path} is {kind}, not a model; lowbit reads: {readable}")
    raise ModelError(f"cannot tell what kind of model {path} is; lowbit reads: {readable}")
