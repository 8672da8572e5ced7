"""TFLite FlatBuffers, via tf2onnx.

    imported = import_model("model.tflite")
    imported.exporter   # "tf2onnx.from_tflite"

A TFLite file is a FlatBuffer whose file identifier, bytes 4..8, is ``TFL3``. Float
models convert op for op; a quantized (int8) TFLite model converts to ONNX
QuantizeLinear/DequantizeLinear pairs, which lowbit then treats as any other graph.
The ONNX inputs and outputs take the TFLite tensor names (``serving_default_x:0``).
"""

from __future__ import annotations

from pathlib import Path

from lowbit.io.importers.base import ImportedModel, Importer, ImportOptions, refuse_names, register
from lowbit.io.importers.tf_common import TF_MODULES, convert_with_tf2onnx
from lowbit.io.sniff import head

FILE_IDENTIFIER = b"TFL3"


def is_tflite(path: Path) -> bool:
    return head(path, 8)[4:8] == FILE_IDENTIFIER


def convert_tflite(path: Path, options: ImportOptions) -> ImportedModel:
    refuse_names(options, "a TFLite model")
    return convert_with_tf2onnx(
        lambda tf2onnx, opset: tf2onnx.convert.from_tflite(str(path), opset=opset), options,
        what=f"the TFLite model {path}", source=str(path), source_format="tflite",
        exporter="tf2onnx.from_tflite")


register(Importer(name="tflite", label="TFLite (.tflite)", detect=is_tflite,
                  convert=convert_tflite, extra="tf", modules=TF_MODULES))
