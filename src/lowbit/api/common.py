"""What the verbs share: running samples, reading references, checking models and tables."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from lowbit import arguments
from lowbit.data import (
    Dataset,
    ImageOptions,
)
from lowbit.data.datasets import npz_keys, read_array
from lowbit.data.images import is_image_file
from lowbit.data.samples import finite_samples
from lowbit.errors import DatasetError, ModelError, UsageError
from lowbit.graph import precision_of
from lowbit.io.meta import (
    resolve_image_options,
)
from lowbit.io.model import load_model
from lowbit.outputs import check_distinct
from lowbit.runtime.backends import make_runner

log = logging.getLogger(__name__)


def run_samples(model: str | Path | onnx.ModelProto, samples: Iterable[Mapping[str, np.ndarray]],
                *, threads: int | None = None, backend: str = "ort",
                precision: str | None = None) -> dict[str, np.ndarray]:
    """Run a model sample by sample on ``backend`` and stack each output along axis 0."""
    if not isinstance(model, onnx.ModelProto):
        model = arguments.path(model, "model")
    runner = make_runner(model, backend=backend, threads=arguments.threads(threads),
                         precision=precision)
    collected: dict[str, list[np.ndarray]] = {name: [] for name in runner.output_names}
    count = 0
    for sample in samples:
        outputs = runner.run({k: v for k, v in sample.items() if k in runner.input_names})
        for name, value in outputs.items():
            collected[name].append(value)
        count += 1
    if count == 0:
        raise DatasetError("the data set has no samples")
    return {name: np.concatenate(values, axis=0) for name, values in collected.items()}


def run_bytes(model: onnx.ModelProto,
              inputs: Mapping[str, tuple[Sequence[int], np.dtype]]) -> int:
    """A lower bound of the memory one run of ``model`` needs on inputs of these shapes
    and dtypes: the inputs themselves plus the largest tensor shape inference sized in
    the graph (it exists at once at least while it is computed). Checked against the
    memory there is (lowbit.arguments.check_memory) before any input is allocated."""
    need = sum(math.prod(shape) * np.dtype(dtype).itemsize
               for shape, dtype in inputs.values())
    largest = 0
    for value in [*model.graph.value_info, *model.graph.output]:
        tensor = value.type.tensor_type
        if not value.type.HasField("tensor_type") or not tensor.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        try:
            item = helper.tensor_dtype_to_np_dtype(tensor.elem_type).itemsize
        except (KeyError, ValueError, TypeError):
            continue
        if all(d >= 0 for d in dims):
            largest = max(largest, math.prod(dims) * item)
    return need + largest


def check_samples(dataset: Dataset) -> None:
    """Read every sample once, so a misshapen or non-finite one fails before anything runs."""
    for _ in finite_samples(dataset):
        pass


def load_reference(path: str | Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"test reference not found: {path}")
    keys = npz_keys(path)
    missing = [name for name in names if name not in keys]
    if missing:
        raise DatasetError(f"test reference {path} lacks output(s) {', '.join(missing)}; "
                           f"it has {', '.join(keys) or 'no arrays'}")
    return {name: read_array(path, name) for name in names}


def load_float_model(path: str | Path, stage: str) -> onnx.ModelProto:
    """The model at ``path``, refused when it is already quantized or converted: calibrating
    or quantizing it again would quantize nothing, or quantize quantization noise."""
    model = load_model(path)
    precision = precision_of(model)
    if precision != "F32":
        raise UsageError(f"{path} is already {precision}, not a float F32 model; {stage} takes "
                         f"the float model (e.g. transform's model.f32.onnx)")
    return model


def check_not_overwriting(model: str | Path, output: str | Path) -> None:
    """-o is not the model (nor a link to it); lowbit.outputs.check_distinct checks more."""
    check_distinct({"MODEL": model}, {"-o": output})


def check_model(model: onnx.ModelProto, what: str) -> None:
    try:
        onnx.checker.check_model(model)
    except Exception as err:  # a bug of ours, but say which stage produced it
        raise ModelError(f"{what} fails the ONNX checker: {str(err).splitlines()[0]}") from err


def image_options_for(model: str | Path, given: ImageOptions | None, dataset: str | Path,
                       proto: onnx.ModelProto | None = None) -> ImageOptions | None:
    """``given``; else, for a folder of images, the preprocessing of the model's meta file
    (checked against the model); else None (other data sets need no image options)."""
    if given is not None:
        return given
    folder = Path(dataset)
    if not folder.is_dir() or not any(is_image_file(p) for p in folder.rglob("*")):
        return None
    if proto is None:
        proto = load_model(model, check=False)
    return resolve_image_options(model, None, proto)


def has_labels(dataset: str | Path) -> bool:
    path = Path(dataset)
    if path.is_dir():
        return any(child.is_dir() for child in path.iterdir())
    if path.suffix == ".npz" and path.is_file():
        return bool({"label", "labels"} & set(npz_keys(path)))
    return False
