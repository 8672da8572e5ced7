"""Read a model from ONNX, PyTorch, TensorFlow, Keras or TFLite as ONNX.

    from lowbit.io.importers import import_model

    imported = import_model("model.onnx")                       # opset upgraded to 17
    imported = import_model("model.pt", input_shapes=[(1, 3, 224, 224)])   # TorchScript
    imported = import_model(torch_module, example=torch.randn(1, 3, 224, 224))
    imported = import_model("saved_model_dir/")                 # or .keras, .h5, .tflite
    imported = import_model("frozen.pb", input_names=["x:0"], output_names=["y:0"])
    imported.model, imported.source_format, imported.exporter, imported.notes

The format is told from what the file is (see :mod:`lowbit.io.importers.base`);
frameworks are imported only when their kind of file is given. A format whose
extra is not installed raises a one-line UsageError naming the extra.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Importing the format modules registers them (their detectors never overlap, so the
# order they run in does not matter). None imports a framework at module level.
from lowbit.io.importers import keras as _keras  # noqa: F401
from lowbit.io.importers import onnx_model as _onnx_model  # noqa: F401
from lowbit.io.importers import pytorch as _pytorch
from lowbit.io.importers import tensorflow as _tensorflow  # noqa: F401
from lowbit.io.importers import tflite as _tflite  # noqa: F401
from lowbit.io.importers.base import (
    EXPORTERS,
    MIN_SOURCE_OPSET,
    TARGET_OPSET,
    ImportedModel,
    Importer,
    ImportOptions,
    Shapes,
    importers,
)
from lowbit.io.importers.detect import detect_format

__all__ = [
    "EXPORTERS",
    "MIN_SOURCE_OPSET",
    "TARGET_OPSET",
    "ImportOptions",
    "ImportedModel",
    "Importer",
    "detect_format",
    "import_model",
    "importers",
]


def import_model(
    source: str | Path | Any,
    *,
    example: Any = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    input_shapes: Shapes | None = None,
    opset: int | None = None,
    exporter: str = "auto",
) -> ImportedModel:
    """Read ``source`` (a path, or a torch ``nn.Module``/``ScriptModule``) as ONNX.

    ``example`` (a tensor or tuple of tensors) traces a module; ``input_shapes``
    builds float32 examples instead (needed for a TorchScript file). ``input_names``
    and ``output_names`` select a frozen GraphDef's tensors, and name a PyTorch
    export's inputs and outputs. ``opset`` is the target opset (default 17).
    ``exporter`` picks torch's ONNX exporter: "torchscript", "dynamo" or "auto".
    """
    options = ImportOptions(
        example=example,
        input_names=tuple(input_names) if input_names is not None else None,
        output_names=tuple(output_names) if output_names is not None else None,
        input_shapes=input_shapes, opset=opset, exporter=exporter)
    if not isinstance(source, str | Path):
        return _pytorch.import_module(source, options)
    path = Path(source)
    importer = detect_format(path)
    importer.require()
    return importer.convert(path, options)
