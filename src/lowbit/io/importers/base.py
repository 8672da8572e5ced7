"""What every importer shares: the options, the result, and the registry of formats.

    from lowbit.io.importers.base import Importer, register

    register(Importer(name="tflite", label="TFLite (.tflite)", detect=_is_tflite,
                      convert=_convert, extra="tf"))

An importer is found by what its file *is* (magic bytes, zip entries, directory
layout), never by its extension: each one registers a detector, a small function
that looks at a path and answers yes or no without importing a framework. The
registry refuses a second importer under a name already taken.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from lowbit import arguments
from lowbit.errors import ArgumentError, UsageError, install_hint
from lowbit.graph import onnx_opset

# The opset lowbit exports and converts to. 17 is the newest opset every converter here
# writes (tf2onnx 1.17 tops out at 18, torch's TorchScript exporter at 20) and the one
# ORT, OpenVINO and lowbit's passes are tested on; LayerNormalization arrived in 17.
TARGET_OPSET = 17
# Below 11 (2019) Resize, Pad, Clip and Slice take attributes instead of inputs and the
# version converter's adapters are incomplete: re-exporting is the reliable fix.
MIN_SOURCE_OPSET = 11
EXPORTERS = ("auto", "torchscript", "dynamo")

Shapes = Mapping[str, tuple[int, ...]] | Sequence[tuple[int, ...]]


@dataclass(frozen=True)
class ImportOptions:
    """What the user told us about the source, beyond the file itself.

    ``input_names``/``output_names`` select the tensors of a frozen GraphDef and name
    the inputs/outputs of a PyTorch export. ``input_shapes`` builds example inputs for a
    TorchScript file (and a module given without ``example``). ``opset`` is the target
    opset (default :data:`TARGET_OPSET`); ``exporter`` picks torch's ONNX exporter.
    """

    example: Any = None
    input_names: tuple[str, ...] | None = None
    output_names: tuple[str, ...] | None = None
    input_shapes: Shapes | None = None
    opset: int | None = None
    exporter: str = "auto"

    def __post_init__(self) -> None:
        arguments.choice(self.exporter, EXPORTERS, "exporter")
        if self.opset is not None:
            arguments.count(self.opset, "opset", minimum=MIN_SOURCE_OPSET,
                            maximum=onnx.defs.onnx_opset_version())
        for keyword, names in (("input_names", self.input_names),
                               ("output_names", self.output_names)):
            if names is not None and (not names or any(not n for n in names)):
                raise ArgumentError(f"{{{keyword}}} needs one or more tensor names, "
                                    "comma-separated")

    @property
    def target_opset(self) -> int:
        return self.opset if self.opset is not None else TARGET_OPSET


@dataclass(frozen=True)
class ImportedModel:
    """A model read from any supported format, as ONNX at lowbit's target opset.

    ``source_format`` is the registry name of what was read ("onnx", "torchscript",
    "torch-module", "savedmodel", "graphdef", "keras", "tflite"); ``exporter`` names the
    converter that made the ONNX graph (for model.meta.json); ``notes`` say, one line
    each, what importing did (exporter and opset, layout, opset upgrades).
    """

    model: onnx.ModelProto
    source_format: str
    exporter: str
    notes: tuple[str, ...] = ()

    @property
    def opset(self) -> int:
        return onnx_opset(self.model)


Detector = Callable[[Path], bool]
Converter = Callable[[Path, ImportOptions], ImportedModel]


@dataclass(frozen=True)
class Importer:
    """One source format: its registry ``name``, how error messages list it
    (``label``), its detector and converter, and the optional extra it needs."""

    name: str
    label: str
    detect: Detector
    convert: Converter
    extra: str | None = None
    modules: tuple[str, ...] = ()

    def require(self) -> None:
        """Raise a one-line UsageError naming the extra when its packages are absent."""
        missing = [m for m in self.modules if importlib.util.find_spec(m) is None]
        if missing:
            raise UsageError(f"reading {self.label} models needs {', '.join(missing)}: "
                             f"{install_hint(self.extra or '')}")


_REGISTRY: dict[str, Importer] = {}


def register(importer: Importer) -> Importer:
    if importer.name in _REGISTRY:
        raise ValueError(f"an importer named '{importer.name}' is already registered")
    _REGISTRY[importer.name] = importer
    return importer


def importers() -> tuple[Importer, ...]:
    """Every registered importer, in registration order (the order detectors run)."""
    return tuple(_REGISTRY.values())


def refuse_names(options: ImportOptions, label: str) -> None:
    """input_names/output_names select a frozen GraphDef's tensors and name a PyTorch export's;
    any other format names its own inputs and outputs, and takes no example."""
    if options.input_names or options.output_names:
        raise UsageError(f"{{input_names}}/{{output_names}} select the tensors of a frozen GraphDef "
                         f"(or name "
                         f"a PyTorch export's); {label} names its own inputs and outputs")
    if options.example is not None:
        raise UsageError(f"{{example}} traces a PyTorch module; {label} needs none")


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
