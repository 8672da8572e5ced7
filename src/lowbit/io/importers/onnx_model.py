"""ONNX files: any opset ≥ 11, upgraded to lowbit's target opset.

    imported = import_model("model.onnx")   # via lowbit.io.importers
    imported.notes   # ("ONNX opset 11 upgraded to 17 with onnx's version converter",)

A file is ONNX when it is a protobuf whose first field is ``ir_version`` and which
holds a ``graph``; one whose walk breaks off early after an ``ir_version`` is taken
for a truncated ONNX file, so the user hears "corrupt or truncated", not "unknown".
Weights kept as external data are read from the model's folder. Models above the
target opset are kept as they are (the version converter only upgrades reliably).
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnx
from onnx import version_converter

from lowbit.errors import ModelError
from lowbit.graph import onnx_opset
from lowbit.io.importers.base import (
    MIN_SOURCE_OPSET,
    ImportedModel,
    Importer,
    ImportOptions,
    first_line,
    refuse_names,
    register,
)
from lowbit.io.model import load_model
from lowbit.io.sniff import LEN, VARINT, protobuf_fields

log = logging.getLogger(__name__)

# ModelProto's top-level fields and their wire types (onnx.proto3), for the detector.
_MODEL_FIELDS = {1: VARINT, 2: LEN, 3: LEN, 4: LEN, 5: VARINT, 6: LEN, 7: LEN, 8: LEN,
                 14: LEN, 20: LEN, 25: LEN}
_MAX_IR_VERSION = 64


def is_onnx(path: Path) -> bool:
    found = protobuf_fields(path)
    if found.invalid or not found.fields or found.fields[0] != (1, VARINT):
        return False
    if not found.first_varint or found.first_varint > _MAX_IR_VERSION:
        return False
    if any(_MODEL_FIELDS.get(number, wire) != wire for number, wire in found.fields):
        return False
    return found.truncated or (7, LEN) in found.fields


def convert_onnx(path: Path, options: ImportOptions) -> ImportedModel:
    refuse_names(options, "an ONNX model")
    model = load_model(path)   # external data is read from the model's folder
    return upgrade_opset(model, options.target_opset, source=str(path), source_format="onnx",
                         exporter="onnx")


def upgrade_opset(model: onnx.ModelProto, target: int, *, source: str, source_format: str,
                  exporter: str, notes: tuple[str, ...] = ()) -> ImportedModel:
    """Refuse opsets below 11, upgrade those below ``target``, keep newer ones."""
    opset = onnx_opset(model)
    if opset == 0:
        raise ModelError(f"{source} imports no default-domain ONNX opset; lowbit needs the "
                         f"standard ONNX operators (opset ≥ {MIN_SOURCE_OPSET})")
    if opset < MIN_SOURCE_OPSET:
        raise ModelError(f"{source} uses ONNX opset {opset}; lowbit imports opset "
                         f"≥ {MIN_SOURCE_OPSET}: re-export the model with a newer exporter")
    if opset >= target:
        if opset > target:
            notes = (*notes, f"ONNX opset {opset} kept (above lowbit's target {target})")
        return ImportedModel(model, source_format, exporter, notes)
    try:
        upgraded = version_converter.convert_version(model, target)
    except Exception as err:
        raise ModelError(f"{source}: onnx's version converter could not upgrade opset {opset} "
                         f"to {target}: {first_line(err)}") from err
    log.info("%s: upgraded opset %d to %d", source, opset, target)
    note = f"ONNX opset {opset} upgraded to {target} with onnx's version converter"
    return ImportedModel(upgraded, source_format, exporter, (*notes, note))


register(Importer(name="onnx", label="ONNX (.onnx)", detect=is_onnx, convert=convert_onnx))
