"""lowbit.package: the deployed model as one artifact for the target, validated again.

    result = lowbit.api.package("work/model.int8.onnx", "work/model.lowbit")      # for lowbit-run
    result = lowbit.api.package("work/model.int8.onnx", "work/model.lowbit",
                                target_platform="arm", test_input="x.npz",
                                test_reference="work/ref_outputs.npz")
    result = lowbit.api.package("work/model.f32.onnx", "out/model.xml", format="openvino")
    result.passed, result.validation, result.members, result.conversion_error

``format="ort"`` writes a bundle (:mod:`lowbit_run.bundle`): the model in ONNX
Runtime's ORT format for ``target_platform`` (amd64, arm, or host: see
:mod:`lowbit.runtime.ort_format`), the meta file beside the model (or one describing its
inputs and outputs), the precision, the validation, class names (``labels``; ImageNet's
for 1000 scores) and a manifest of SHA-256 checksums. ``format="openvino"`` writes
OpenVINO IR (``output`` is the .xml; the .bin goes beside it) with its weights kept in
the precision they have. ``format="tvm"`` (experimental, the ``tvm`` extra) compiles the
model with Apache TVM for ``target`` into a shared library (``output`` is the .so),
re-loads it, validates it and times it beside ONNX Runtime (untuned TVM is far slower).

Validation runs the packaged model itself (the .ort as lowbit-run opens it, the IR as
OpenVINO loads it) on ``test_input`` and compares it with ``test_reference`` at
``tolerance``. Without them, what deploy recorded in the model is used: its validation
data, reference and tolerance; the reference defaults to the float model deploy read
(when it is still there, unchanged), else to the model itself (which then checks the
conversion only). ``conversion_error`` is the largest difference between the packaged
model's outputs and the .onnx's on those samples. The file is written even when
validation fails (``passed`` False, exit 1); anything wrong with the arguments is
refused before anything is written.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from lowbit import __version__
from lowbit.analysis.classify import imagenet_class_names, read_class_names
from lowbit.analysis.validate import Tolerance, ValidationReport, compare_outputs
from lowbit.api.common import image_options_for, load_reference, run_samples
from lowbit.data import Dataset, open_dataset
from lowbit.data.samples import finite_samples
from lowbit.errors import UsageError
from lowbit.graph import precision_of
from lowbit.io.meta import ModelMeta, describe_model, find_meta, meta_text, read_meta
from lowbit.io.model import input_specs, load_model, output_names
from lowbit.outputs import check_distinct
from lowbit.package import BundleContents, run_converted, write_bundle, write_ir
from lowbit.package.ir import bin_path
from lowbit.recipe.provenance import cpu_description, file_stamp, read_provenance
from lowbit.runtime.backends import graph_precision, make_runner, require_openvino
from lowbit.runtime.ort_format import (
    TARGET_PLATFORMS,
    check_target,
    convert_to_ort,
    default_target,
    nchwc_probe,
)

log = logging.getLogger(__name__)

FORMATS = ("ort", "openvino", "tvm")
TIMED_RUNS = 5  # TVM beside ONNX Runtime: timed batch-1 runs each, interleaved
__all__ = ["FORMATS", "TARGET_PLATFORMS", "PackageResult", "package"]


@dataclass(frozen=True)
class PackageResult:
    """What package wrote and how the packaged model compared."""

    path: Path  # the bundle, or the IR's .xml
    files: tuple[Path, ...]  # every file written
    format: str  # "ort" or "openvino"
    precision: str  # F32, INT8, MIXED, F16, BF16, W4 (lowbit.graph.precision_of)
    target_platform: str | None  # ort: amd64, arm or host
    optimization_style: str | None  # ort: "runtime" or "fixed"
    source_bytes: int
    package_bytes: int
    members: tuple[tuple[str, int], ...]  # bundle members (or IR files) and their sizes
    validation: ValidationReport | None
    validated_against: str | None  # what the reference outputs are
    validation_data: Path | None
    conversion_error: float | None  # max |packaged - .onnx| over the validation samples
    weight_types: Mapping[str, int] | None = None  # openvino: Constant element types
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.validation is None or self.validation.passed


@dataclass(frozen=True)
class _Check:
    """The validation: samples, the outputs they are compared with, and how closely."""

    data: Path
    samples: Dataset
    reference: dict[str, np.ndarray]
    against: str
    tolerance: Tolerance
    onnx_outputs: dict[str, np.ndarray] | None  # the .onnx's outputs, when already run


def package(model: str | Path, output: str | Path, *, format: str = "ort",
            target_platform: str | None = None, test_input: str | Path | None = None,
            test_reference: str | Path | None = None,
            tolerance: str | Tolerance | None = None,
            labels: str | Path | Sequence[str] | None = None,
            threads: int | None = None, target: str = "llvm") -> PackageResult:
    """Package ``model`` into ``output``; see the module docstring. ``target`` is TVM's
    (``format="tvm"``): "llvm" or a JSON object such as {"kind": "llvm", "mcpu": "..."}."""
    if format not in FORMATS:
        raise UsageError(f"unknown package format {format!r}; choose one of "
                         f"{', '.join(FORMATS)}")
    tvm_target = _tvm_target(format, target, target_platform, output)
    if format == "openvino":
        require_openvino()
        if target_platform is not None:
            raise UsageError("{target_platform} applies to {format} ort; OpenVINO IR is "
                             "compiled for its device when it is loaded")
        if Path(output).suffix.lower() != ".xml":
            raise UsageError(f"{{output}} {output}: OpenVINO IR is written to an .xml file (its .bin "
                             f"beside it)")
    target = check_target(target_platform or default_target())
    if test_reference is not None and test_input is None:
        raise UsageError("{test_reference} needs {test_input} (the inputs it was made from)")
    label_file = labels if isinstance(labels, str | Path) else None
    written = {"{output}": output,
               "{output} (its .bin)": bin_path(output) if format == "openvino" else None}
    check_distinct({"{model}": model, "{test_input}": test_input,
                    "{test_reference}": test_reference, "{labels}": label_file}, written)
    proto = load_model(model)
    meta = _meta(model, proto)
    precision = precision_of(proto)
    check = _plan_check(model, proto, test_input, test_reference, _tolerance(tolerance),
                        threads)
    if format == "openvino":
        return _package_ir(model, Path(output), proto, precision, check, threads)
    if tvm_target is not None:
        return _package_tvm(model, Path(output), proto, precision, check, tvm_target)
    return _package_bundle(model, Path(output), proto, meta, precision, target, check,
                           _labels(labels, proto), threads)


def _package_bundle(model: str | Path, output: Path, proto: onnx.ModelProto, meta: ModelMeta,
                    precision: str, target: str, check: _Check | None,
                    labels: Sequence[str] | None, threads: int | None) -> PackageResult:
    conversion = convert_to_ort(model, target_platform=target)
    validation, conversion_error = None, None
    if check is not None:
        actual = run_converted(conversion, finite_samples(check.samples), threads=threads)
        validation, conversion_error = _compare(model, check, actual, threads)
    report = _report(model, proto, precision, check, validation, conversion_error,
                     {"format": "ort", "target_platform": target,
                      "optimization_style": conversion.optimization_style,
                      "onnx_bytes": Path(model).stat().st_size,
                      "ort_bytes": len(conversion.data)})
    contents = BundleContents(conversion, meta_text(meta), report, labels,
                              nchwc_probe() if target == "host" else None)
    cpu = str(cpu_description(precision).get("model", ""))
    path = write_bundle(output, contents, cpu=cpu)
    members = tuple((name, len(data)) for name, data in sorted(contents.members().items()))
    return PackageResult(path, (path,), "ort", precision, target,
                         conversion.optimization_style, Path(model).stat().st_size,
                         path.stat().st_size, members, validation,
                         None if check is None else check.against,
                         None if check is None else check.data, conversion_error,
                         notes=tuple(_notes(proto, precision, target, check)))


def _package_ir(model: str | Path, xml: Path, proto: onnx.ModelProto, precision: str,
                check: _Check | None, threads: int | None) -> PackageResult:
    found: dict[str, Any] = {}
    hint = precision if precision in ("F16", "BF16") else "F32"

    def validate(tmp: Path) -> None:  # on the written IR, before it replaces anything
        if check is None:
            make_runner(tmp, backend="openvino", threads=threads, precision=hint)
            return
        actual = run_samples(tmp, finite_samples(check.samples), backend="openvino",
                             threads=threads, precision=hint)
        found["validation"], found["error"] = _compare(model, check, actual, threads)

    files = write_ir(model, xml, keep_float32=precision == "F32", check=validate)
    weights = ", ".join(f"{n} {t}" for t, n in sorted(files.weight_types.items()))
    notes = [f"weights: {weights} (Constant nodes by element type; FP16 compression off)",
             f"validated on OpenVINO's CPU device with its precision hint {hint}"]
    return PackageResult(files.xml, (files.xml, files.bin), "openvino", precision, None, None,
                         Path(model).stat().st_size, files.bytes,
                         ((files.xml.name, files.xml.stat().st_size),
                          (files.bin.name, files.bin.stat().st_size)),
                         found.get("validation"), None if check is None else check.against,
                         None if check is None else check.data, found.get("error"),
                         dict(files.weight_types), tuple(notes))


def _tvm_target(format: str, target: str, target_platform: str | None,
                output: str | Path) -> dict[str, Any] | None:
    """The parsed TVM target for format "tvm" (checked before anything is read), else None."""
    if format != "tvm":
        if target != "llvm":
            raise UsageError("{target} is TVM's; it applies to {format} tvm")
        return None
    from lowbit.runtime.tvm_module import parse_target, require_tvm

    require_tvm()
    if target_platform is not None:
        raise UsageError("{target_platform} applies to {format} ort; give TVM's {target}")
    if Path(output).suffix != ".so":
        raise UsageError(f"-o {output}: a TVM module is written to a .so file")
    return parse_target(target)


def _package_tvm(model: str | Path, library: Path, proto: onnx.ModelProto, precision: str,
                 check: _Check | None, target: dict[str, Any]) -> PackageResult:
    """Experimental: compile with TVM, re-load, validate, and time it beside ORT."""
    from lowbit.package.tvm import write_tvm
    from lowbit.runtime.tvm_module import TvmRunner

    found: dict[str, Any] = {}
    names = [spec.name for spec in input_specs(proto)]

    def validate(tmp: Path) -> None:  # on the compiled library, before it replaces anything
        runner = TvmRunner(tmp, input_names=names, output_names=output_names(proto))
        samples = list(finite_samples(check.samples)) if check is not None else []
        if check is not None:
            outputs = [runner.run(sample) for sample in samples]
            actual = {name: np.concatenate([o[name] for o in outputs])
                      for name in runner.output_names}
            found["validation"], found["error"] = _compare(model, check, actual, None)
        found["timing"] = _time_beside(runner, model, samples[0] if samples else
                                       _zeros(proto))

    built = write_tvm(model, library, target=target, check=validate)
    tvm_ms, ort_ms = found["timing"]
    notes = [(f"Apache TVM (experimental, untuned), target {json.dumps(target)}: compiled in "
             f"{built.compile_seconds:.1f} s; batch 1: {tvm_ms:.2f} ms against ONNX Runtime's "
             f"{ort_ms:.2f} ms ({tvm_ms / ort_ms:.1f}x its time), median of {TIMED_RUNS} "
             f"interleaved runs")]
    if precision in ("INT8", "MIXED"):
        notes.append("a QDQ model becomes simulated quantization around float kernels in TVM's "
                     "Relax frontend: no integer convolutions, so no INT8 speed-up")
    size = built.path.stat().st_size
    return PackageResult(built.path, (built.path,), "tvm", precision, None, None,
                         Path(model).stat().st_size, size, ((built.path.name, size),),
                         found.get("validation"), None if check is None else check.against,
                         None if check is None else check.data, found.get("error"),
                         notes=tuple(notes))


def _time_beside(runner: Any, model: str | Path, sample: Mapping[str, np.ndarray]
                 ) -> tuple[float, float]:
    """Median batch-1 milliseconds of ``runner`` and of ORT on ``model``, interleaved."""
    ort_runner = make_runner(model)
    feeds = {name: sample[name] for name in ort_runner.input_names}
    timed: tuple[list[float], list[float]] = ([], [])
    for index in range(TIMED_RUNS + 1):
        for times, run in zip(timed, (runner.run, ort_runner.run), strict=True):
            start = time.perf_counter()
            run(feeds)
            if index:  # the first run of each warms up
                times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(timed[0]), statistics.median(timed[1])


def _zeros(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {spec.name: np.zeros([d if isinstance(d, int) and d > 0 else 1
                                 for d in spec.shape], spec.dtype)
            for spec in input_specs(proto)}


def _compare(model: str | Path, check: _Check, actual: dict[str, np.ndarray],
             threads: int | None) -> tuple[ValidationReport, float]:
    """The validation report, and the largest difference from the .onnx's outputs."""
    report = compare_outputs(check.reference, actual, check.tolerance)
    onnx_outputs = check.onnx_outputs
    if onnx_outputs is None:
        onnx_outputs = run_samples(model, finite_samples(check.samples), threads=threads)
    error = max(float(np.max(np.abs(np.asarray(actual[name], np.float64)
                                    - np.asarray(value, np.float64)), initial=0.0))
                for name, value in onnx_outputs.items())
    return report, error


