"""Compile an ONNX model with Apache TVM (Relax frontend) into a shared library, and run it.

Experimental. ``pip install 'lowbit[tvm]'`` (apache-tvm 0.27 with apache-tvm-ffi below
0.1.15, whose 0.1.15 crashed exporting here).

    target = parse_target('{"kind": "llvm", "mcpu": "sapphirerapids"}')   # or "llvm"
    seconds = compile_onnx("work/model.f32.onnx", "out/model.so", target=target)
    runner = TvmRunner("out/model.so", input_names=["input"], output_names=["logits"])
    outputs = runner.run({"input": x})                                      # batch-1 shapes

The model is imported with every input's dynamic dimension fixed at 1 and compiled
untuned, for CPUs only (an ``llvm`` target, given as TVM wants it now: a kind name or a
JSON object). A QDQ INT8 model becomes simulated quantization around float kernels:
TVM's frontend runs no integer convolutions from it, so it is no faster than F32.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from lowbit.errors import ModelError, UsageError, install_hint

log = logging.getLogger(__name__)


def require_tvm() -> None:
    """UsageError with the install command when apache-tvm cannot be imported."""
    try:
        import tvm  # noqa: F401
        from tvm.relax.frontend.onnx import from_onnx  # noqa: F401
    except ImportError as err:
        raise UsageError(f"Apache TVM is not installed ({err}): {install_hint('tvm')}") \
            from err


def parse_target(text: str) -> dict[str, Any]:
    """A CPU target: "llvm", or a JSON object such as {"kind": "llvm", "mcpu": "..."};
    UsageError for another kind, TVM's old "llvm -mcpu=..." strings or bad JSON."""
    require_tvm()
    import tvm

    if text.strip().startswith("{"):
        try:
            config = json.loads(text)
        except json.JSONDecodeError as err:
            raise UsageError(f"{{target}} {text!r} is not valid JSON: {err}") from err
        if not isinstance(config, dict):
            raise UsageError(f"{{target}} {text!r} must be a JSON object")
    elif " " in text.strip():
        raise UsageError(f"{{target}} {text!r}: TVM takes targets as JSON now, e.g. "
                         f"'{{\"kind\": \"llvm\", \"mcpu\": \"skylake\"}}'")
    else:
        config = {"kind": text.strip()}
    if config.get("kind") != "llvm":
        raise UsageError(f"unsupported TVM target kind {config.get('kind')!r}: lowbit "
                         f"compiles for CPUs only (kind \"llvm\")")
    try:
        tvm.target.Target(config)
    except (ValueError, RuntimeError) as err:
        raise UsageError(f"TVM refuses the target {json.dumps(config)}: "
                         f"{str(err).splitlines()[0]}") from err
    return config


def compile_onnx(model: str | Path, library: str | Path, *, target: Mapping[str, Any]) -> float:
    """Import ``model`` with Relax, compile it for ``target`` and export ``library`` (.so);
    returns the seconds it took. ModelError when TVM cannot import or compile it."""
    require_tvm()
    import tvm
    from tvm.relax.frontend.onnx import from_onnx

    proto = onnx.load(str(model))
    start = time.perf_counter()
    try:
        module = from_onnx(proto, shape_dict=_fixed_shapes(proto), keep_params_in_input=False)
        executable = tvm.compile(module, target=tvm.target.Target(dict(target)))
        executable.export_library(str(library))
    except Exception as err:  # TVM raises its own error types, TVMError, ValueError, ...
        raise ModelError(f"Apache TVM {tvm.__version__} cannot compile {model}: "
                         f"{_first_line(err)}") from err
    seconds = time.perf_counter() - start
    log.info("compiled %s with TVM for %s in %.1f s", model, dict(target), seconds)
    return seconds


class TvmRunner:
    """A compiled library on TVM's CPU device; maps input dicts to output dicts."""

    precision_used = "as compiled"

    def __init__(self, library: str | Path, *, input_names: Sequence[str],
                 output_names: Sequence[str]) -> None:
        require_tvm()
        import tvm
        from tvm import relax

        try:
            self._vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), tvm.cpu())
        except Exception as err:
            raise ModelError(f"TVM cannot load {library}: {_first_line(err)}") from err
        self._tensor = tvm.runtime.tensor
        self.input_names = list(input_names)
        self.output_names = list(output_names)

    def run(self, feeds: Mapping[str, np.ndarray],
            output_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        args = [self._tensor(np.ascontiguousarray(feeds[name])) for name in self.input_names]
        try:
            result = self._vm["main"](*args)
        except Exception as err:
            raise ModelError(f"running the TVM module failed: {_first_line(err)}") from err
        values = [result] if hasattr(result, "numpy") else list(result)
        outputs = {name: np.asarray(value.numpy())
                   for name, value in zip(self.output_names, values, strict=True)}
        return {name: outputs[name] for name in (output_names or self.output_names)}


def _fixed_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    initializers = {init.name for init in model.graph.initializer}
    shapes = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0
                              else 1 for d in dims]
    return shapes


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(err).__name__
