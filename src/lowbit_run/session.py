"""An ONNX Runtime session for a bundle's model, created as its conversion needs.

    session = open_session(read_bundle("model.lowbit"), threads=2)
    outputs = session.run(None, {"input": x})

A ``runtime``-style model replays the optimizations saved in it (the QDQ fusions into
integer kernels; ``session.enable_saved_runtime_optimizations``, which ONNX Runtime
leaves off for untrusted files: a bundle whose checksums matched is the file lowbit
wrote). A ``fixed``-style model (target ``host``) carries every optimization of the CPU
that packaged it, including NCHWc weight blocks whose width depends on the CPU's vector
unit; its probe (a one-Conv model converted the same way, with the output it gave) must
give the same output here, or the bundle is refused rather than run wrong.
"""

from __future__ import annotations

import io

import numpy as np
import onnxruntime as ort

from lowbit_run.bundle import PROBE_DATA, PROBE_MODEL, Bundle, BundleError

PROBE_TOLERANCE = 1e-4


def session_options(style: str, threads: int | None = None) -> ort.SessionOptions:
    """Options for an ORT-format model of ``style`` ("runtime" or "fixed")."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    # Not session.use_ort_model_bytes_directly: the Python binding passes ORT a temporary
    # copy of the bytes, which that option would keep pointers into (a crash).
    options.add_session_config_entry("session.load_model_format", "ORT")
    if style == "runtime":
        options.add_session_config_entry("session.enable_saved_runtime_optimizations", "1")
    return options


def create_session(model: bytes, style: str, *, threads: int | None = None,
                   where: str = "the bundle's model") -> ort.InferenceSession:
    """A CPU session on ORT-format ``model``; BundleError (one line) when ORT refuses it."""
    try:
        return ort.InferenceSession(model, session_options(style, threads),
                                    providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises several unrelated exception types
        text = str(err).strip()
        first = text.splitlines()[0] if text else type(err).__name__
        raise BundleError(f"ONNX Runtime {ort.__version__} cannot load {where}: "
                          f"{first}") from err


def open_session(bundle: Bundle, threads: int | None = None) -> ort.InferenceSession:
    """A session on ``bundle``'s model; a fixed-style model must pass its probe first."""
    where = f"the model in {bundle.path}"
    if bundle.model.optimization_style == "fixed":
        check_probe(bundle)
    return create_session(bundle.model_bytes, bundle.model.optimization_style,
                          threads=threads, where=where)


def check_probe(bundle: Bundle) -> None:
    """BundleError when this CPU computes the probe differently from the packaging CPU."""
    if PROBE_MODEL not in bundle.members or PROBE_DATA not in bundle.members:
        raise BundleError(f"{bundle.path} was converted for its packaging CPU only and lacks "
                          f"the probe ({PROBE_MODEL}, {PROBE_DATA}) that checks this CPU")
    with np.load(io.BytesIO(bundle.members[PROBE_DATA])) as data:
        x, expected = data["x"], data["y"]
    probe = create_session(bundle.members[PROBE_MODEL], "fixed", threads=1,
                           where=f"the probe in {bundle.path}")
    found = probe.run(None, {"x": x})[0]
    if found.shape != expected.shape or not np.allclose(found, expected, rtol=PROBE_TOLERANCE,
                                                        atol=PROBE_TOLERANCE):
        cpu = bundle.created.get("cpu", "another CPU")
        raise BundleError(f"{bundle.path} was converted for the CPU that packaged it ({cpu}), "
                          f"whose NCHWc weight layout this CPU does not share: it would compute "
                          f"wrong results here; package it with --target-platform amd64 or arm")
