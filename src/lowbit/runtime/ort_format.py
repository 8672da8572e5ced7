"""Convert an ONNX model to ONNX Runtime's ORT format for a target, as ORT's own tool does.

    converted = convert_to_ort("work/model.int8.onnx", target_platform="amd64")
    converted.data, converted.optimization_style       # bytes of the .ort, "runtime"
    probe = nchwc_probe()                               # only for target_platform "host"

What ``python -m onnxruntime.tools.convert_onnx_models_to_ort`` does, in process and
with lowbit's errors:

- ``amd64`` and ``arm``: optimization style *Runtime*. Basic graph optimizations are
  applied and the extended ones that a QDQ model needs (its fusions into QLinearConv,
  QGemm, MatMulInteger...) are saved in the file, replayed when a session is created
  with ``session.enable_saved_runtime_optimizations`` (lowbit-run sets it). The file
  runs on any CPU of the platform; ``arm`` allows int8 activations in the fused kernels
  (``session.qdqisint8allowed``), as ORT's ARM kernels want.
- ``host``: style *Fixed*, every optimization applied now, including the NCHWc layout
  that makes float convolutions fast on x86. NCHWc reorders weights into blocks as wide
  as this CPU's vector unit (16 floats with AVX-512, 8 with AVX2), so the file computes
  wrong results on a CPU with another width: such a bundle carries :func:`nchwc_probe`,
  which lowbit-run checks first.
"""

from __future__ import annotations

import logging
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from lowbit.errors import ModelError, UsageError

log = logging.getLogger(__name__)

TARGET_PLATFORMS = ("amd64", "arm", "host")
PROBE_CHANNELS = 32  # a multiple of every NCHWc block width (4, 8, 16)
_ARM_MACHINES = ("aarch64", "arm64", "armv8l", "armv7l")


@dataclass(frozen=True)
class OrtConversion:
    """An ORT-format model: its bytes and how it was optimized."""

    data: bytes
    target_platform: str
    optimization_style: str  # "runtime" or "fixed"


@dataclass(frozen=True)
class Probe:
    """A one-Conv model converted like a ``host`` bundle, with its input and output here."""

    model: bytes
    x: np.ndarray
    y: np.ndarray


def default_target() -> str:
    """The platform family of this machine: "arm" on ARM CPUs, else "amd64"."""
    return "arm" if host_is_arm() else "amd64"


def host_is_arm() -> bool:
    return platform.machine().lower() in _ARM_MACHINES


def check_target(target_platform: str) -> str:
    if target_platform not in TARGET_PLATFORMS:
        raise UsageError(f"unsupported target platform {target_platform!r}; choose one of "
                         f"{', '.join(TARGET_PLATFORMS)} (host: every optimization for this "
                         f"CPU only)")
    return target_platform


def convert_to_ort(model: str | Path | bytes, *, target_platform: str) -> OrtConversion:
    """``model`` (a path or serialized ONNX) in ORT format for ``target_platform``."""
    target = check_target(target_platform)
    style = "fixed" if target == "host" else "runtime"
    arm = target == "arm" or (target == "host" and host_is_arm())
    with tempfile.TemporaryDirectory(prefix="lowbit-ort-") as folder:
        out = Path(folder) / "model.ort"
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(out)
        options.add_session_config_entry("session.save_model_format", "ORT")
        options.add_session_config_entry("session.qdqisint8allowed", "1" if arm else "0")
        if style == "runtime":
            options.add_session_config_entry("optimization.minimal_build_optimizations", "save")
        source = model if isinstance(model, bytes) else str(model)
        where = "the model" if isinstance(model, bytes) else str(model)
        try:
            ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
            data = out.read_bytes()
        except Exception as err:  # ORT raises several unrelated exception types
            text = str(err).strip()
            first = text.splitlines()[0] if text else type(err).__name__
            raise ModelError(f"ONNX Runtime {ort.__version__} cannot convert {where} to ORT "
                             f"format: {first}") from err
    log.info("converted %s to ORT format (%s, %s style): %d bytes", where, target, style,
             len(data))
    return OrtConversion(data, target, style)


def nchwc_probe(seed: int = 0) -> Probe:
    """One 3x3 Conv + Relu over 32 channels, converted as :func:`convert_to_ort` converts
    for ``host``, and the output it gives on this CPU for a fixed input."""
    rng = np.random.default_rng(seed)
    c = PROBE_CHANNELS
    weight = (rng.standard_normal((c, c, 3, 3)) * 0.1).astype(np.float32)
    bias = rng.standard_normal(c).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"])], "nchwc_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, 8, 8])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(proto)
    converted = convert_to_ort(proto.SerializeToString(), target_platform="host")
    x = rng.standard_normal((1, c, 8, 8)).astype(np.float32)
    options = ort.SessionOptions()
    options.add_session_config_entry("session.load_model_format", "ORT")
    session = ort.InferenceSession(converted.data, options, providers=["CPUExecutionProvider"])
    y = np.asarray(session.run(None, {"x": x})[0])
    return Probe(converted.data, x, y)
