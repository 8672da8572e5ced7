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

from lowbit.errors import ModelError
from lowbit.io.importers.base import (
    ImportedModel,
    Importer,
    ImportOptions,
    first_line,
    refuse_names,
    register,
)
from lowbit.io.importers.sniff import head
from lowbit.io.importers.tf_common import (
    TF_MODULES,
    finish_conversion,
    load_tensorflow,
    quiet_native_output,
    tf2onnx_opset,
)

FILE_IDENTIFIER = b"TFL3"


def is_tflite(path: Path) -> bool:
    return head(path, 8)[4:8] == FILE_IDENTIFIER


def convert_tflite(path: Path, options: ImportOptions) -> ImportedModel:
    refuse_names(options, "a TFLite model")
    _, tf2onnx = load_tensorflow()
    with quiet_native_output():
        try:
            proto, _ = tf2onnx.convert.from_tflite(
                str(path), opset=tf2onnx_opset(tf2onnx, options.target_opset))
        except Exception as err:
            raise ModelError(f"tf2onnx could not convert the TFLite model {path}: "
                             f"{first_line(err)}") from err
    return finish_conversion(proto, options, source=str(path), source_format="tflite",
                             exporter="tf2onnx.from_tflite")


register(Importer(name="tflite", label="TFLite (.tflite)", detect=is_tflite,
                  convert=convert_tflite, extra="tf", modules=TF_MODULES))
