"""lowbit.info: what a model file is and, for a model lowbit wrote, how it was made.

    found = lowbit.info("work/model.int8.onnx")
    found.precision, found.inputs, found.provenance.recipe, found.provenance.inputs
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lowbit import arguments
from lowbit.graph import onnx_opset, precision_of
from lowbit.io.model import input_specs, load_model
from lowbit.recipe.provenance import Provenance, read_provenance
from lowbit.spec import TensorSpec


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    bytes: int
    precision: str
    opset: int
    nodes: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[str, ...]
    producer: str
    provenance: Provenance


def info(model: str | Path) -> ModelInfo:
    """Read ``model`` (weights not checked) and its recorded provenance, if any."""
    path = arguments.path(model, "model")
    proto = load_model(path, check=False)
    producer = " ".join(p for p in (proto.producer_name, proto.producer_version) if p)
    return ModelInfo(path, path.stat().st_size, precision_of(proto), onnx_opset(proto),
                     len(proto.graph.node), tuple(input_specs(proto)),
                     tuple(o.name for o in proto.graph.output), producer,
                     read_provenance(proto, str(path)))
