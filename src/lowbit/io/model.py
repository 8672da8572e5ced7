"""Load and save ONNX models with errors a user can act on.

    model = load_model("model.onnx")          # onnx.ModelProto, checked
    specs = input_specs(model)                # [TensorSpec(...)], initializers excluded
    save_model(model, "out/model.int8.onnx")  # temp file + rename: never half-written

Weights kept as external data are read from the model's folder (a missing data file
is named in the error). Models over 2 GB, or any with ``external_data=True``, are
written with their weights in ``NAME.data`` beside the model file.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import external_data_helper, helper

from lowbit.atomic import atomic_path
from lowbit.errors import ModelError
from lowbit.io.kinds import mixed_up
from lowbit.ops.custom import check_custom_ops
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
    mix_up = mixed_up(path, "an ONNX model")
    if mix_up is not None:
        raise ModelError(mix_up)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:
        raise ModelError(f"{path} is not a readable ONNX model (corrupt or truncated): "
                         f"{_first_line(err)}") from err
    if not model.graph.node and not model.graph.output:
        raise ModelError(f"{path} is not an ONNX model: it has no graph")
    _load_external_data(model, path)
    _check_weights(model, path)
    if check:
        check_loaded(model, path)
    return model


def check_loaded(model: onnx.ModelProto, path: str | Path) -> None:
    """What ``load_model`` checks on a model it read from ``path`` (with check=False, so it
    need not be read twice): the ONNX checker, and that every custom op can run."""
    path = Path(path)
    try:
        # protobuf cannot hold a model over 2 GB as one message: check it from the file
        onnx.checker.check_model(model if _small(model) else str(path), full_check=False)
    except Exception as err:
        raise ModelError(f"{path} fails the ONNX checker: {_first_line(err)}") from err
    check_custom_ops(model, str(path))  # an op nothing can run: say how to register it


def readable_model(path: str | Path) -> None:
    """Raise ModelError unless ``path`` reads back as an ONNX model (a save's check)."""
    load_model(path, check=False)


def _load_external_data(model: onnx.ModelProto, path: Path) -> None:
    tensors = [t for t in external_data_helper._get_all_tensors(model)
               if external_data_helper.uses_external_data(t)]
    if not tensors:
        return
    for tensor in tensors:
        _check_external_entry(tensor, path)
    try:
        external_data_helper.load_external_data_for_model(model, str(path.parent))
    except Exception as err:
        raise ModelError(f"{path}: its external data could not be read: {_first_line(err)}"
                         ) from err


_TYPED_FIELDS = ("float_data", "int32_data", "int64_data", "double_data", "uint64_data")
_PACKED_TYPES = {getattr(onnx.TensorProto, name) for name in ("INT4", "UINT4", "FLOAT4E2M1")
                 if hasattr(onnx.TensorProto, name)}  # two values a byte


def _check_weights(model: onnx.ModelProto, path: Path) -> None:
    """Each initializer and Constant tensor holds as many values as its shape and type
    say (a corrupt size would fail deep inside a pass): a ModelError naming it."""
    tensors = list(model.graph.initializer) + [
        attribute.t for node in model.graph.node if node.op_type == "Constant"
        for attribute in node.attribute if attribute.type == onnx.AttributeProto.TENSOR]
    for tensor in tensors:
        if any(d < 0 for d in tensor.dims):
            raise ModelError(f"{path}: weight '{tensor.name}' has a negative dimension "
                             f"{list(tensor.dims)}")
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type))
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"{path}: weight '{tensor.name}' has element type "
                             f"{tensor.data_type}, which is not an ONNX tensor type") from None
        if dtype.kind in "OSUV" or tensor.data_type == onnx.TensorProto.STRING:
            continue
        count = math.prod(tensor.dims)
        if tensor.HasField("raw_data"):
            held = len(tensor.raw_data)
            need = (count + 1) // 2 if tensor.data_type in _PACKED_TYPES else \
                count * dtype.itemsize
        elif tensor.data_type in _PACKED_TYPES:
            continue
        else:
            fields = [f for f in _TYPED_FIELDS if len(getattr(tensor, f))]
            if not fields:
                continue
            held, need = len(getattr(tensor, fields[0])), count * (
                2 if dtype.kind == "c" else 1)
        if held != need:
            raise ModelError(f"{path}: weight '{tensor.name}' holds {held} bytes/values, but "
                             f"its shape {list(tensor.dims)} and type {dtype} need {need}")


