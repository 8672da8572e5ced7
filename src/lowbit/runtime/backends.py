"""Pick an execution engine by name: ONNX Runtime ("ort", the default) or OpenVINO.

    runner = make_runner("model.f32.onnx", backend="openvino", threads=2, precision="BF16")
    outputs = runner.run({"input": x})        # dict name -> array, like OrtRunner
    runner.precision_used                     # "BF16": read back from the engine, not assumed

Every runner satisfies :class:`Runner`. ``precision`` asks the engine to compute a
float model in F32, BF16 or F16; ONNX Runtime runs a graph in the precision it
declares, so for "ort" only that precision (or None) is accepted. INT8 is never a
hint: it comes from a quantized (QDQ) model written by ``lowbit deploy``.

A backend whose package is missing is still listed; asking for it raises a
UsageError that says what to install.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import onnx

from lowbit.errors import ModelError, UsageError, install_hint
from lowbit.graph import declared_precision

ModelSource = str | Path | bytes | onnx.ModelProto

#: Precisions a backend may be asked to compute a float model in.
PRECISION_HINTS = ("F32", "BF16", "F16")


@runtime_checkable
class Runner(Protocol):
    """A loaded model that maps input dicts to output dicts on some engine."""

    input_names: list[str]
    output_names: list[str]

    @property
    def precision_used(self) -> str:
        """What the engine computes in: "F32", "BF16", "F16", "INT8 (QDQ)", ..."""
        ...

    def run(self, feeds: Mapping[str, np.ndarray],
            output_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        ...


RunnerFactory = Callable[[ModelSource, int | None, str | None], Runner]


@dataclass(frozen=True)
class Backend:
    """A named engine: ``package`` is the module whose absence means "not installed".

    ``cannot_run(model, run)`` says in one line why the engine cannot load (or, with
    ``run``, run) a model, None when it can; ``inner_tensors``: whether any tensor of a
    graph can be read back (layer-by-layer compare)."""

    name: str
    description: str
    package: str
    factory: RunnerFactory
    cannot_run: Callable[[onnx.ModelProto, bool], str | None] = lambda model, run: None
    inner_tensors: bool = False
    # a raw session for timing (model, threads, graph optimization level), where the engine
    # has one that lowbit times directly rather than through a Runner
    timed_session: Callable[[ModelSource, int | None, str], object] | None = None

    @property
    def default(self) -> bool:
        """Whether this is the engine every command uses unless told otherwise."""
        return self.name == DEFAULT_BACKEND

    def require(self) -> None:
        """UsageError with the install command when the engine's package is missing."""
        if self.name == "openvino":
            require_openvino()


def _make_ort(model: ModelSource, threads: int | None, precision: str | None) -> Runner:
    from lowbit.runtime.ort import OrtRunner

    runner = OrtRunner(model, threads=threads)
    where = "the in-memory model" if isinstance(model, bytes | onnx.ModelProto) else str(model)
    check_ort_precision(where, runner.precision_used, precision)
    return runner


def check_ort_precision(where: str, declared: str, precision: str | None) -> None:
    """ORT computes the float parts of a graph in its declared float type; refuse other hints."""
    floats = "F32" if declared.startswith(("INT8", "W4")) else declared
    if precision is not None and precision != floats:
        raise UsageError(f"ONNX Runtime computes {where} in {declared}, the precision its graph "
                         f"declares; precision {precision} needs backend openvino (or a model "
                         f"converted to {precision})")


def _make_openvino(model: ModelSource, threads: int | None, precision: str | None) -> Runner:
    from lowbit.runtime.openvino import OpenVinoRunner

    return OpenVinoRunner(model, threads=threads, precision=precision)


def _ort_cannot_run(model: onnx.ModelProto, run: bool) -> str | None:
    from lowbit.runtime.ort import cannot_run

    return cannot_run(model, run=run)


def _ort_session(model: ModelSource, threads: int | None, level: str) -> object:
    from lowbit.runtime.ort import create_session

    return create_session(model, threads=threads, optimization_level=level)


DEFAULT_BACKEND = "ort"
BACKENDS: dict[str, Backend] = {
    "ort": Backend("ort", "ONNX Runtime, CPU provider", "onnxruntime", _make_ort,
                   cannot_run=_ort_cannot_run, inner_tensors=True, timed_session=_ort_session),
    "openvino": Backend("openvino", "OpenVINO, CPU device", "openvino", _make_openvino),
}


def backend_names() -> tuple[str, ...]:
    """Names accepted by ``make_runner(backend=...)``, the default first."""
    return tuple(BACKENDS)


def check_backend(name: str) -> Backend:
    """The backend called ``name``; UsageError listing the known ones otherwise."""
    backend = BACKENDS.get(name)
    if backend is None:
        raise UsageError(f"unknown backend '{name}'; known backends: {', '.join(BACKENDS)}")
    return backend


def check_precision(precision: str | None) -> str | None:
    """Normalise a precision hint ("bf16" -> "BF16"); UsageError for anything else."""
    if precision is None:
        return None
    upper = precision.upper()
    if upper == "INT8":
        raise UsageError("precision INT8 is not a hint an engine can take; deploy the model "
                         "to INT8 (lowbit deploy) and run that model instead")
    if upper not in PRECISION_HINTS:
        raise UsageError(f"unknown precision '{precision}'; choose one of "
                         f"{', '.join(PRECISION_HINTS)}")
    return upper


def make_runner(
    model: ModelSource,
    *,
    backend: str = "ort",
    threads: int | None = None,
    precision: str | None = None,
) -> Runner:
    """Load ``model`` on ``backend``; see the module docstring."""
    chosen = check_backend(backend)
    hint = check_precision(precision)
    if threads is not None and threads < 1:
        raise UsageError(f"threads must be >= 1 (or None for the engine's default), "
                         f"found {threads}")
    if chosen.name == "openvino":
        require_openvino()
    return chosen.factory(model, threads, hint)


def require_openvino() -> None:
    """UsageError with the install command when the openvino package cannot be imported."""
    try:
        import openvino  # noqa: F401
    except ImportError as err:
        raise UsageError(f"OpenVINO is not installed: {install_hint('openvino')}") from err


def graph_precision(model: ModelSource) -> str:
    """The precision a graph declares: "INT8 (QDQ)", "INT8 (QOperator)", "W4 (MatMulNBits)",
    "F16", "BF16" or "F32" (lowbit.graph.declared_precision, shown)."""
    return str(declared_precision(_proto_without_data(model)))


def _proto_without_data(model: ModelSource) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    try:
        if isinstance(model, bytes):
            return onnx.load_from_string(model)
        return onnx.load(str(model), load_external_data=False)
    except Exception as err:  # protobuf decode errors, missing files
        where = "the in-memory model" if isinstance(model, bytes) else str(model)
        raise ModelError(f"cannot read {where} as ONNX: {err}") from err
