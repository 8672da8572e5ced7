"""Write a model as OpenVINO IR (.xml + .bin) with its weights in the precision they have.

    written = save_ir("work/model.int8.onnx", "out/.tmp/model.xml")
    weight_types("out/model.xml")       # {"f32": 41, "i64": 2}: Constant element types

OpenVINO's converter compresses float weights to FP16 unless told not to
(``openvino.save_model``'s ``compress_to_fp16``, True by default), which moves an F32
model's results (by 1.3e-4 on ResNet-18): lowbit always writes them as they are, so an
F32 model's IR holds F32 weights and an INT8 model's its int8 weights and F32 scales.

Needs the optional ``openvino`` package; call :func:`lowbit.runtime.backends.require_openvino`
first.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import openvino as ov

from lowbit.errors import ModelError
from lowbit.runtime.openvino import _first_line

log = logging.getLogger(__name__)


def save_ir(model: str | Path, xml: str | Path) -> Path:
    """Convert the ONNX file ``model`` and write ``xml`` and the .bin beside it."""
    xml = Path(xml)
    try:
        converted = ov.convert_model(str(model))
        ov.save_model(converted, str(xml), compress_to_fp16=False)
    except Exception as err:  # OpenVINO raises RuntimeError and its own exception types
        raise ModelError(f"OpenVINO {ov.__version__} cannot convert {model} to IR: "
                         f"{_first_line(err)}") from err
    log.info("wrote OpenVINO IR %s (+ .bin) from %s", xml, model)
    return xml


def weight_types(xml: str | Path) -> dict[str, int]:
    """How many Constant nodes of each element type ("f32", "f16", "i8", ...) the IR holds."""
    try:
        model = ov.Core().read_model(str(xml))
    except Exception as err:
        raise ModelError(f"OpenVINO cannot read {xml}: {_first_line(err)}") from err
    return dict(Counter(op.get_element_type().get_type_name() for op in model.get_ops()
                        if op.get_type_name() == "Constant"))