# ------------------------------------------------------------------------ validation


def _plan_check(model: str | Path, proto: onnx.ModelProto, test_input: str | Path | None,
                test_reference: str | Path | None, tolerance: Tolerance | None,
                threads: int | None) -> _Check | None:
    """What to validate on (given, else what deploy recorded), all read now."""
    recorded = read_provenance(proto, str(model))
    gate = recorded.recipe.validation if recorded.recipe is not None else None
    data: Path | None = Path(test_input) if test_input is not None else None
    reference: Path | None = Path(test_reference) if test_reference is not None else None
    if data is None and gate is not None and gate.data is not None and gate.data.exists():
        data = gate.data
        if gate.reference is not None and gate.reference.exists():
            reference = gate.reference
    if data is None:
        return None
    chosen = tolerance or (gate.tolerance if gate is not None else Tolerance())
    proto_specs = input_specs(proto)
    samples = open_dataset(data, proto_specs,
                           image_options=image_options_for(model, None, data, proto))
    if reference is not None:
        found = load_reference(reference, output_names(proto))
        return _Check(data, samples, found, f"the reference outputs {reference}", chosen, None)
    source = recorded.inputs.get("model")
    if source is not None and Path(source.path).is_file() \
            and Path(source.path).resolve() != Path(model).resolve() \
            and file_stamp(source.path).sha256 == source.sha256:
        outputs = run_samples(source.path, finite_samples(samples), threads=threads)
        return _Check(data, samples, outputs, f"the float model {source.path}", chosen, None)
    outputs = run_samples(model, finite_samples(samples), threads=threads)
    what = "the float model itself" if precision_of(proto) == "F32" else \
        f"{Path(model).name} itself (the conversion only: the float model is not at hand)"
    return _Check(data, samples, outputs, what, chosen, outputs)