def _check_external_entry(tensor: onnx.TensorProto, path: Path) -> None:
    """The external data entry of ``tensor`` names a file inside the model's folder that
    holds the bytes it claims (offset, length); else a ModelError naming the weight."""
    where = f"{path} keeps weight '{tensor.name}' in external data file"
    try:
        info = external_data_helper.ExternalDataInfo(tensor)
        location = str(info.location)
        data = path.parent / location
        outside = os.path.isabs(location) or not os.path.realpath(data).startswith(
            os.path.realpath(path.parent) + os.sep)
        size = data.stat().st_size if not outside and data.is_file() else None
    except (ValueError, OSError) as err:  # a non-number offset, a negative length, a name
        raise ModelError(f"{where} that cannot be read: {_first_line(err)}") from None
    if outside:
        raise ModelError(f"{where} at '{location[:120]}', outside its folder {path.parent}; "
                         "external data must lie beside the model")
    if size is None:
        raise ModelError(f"{where} '{location[:120]}', which is not beside it in "
                         f"{path.parent}")
    offset, length = int(info.offset or 0), info.length
    if offset + (length if length is not None else 0) > size:
        raise ModelError(f"{where} '{location}' at bytes {offset}..{offset + (length or 0)}, "
                         f"but the file has {size} bytes")


def save_model(model: onnx.ModelProto, path: str | Path, *,
               external_data: bool | None = None,
               check: Callable[[Path], object] | None = None) -> Path:
    """Write a model atomically: to a temporary file in the same folder, synced, then
    renamed. ``check(tmp)`` runs on the written file before the rename (e.g.
    ``lowbit.runtime.create_session``: ONNX Runtime loads it); when it raises, the file
    that was at ``path`` is left as it was.

    ``external_data`` None: weights go to ``NAME.data`` beside the file only when the
    model is over 2 GB (protobuf's limit); True or False forces the choice."""
    path = Path(path)
    if external_data is None:
        external_data = not _small(model)
    if not external_data:
        with atomic_path(path, check=check) as tmp:
            onnx.save_model(model, str(tmp))
        return path
    _save_with_external_data(model, path, check)
    return path


def _save_with_external_data(model: onnx.ModelProto, path: Path,
                             check: Callable[[Path], object] | None) -> None:
    """Model and ``NAME.data`` are written in a temporary folder beside the target,
    checked there, and moved into place together (onnx appends to an existing data file,
    so it must start empty). onnx moves the weights out of ``model`` as it writes; they
    are read back so the caller's model is unchanged."""
    data_name = f"{path.name}.data"
    with atomic_path(path) as tmp, tempfile.TemporaryDirectory(
            prefix=f".{path.name}.", dir=path.parent) as folder:
        staged = Path(folder) / path.name
        onnx.save_model(model, str(staged), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=data_name)
        external_data_helper.load_external_data_for_model(model, folder)
        data = Path(folder) / data_name
        if check is not None:
            check(staged)  # the data file beside it, as it will be
        if data.exists():   # absent when every tensor is under onnx's 1 KB threshold
            fd = os.open(data, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(data, 0o666 & ~_umask())
            os.replace(data, path.parent / data_name)
        os.replace(staged, tmp)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def input_specs(model: onnx.ModelProto) -> list[TensorSpec]:
    """The graph inputs that are fed by the user: not those with an initializer of their
    name (defaults a feed may override, which no data set must give). A negative dim is
    dynamic (None, see lowbit.spec); a sequence, map or optional input is a ModelError."""
    initializers = {init.name for init in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        kind = value.type.WhichOneof("value")
        if kind != "tensor_type":
            raise ModelError(f"input '{value.name}' is a {(kind or 'untyped').replace('_type', '')}"
                             f", not a tensor; lowbit feeds tensor inputs only")
        tensor_type = value.type.tensor_type
        dims: list[int | str | None] = []
        for dim in tensor_type.shape.dim:
            if dim.HasField("dim_value"):
                dims.append(int(dim.dim_value))
            elif dim.HasField("dim_param"):
                dims.append(dim.dim_param)
            else:
                dims.append(None)
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        except (KeyError, TypeError, ValueError):  # UNDEFINED (0) or not a type at all
            raise ModelError(f"input '{value.name}' has element type {tensor_type.elem_type}, "
                             "which is not an ONNX tensor type lowbit can feed") from None
        specs.append(TensorSpec(value.name, tuple(dims), dtype))
    return specs


def output_names(model: onnx.ModelProto) -> list[str]:
    return [value.name for value in model.graph.output]


def _small(model: onnx.ModelProto) -> bool:
    """Under protobuf's 2 GB limit (sizing a larger message may itself fail)."""
    try:
        return model.ByteSize() <= _TWO_GB
    except Exception:  # noqa: BLE001 - protobuf refuses to size messages over 2 GB
        return False


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
