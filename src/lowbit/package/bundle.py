"""Write a bundle (lowbit_run.bundle's format) atomically, and run its model on samples.

    contents = BundleContents(convert_to_ort("m.int8.onnx", target_platform="amd64"),
                              meta_text(meta), {"precision": "INT8", ...}, labels=names)
    path = write_bundle("m.lowbit", contents)   # read back and its session created first
    outputs = run_converted(contents.conversion, dataset, threads=2)

The model runs exactly as lowbit-run runs it (lowbit_run.session), so what package
validates is what the target executes.
"""

from __future__ import annotations

import io
import json
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from lowbit import __version__
from lowbit.atomic import atomic_path
from lowbit.errors import DatasetError, ModelError
from lowbit.runtime.ort_format import OrtConversion, Probe
from lowbit_run import bundle as fmt
from lowbit_run.session import create_session, open_session


@dataclass(frozen=True)
class BundleContents:
    """What goes into a bundle: the converted model, the meta file's text, the report
    (JSON-ready), class names, and for a ``host`` bundle the NCHWc probe."""

    conversion: OrtConversion
    meta_text: str
    report: Mapping[str, Any]
    labels: Sequence[str] | None = None
    probe: Probe | None = None

    def members(self) -> dict[str, bytes]:
        members = {fmt.MODEL: self.conversion.data, fmt.META: self.meta_text.encode("utf-8"),
                   fmt.REPORT: (json.dumps(self.report, indent=2) + "\n").encode("utf-8")}
        if self.labels is not None:
            members[fmt.LABELS] = "".join(f"{name}\n" for name in self.labels).encode("utf-8")
        if self.probe is not None:
            members[fmt.PROBE_MODEL] = self.probe.model
            stream = io.BytesIO()
            np.savez(stream, x=self.probe.x, y=self.probe.y)
            members[fmt.PROBE_DATA] = stream.getvalue()
        return members

    def entry(self) -> fmt.ModelEntry:
        return fmt.ModelEntry(self.conversion.target_platform,
                              self.conversion.optimization_style, ort.__version__)


def write_bundle(path: str | Path, contents: BundleContents, *,
                 cpu: str = "") -> Path:
    """Write the bundle to ``path`` atomically; it must read back and open a session
    (as lowbit-run would) before it replaces anything there. ``cpu`` names the packaging
    CPU in the manifest (what lowbit-run names when a ``host`` bundle's probe fails)."""
    created = {"lowbit": __version__, "onnxruntime": ort.__version__,
               "python": platform.python_version(), "machine": platform.machine(),
               "cpu": cpu or platform.processor() or platform.machine()}
    data = fmt.bundle_bytes(contents.members(), contents.entry(), created=created)
    with atomic_path(path, check=_reads_back) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def _reads_back(path: Path) -> None:
    try:
        open_session(fmt.read_bundle(path))
    except fmt.BundleError as err:  # a bug of ours: say so rather than ship the file
        raise ModelError(f"the bundle written does not read back: {err}") from err


def run_converted(conversion: OrtConversion, samples: Iterable[Mapping[str, np.ndarray]], *,
                  threads: int | None = None) -> dict[str, np.ndarray]:
    """Run the ORT-format model sample by sample; each output stacked along axis 0."""
    try:
        session = create_session(conversion.data, conversion.optimization_style,
                                 threads=threads, where="the converted model")
    except fmt.BundleError as err:
        raise ModelError(str(err)) from err
    names = [o.name for o in session.get_outputs()]
    inputs = {i.name for i in session.get_inputs()}
    collected: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for sample in samples:
        try:
            values = session.run(names, {k: v for k, v in sample.items() if k in inputs})
        except Exception as err:  # ORT raises several unrelated exception types
            raise ModelError(f"the converted model fails on a validation sample: "
                             f"{str(err).strip().splitlines()[0]}") from err
        for name, value in zip(names, values, strict=True):
            collected[name].append(np.asarray(value))
    if not any(collected.values()):
        raise DatasetError("the data set has no samples")
    return {name: np.concatenate(values, axis=0) for name, values in collected.items()}