def _tolerance(tolerance: str | Tolerance | None) -> Tolerance | None:
    if tolerance is None or isinstance(tolerance, Tolerance):
        return tolerance
    if isinstance(tolerance, str):
        return Tolerance.parse(tolerance)
    raise UsageError(f"tolerance must be 'cosine,euclid' text such as '0.99,0.90' or a "
                     f"Tolerance; got {tolerance!r}")


# ------------------------------------------------------------------------ contents


def _meta(model: str | Path, proto: onnx.ModelProto) -> ModelMeta:
    """The meta file beside the model (checked against it), else one from the model."""
    found = find_meta(model)
    if found is None:
        return describe_model(proto)
    meta = read_meta(found)
    meta.check_fits(proto, found, model)
    return describe_model(proto, preprocessing=meta.preprocessing, fused=meta.fused,
                          fused_layout=meta.fused_layout, source=meta.source,
                          source_format=meta.source_format, exporter=meta.exporter,
                          notes=meta.notes)


def _labels(labels: str | Path | Sequence[str] | None,
            proto: onnx.ModelProto) -> tuple[str, ...] | None:
    if isinstance(labels, str | Path):
        names = tuple(read_class_names(labels))
    elif labels is not None:
        names = tuple(str(name) for name in labels)
    else:
        classes = _classes(proto)
        if classes not in (1000, 1001):
            return None
        names = imagenet_class_names()
        return ("background", *names) if classes == 1001 else names
    if any("\n" in name for name in names):
        raise UsageError("a class name may not contain a line break")
    classes = _classes(proto)
    if classes is not None and classes != len(names):
        raise UsageError(f"{{labels}} gives {len(names)} class names but the model's first "
                         f"output has {classes} scores")
    return names


