"""Run ONNX models on OpenVINO's CPU device, in F32 or BF16 as asked.

    runner = OpenVinoRunner("model.f32.onnx", threads=2, precision="BF16")
    outputs = runner.run({"input": x})        # dict name -> array, any batch size
    runner.precision_used                     # "BF16": what the compute layers really ran in
    runner.inference_precision                # "BF16": the compiled model's precision hint
    runner.layer_precisions                   # {"Convolution BF16": 20, "FullyConnected BF16": 1}

OpenVINO computes a float model in BF16 by default on CPUs with AVX512-BF16 or
AMX, so the hint is always set explicitly: ``precision=None`` means F32. A BF16 hint
where ``bf16_native()`` is false (no such kernels, or LOWBIT_FORCE_ISA=bf16=0: see
lowbit.runtime.isa) compiles in F32, which is what OpenVINO does on such a CPU. A QDQ
INT8 model runs its quantized layers on integer kernels whatever the hint (which
then applies to the layers left float). ``precision_used`` is read from the
compiled model's runtime graph (each layer's ``runtimePrecision``), never assumed.

Needs the optional ``openvino`` package (``pip install 'lowbit[openvino]'``);
import this module only through :func:`lowbit.runtime.backends.make_runner`, which
checks that first.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import openvino as ov

from lowbit.errors import ModelError, UsageError
from lowbit.runtime.isa import forced_isa

log = logging.getLogger(__name__)

ModelSource = str | Path | bytes | onnx.ModelProto

_HINTS = {"F32": "f32", "BF16": "bf16", "F16": "f16"}
_NAMES = {"f32": "F32", "bf16": "BF16", "f16": "F16", "u8": "INT8", "i8": "INT8",
          "f64": "F64", "i32": "I32", "i64": "I64"}
# Layers whose precision is the model's: where (nearly) all the arithmetic happens.
_COMPUTE_LAYERS = frozenset({"Convolution", "FullyConnected", "MatMul", "Deconvolution",
                             "GroupConvolution", "ScaledDotProductAttention", "RNNSeq",
                             "RNNCell", "MHA"})
_BOILERPLATE = ("Exception from ", "Check '", "Summary:", "To facilitate")


class OpenVinoRunner:
    """A model compiled for OpenVINO's CPU device; maps input dicts to output dicts."""

    def __init__(self, model: ModelSource, *, threads: int | None = None,
                 precision: str | None = None) -> None:
        hint = (precision or "F32").upper()
        if hint not in _HINTS:
            raise UsageError(f"OpenVINO precision must be one of {', '.join(_HINTS)}, "
                             f"found {precision}")
        if hint == "BF16" and not bf16_native():
            log.info("BF16 asked, but OpenVINO has no BF16 kernels here (%s): F32",
                     "LOWBIT_FORCE_ISA" if forced_isa().bf16 is False else "this CPU")
            hint = "F32"
        config: dict[str, object] = {"INFERENCE_PRECISION_HINT": _HINTS[hint],
                                     "PERFORMANCE_HINT": "LATENCY"}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        core = ov.Core()
        where = "the in-memory model" if isinstance(model, bytes | onnx.ModelProto) else str(model)
        readable = _readable(model)
        try:
            read = core.read_model(readable)
            self.compiled = core.compile_model(read, "CPU", config)
        except Exception as err:  # OpenVINO raises RuntimeError and its own exception types
            raise ModelError(f"OpenVINO cannot load {where}: {_first_line(err)}") from err
        self.request = self.compiled.create_infer_request()
        self.input_names = [port.get_any_name() for port in self.compiled.inputs]
        self.output_names = [port.get_any_name() for port in self.compiled.outputs]
        self._ports = {name: port for port in self.compiled.outputs for name in port.get_names()}
        self.inference_precision = _precision_name(
            self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())
        self.execution_devices: list[str] = list(self.compiled.get_property("EXECUTION_DEVICES"))
        self.layer_precisions = _layer_precisions(self.compiled)
        self.precision_used = _summarize(self.layer_precisions, self.inference_precision)
        log.debug("OpenVINO compiled %s on %s: hint %s, layers %s", where,
                  self.execution_devices, self.inference_precision, self.layer_precisions)

    def run(self, feeds: Mapping[str, np.ndarray],
            output_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run one batch; any batch size the model's shapes allow."""
        names = list(output_names) if output_names is not None else self.output_names
        self._check_feeds(feeds)
        unknown = [n for n in names if n not in self._ports]
        if unknown:
            raise ModelError(f"the model has no output(s) {unknown}; its outputs are "
                             f"{self.output_names}")
        try:
            results = self.request.infer(dict(feeds))
        except Exception as err:
            raise ModelError(f"running the model on OpenVINO failed: {_first_line(err)}") from err
        return {name: np.asarray(results[self._ports[name]]) for name in names}

    def bind(self, feeds: Mapping[str, np.ndarray]) -> Callable[[], None]:
        """A no-argument callable that runs ``feeds`` once with no copies (for timing)."""
        self._check_feeds(feeds)
        infer = self.request.infer
        bound = dict(feeds)

        def run_once() -> None:
            infer(bound, share_inputs=True, share_outputs=True)

        return run_once

    def _check_feeds(self, feeds: Mapping[str, np.ndarray]) -> None:
        """OpenVINO runs a wrong static dim or dtype silently: refuse them as ORT does."""
        missing = [n for n in self.input_names if n not in feeds]
        extra = [n for n in feeds if n not in self.input_names]
        if missing or extra:
            raise ModelError(f"the model's inputs are {self.input_names}; missing {missing}, "
                             f"unknown {extra}")
        for port in self.compiled.inputs:
            name = port.get_any_name()
            value = np.asarray(feeds[name])
            dtype = np.dtype(port.get_element_type().to_dtype())
            if value.dtype != dtype:
                raise ModelError(f"input '{name}' must be {dtype}, found {value.dtype}")
            expected = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
            fits = len(expected) == value.ndim and all(
                e is None or e == v for e, v in zip(expected, value.shape, strict=True))
            if not fits:
                shape = ", ".join("?" if e is None else str(e) for e in expected)
                raise ModelError(f"input '{name}' must have shape [{shape}], "
                                 f"found {list(value.shape)}")


def bf16_native() -> bool:
    """``probe_bf16_native()``, or the ``bf16`` LOWBIT_FORCE_ISA forces (lowbit.runtime.isa)."""
    forced = forced_isa().bf16
    return probe_bf16_native() if forced is None else forced


@functools.cache
def probe_bf16_native() -> bool:
    """Whether OpenVINO's CPU device computes BF16 natively on this CPU (AVX512-BF16 or
    AMX-BF16): "BF16" among its OPTIMIZATION_CAPABILITIES."""
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _readable(model: ModelSource) -> str | bytes:
    if isinstance(model, onnx.ModelProto):
        return model.SerializeToString()
    if isinstance(model, bytes):
        return model
    path = Path(model)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    return str(path)


def _layer_precisions(compiled: ov.CompiledModel) -> dict[str, int]:
    """Count compute layers of the runtime graph by type and runtime precision."""
    counts: Counter[str] = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" not in info or "runtimePrecision" not in info:
            continue
        layer = str(info["layerType"].astype(str))
        if layer in _COMPUTE_LAYERS:
            counts[f"{layer} {_precision_name(str(info['runtimePrecision'].astype(str)))}"] += 1
    return dict(counts)


def _summarize(layers: Mapping[str, int], hint: str) -> str:
    """"INT8 (QDQ)", "INT8 (QDQ) + F32", "BF16" ... from the compute layers' precisions."""
    found = {key.rsplit(" ", 1)[1] for key in layers}
    if not found:
        return hint
    floats = sorted(found - {"INT8"})
    if "INT8" in found:
        return " + ".join(["INT8 (QDQ)", *floats])
    return " + ".join(floats)


def _precision_name(type_name: str) -> str:
    return _NAMES.get(type_name, type_name.upper())


def _first_line(err: Exception) -> str:
    """OpenVINO's message on one line, without its source-location lines."""
    lines = [line.strip() for line in str(err).splitlines()]
    kept = [line for line in lines if line and not line.startswith(_BOILERPLATE)]
    return " ".join(kept) if kept else type(err).__name__
