"""Load and save ONNX models with errors a user can act on.

    model = load_model("model.onnx")          # onnx.ModelProto, checked
    specs = input_specs(model)                # [TensorSpec(...)], initializers excluded
    save_model(model, "out/model.int8.onnx")  # temp file + rename: never half-written

Models whose weights exceed 2 GB are written with external data.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from lowbit.atomic import atomic_path
from lowbit.errors import ModelError
from lowbit.spec import TensorSpec

log = logging.getLogger(__name__)

_TWO_GB = 2**31 - 1


def load_model(path: str | Path, *, check: bool = True) -> onnx.ModelProto:
    """Read an ONNX file; a missing, truncated or non-ONNX file raises ModelError."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelError(f"expected an ONNX file, found a directory: {path}")
    if path.stat().st_size == 0:
        raise ModelError(f"model file is empty: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as err:
        raise ModelError(f"{path} is not a readable ONNX model (corrupt or truncated): "
                         f"{_first_line(err)}") from err
    if not model.graph.node and not model.graph.output:
        raise ModelError(f"{path} is not an ONNX model: it has no graph")
    if check:
        try:
            onnx.checker.check_model(model, full_check=False)
        except Exception as err:
            raise ModelError(f"{path} fails the ONNX checker: {_first_line(err)}") from err
    return model


def save_model(model: onnx.ModelProto, path: str | Path) -> Path:
    """Write a model atomically: to a temporary file in the same folder, then rename."""
    path = Path(path)
    large = model.ByteSize() > _TWO_GB if _can_measure(model) else True
    with atomic_path(path) as tmp:
        if large:
            onnx.save_model(model, str(tmp), save_as_external_data=True,
                            all_tensors_to_one_file=True, location=f"{path.name}.data")
        else:
            onnx.save_model(model, str(tmp))
    return path


def input_specs(model: onnx.ModelProto) -> list[TensorSpec]:
    """The graph inputs that are fed by the user (not initializers)."""
    initializers = {init.name for init in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor_type = value.type.tensor_type
        dims: list[int | str | None] = []
        for dim in tensor_type.shape.dim:
            if dim.HasField("dim_value"):
                dims.append(int(dim.dim_value))
            elif dim.HasField("dim_param"):
                dims.append(dim.dim_param)
            else:
                dims.append(None)
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        specs.append(TensorSpec(value.name, tuple(dims), dtype))
    return specs


def output_names(model: onnx.ModelProto) -> list[str]:
    return [value.name for value in model.graph.output]


def _can_measure(model: onnx.ModelProto) -> bool:
    try:
        model.ByteSize()
    except Exception:  # noqa: BLE001 - protobuf refuses to size messages over 2 GB
        return False
    return True


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