def _classes(proto: onnx.ModelProto) -> int | None:
    """The number of scores per sample of the first output, when its shape says."""
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    values = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(values) < 2 or any(v is None for v in values[1:]):
        return None
    return int(np.prod([v for v in values[1:] if v is not None]))


def _report(model: str | Path, proto: onnx.ModelProto, precision: str, check: _Check | None,
            validation: ValidationReport | None, conversion_error: float | None,
            conversion: Mapping[str, Any]) -> dict[str, Any]:
    stamp = file_stamp(model)
    recorded = read_provenance(proto, str(model))
    return {
        "format": "lowbit bundle report v1",
        "precision": precision,
        "graph_precision": graph_precision(proto),
        "source": {"path": str(model), "bytes": stamp.bytes, "sha256": stamp.sha256},
        "conversion": dict(conversion),
        "validation": None if validation is None or check is None else {
            "data": str(check.data), "against": check.against,
            "tolerance": {"cosine": validation.tolerance.cosine,
                          "euclid": validation.tolerance.euclid},
            "passed": validation.passed,
            "outputs": [{"name": c.name, "shape": list(c.shape), "cosine": c.cosine,
                         "euclid": c.euclid, "sqnr_db": c.sqnr_db,
                         "max_abs_error": c.max_abs_error, "passed": c.passed}
                        for c in validation.checks],
            "conversion_max_abs_error": conversion_error,
        },
        "deploy": {"recipe": recorded.recipe_text, "steps": list(recorded.steps),
                   "versions": dict(recorded.versions)} if recorded.present else None,
        "packaged_by": {"lowbit": __version__},
    }


def _notes(proto: onnx.ModelProto, precision: str, target: str,
           check: _Check | None) -> list[str]:
    notes = []
    if check is None:
        notes.append("not validated: give --test-data (and --test-reference), or package a "
                     "model deploy validated")
    has_conv = any(n.op_type in ("Conv", "ConvTranspose") for n in proto.graph.node)
    if target in ("amd64", "arm") and has_conv and precision in ("F32", "F16", "MIXED"):
        notes.append(f"{target}: runs on any {target} CPU, so ONNX Runtime's NCHWc layout for "
                     f"float convolutions (CPU-specific) is left out; --target-platform host "
                     f"keeps it for CPUs like this one")
    return notes

