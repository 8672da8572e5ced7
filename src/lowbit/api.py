"""lowbit's Python API: the same verbs as the command line.

    import lowbit
    lowbit.transform("model.onnx", "work/model.f32.onnx", test_input="x.npz")
    lowbit.calibrate("work/model.f32.onnx", "calib.npz", num=200, method="kl",
                     output="work/model.calib")
    result = lowbit.deploy("work/model.f32.onnx", quantize="INT8",
                           calibration_table="work/model.calib", output="work/model.int8.onnx",
                           test_input="x.npz", tolerance="0.99,0.90")
    result.passed, result.left_float

Each verb reads files and writes files, so every stage can be run and checked
alone. Errors a user can cause raise LowbitError subclasses.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from lowbit.analysis.bench import BenchSettings, bench_models
from lowbit.analysis.classify import (
    Classification,
    classify_image,
    draw_predictions,
    read_class_names,
)
from lowbit.analysis.evaluate import EvalReport, evaluate_models
from lowbit.analysis.evaluate import evaluate as evaluate_model
from lowbit.analysis.explain import SpeedAdvice, explain_int8
from lowbit.analysis.labels import load_labels
from lowbit.analysis.layerwise import LayerReport, compare_layers, write_csv
from lowbit.analysis.plots import plot_layers
from lowbit.analysis.report import ReportFiles, ReportRow, build_rows, write_report
from lowbit.analysis.validate import Tolerance, ValidationReport, compare_outputs
from lowbit.calibration.collect import collect_ranges
from lowbit.calibration.observers import CalibrationSettings
from lowbit.calibration.table import CalibrationTable, read_table, write_table
from lowbit.data import (
    Dataset,
    ImageFolderDataset,
    ImageOptions,
    check_finite,
    open_dataset,
    save_npz_dataset,
)
from lowbit.data.fuse_preprocess import fuse_preprocess as fuse_preprocess_graph
from lowbit.data.images import is_image_file
from lowbit.errors import CalibrationError, DatasetError, LowbitError, ModelError, UsageError
from lowbit.io.importers import import_model
from lowbit.io.meta import (
    ModelMeta,
    describe_model,
    find_meta,
    load_meta_for,
    meta_path,
    resolve_image_options,
    write_meta,
)
from lowbit.io.model import input_specs, load_model, output_names, save_model
from lowbit.passes import CanonicalizeReport, OptimizeResult, canonicalize, resolve_passes
from lowbit.passes import optimize as optimize_graph
from lowbit.passes.canonical import Shapes
from lowbit.quantize.adaround import AdaRoundSettings, require_torch
from lowbit.quantize.adaround import adaround as learn_rounding
from lowbit.quantize.auto_check import CHECK_SAMPLES, check_auto_table, with_alpha
from lowbit.quantize.bias_correction import correct_biases, correct_biases_from_means
from lowbit.quantize.dynamic import NOTE as DYNAMIC_NOTE
from lowbit.quantize.dynamic import quantize_dynamic
from lowbit.quantize.equalize import (
    EqualizeSettings,
    equalize_layers,
    measure_channel_max,
    remeasure_ranges,
)
from lowbit.quantize.floats import (
    DEFAULT_KEEP_FLOAT,
    FloatSettings,
    check_runs_on_ort,
    convert_float,
)
from lowbit.quantize.mixed import deploy_mixed
from lowbit.quantize.params import WeightQuant, weight_kind
from lowbit.quantize.qdq import NodeDecision, QuantizeResult, stores_int4
from lowbit.quantize.qoperator import to_qoperator
from lowbit.quantize.qtable import QTable, read_qtable, write_qtable
from lowbit.quantize.search import SearchResult, Target, search_mixed
from lowbit.quantize.sensitivity import SensitivityResult, rank_sensitivity
from lowbit.quantize.settings import QuantizeSettings
from lowbit.quantize.smoothquant import (
    DEFAULT_ALPHA,
    SMOOTH_SAMPLES,
    parse_alpha,
    smooth_for_int8,
    smooth_from_table,
)
from lowbit.quantize.transformer import quantize_int8, transformer_scope
from lowbit.quantize.weight_only import WeightOnlyResult, WeightOnlySettings, quantize_weight_only
from lowbit.runtime.backends import check_backend, make_runner, require_openvino

log = logging.getLogger(__name__)

PRECISIONS = ("INT8", "F16", "BF16", "W4")
BIAS_CORRECTION_SAMPLES = 32
ADAROUND_SAMPLES = 128


@dataclass(frozen=True)
class TransformResult:
    """What transform wrote: the model, its meta file and, with a test input, the exact
    inputs fed (``reference_input_path``) and the outputs they gave (``reference_path``)."""

    path: Path
    report: CanonicalizeReport
    reference_path: Path | None = None
    meta_path: Path | None = None
    meta: ModelMeta | None = None
    reference_input_path: Path | None = None
    fused_ops: tuple[str, ...] = ()  # the ops --fuse-preprocess put in front of the graph
    imported_notes: tuple[str, ...] = ()
    optimized: OptimizeResult | None = None  # the graph passes run, with node counts


@dataclass(frozen=True)
class DeployResult:
    path: Path
    precision: str
    quantized: tuple[NodeDecision, ...]
    left_float: tuple[NodeDecision, ...]
    removed: tuple[NodeDecision, ...]
    float_tensors: Mapping[str, str]
    validation: ValidationReport | None = None
    advice: SpeedAdvice | None = None
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.validation is None or self.validation.passed


def transform(
    model: str | Path | Any,
    output: str | Path,
    *,
    example: Any = None,
    input_shapes: Shapes | None = None,
    test_input: str | Path | None = None,
    reference_output: str | Path | None = None,
    image_options: ImageOptions | None = None,
    fuse_preprocess: bool = False,
    fused_layout: str = "nhwc",
    reference_input: str | Path | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    opset: int | None = None,
    exporter: str = "auto",
    optimize: bool = True,
    passes: Sequence[str] | str | None = None,
) -> TransformResult:
    """Import a model (ONNX, PyTorch, TensorFlow: lowbit.io.importers), clean it up (see
    lowbit.passes.canonicalize), run the graph passes (``passes``, default
    lowbit.passes.DEFAULT_PASSES; none when ``optimize`` is False; ``result.optimized``
    has the node counts of each), and write it with its meta file (lowbit.io.meta:
    inputs, outputs, source and the preprocessing in ``image_options``).

    ``fuse_preprocess`` puts mean/scale, the channel order and the layout change into
    the graph (lowbit.data.fuse_preprocess): the model then takes uint8 pixels in
    ``fused_layout``. ``test_input`` (an image file, preprocessed with ``image_options``
    into one sample, or a data set) is run through the written model; the tensors fed go
    to ``reference_input`` and the outputs to ``reference_output`` (default
    ref_inputs.npz / ref_outputs.npz beside ``output``). Everything is checked before
    anything is written.

    ``model`` may also be a torch ``nn.Module`` or ``ScriptModule`` object, exported on
    ``example`` (a tensor or tuple of tensors; see lowbit.io.importers.pytorch).
    """
    chosen = resolve_passes(passes) if optimize else []  # an unknown name fails first
    imported = import_model(model, example=example, input_names=input_names,
                            output_names=output_names, input_shapes=input_shapes, opset=opset,
                            exporter=exporter)
    source = model if isinstance(model, str | Path) else None  # a module object: no file
    where = str(model) if source is not None else f"the {type(model).__name__} module"
    canonical, report = canonicalize(imported.model, input_shapes=input_shapes)
    if input_shapes:
        _check_runs_at_shapes(canonical, input_shapes)
    optimized = None
    if optimize:
        optimized = optimize_graph(canonical, [p.name for p in chosen])
        canonical = optimized.model
    _check_model(canonical, where)
    test_path = Path(test_input) if test_input is not None else None
    image_test = test_path is not None and test_path.is_file() and is_image_file(test_path)
    preprocessing = None
    carried = _carried_meta(source, image_options, fuse_preprocess)
    if carried is not None and fuse_preprocess:  # fuse what the meta file records
        image_options, carried = carried.preprocessing, None
    if carried is not None:  # a model lowbit wrote, transformed again: keep what it says
        preprocessing = carried.preprocessing
    elif image_options is not None or fuse_preprocess or image_test:
        preprocessing = _preprocessing_for(canonical, image_options, where)
    final = canonical
    fused_ops: tuple[str, ...] = ()
    if carried is not None and carried.fused:
        fuse_preprocess, fused_layout = True, carried.fused_layout or fused_layout
        fused_ops = ("already in the graph (its meta file says so)",)
    elif fuse_preprocess:
        assert preprocessing is not None
        fused = fuse_preprocess_graph(canonical, preprocessing, layout=fused_layout)
        final, _ = canonicalize(fused.model)
        fused_ops = fused.added
        _check_model(final, "the model with fused preprocessing")
    meta = describe_model(final, preprocessing=preprocessing, fused=fuse_preprocess,
                          fused_layout=fused_layout if fuse_preprocess else None,
                          source=source, source_format=imported.source_format,
                          exporter=imported.exporter, notes=imported.notes)
    path = Path(output)
    fed = reference = None
    if test_path is not None:
        samples = _test_samples(final, test_path, meta.feed_options(), image_test)
        fed = _stack_samples(samples)
        reference = run_samples(final, samples)
    save_model(final, path)
    written_meta = write_meta(meta, meta_path(path))
    reference_path = reference_input_path = None
    if fed is not None and reference is not None:
        reference_input_path = Path(reference_input) if reference_input else \
            path.parent / "ref_inputs.npz"
        reference_path = Path(reference_output) if reference_output else \
            path.parent / "ref_outputs.npz"
        save_npz_dataset(reference_input_path, fed)
        save_npz_dataset(reference_path, reference)
    notes = imported.notes
    if carried is not None and source is not None:
        notes = (*notes, f"preprocessing carried over from {find_meta(source)}")
    return TransformResult(path, report, reference_path, written_meta, meta,
                           reference_input_path, fused_ops, tuple(notes), optimized)


def _carried_meta(source: str | Path | None, given: ImageOptions | None,
                  fuse: bool) -> ModelMeta | None:
    """The meta file beside an ONNX ``source`` when it records preprocessing and the
    user gave none: transforming lowbit's own output again keeps it (and a graph that
    already has its preprocessing fused is not fused twice)."""
    if source is None or given is not None or not Path(source).is_file():
        return None
    meta = load_meta_for(source)
    if meta is None or meta.preprocessing is None:
        return None
    if fuse and meta.fused:
        raise UsageError(f"{source}: its meta file says the preprocessing is already fused "
                         "into the graph; drop --fuse-preprocess")
    log.info("preprocessing carried over from the meta file of %s", source)
    return meta


def _preprocessing_for(model: onnx.ModelProto, options: ImageOptions | None,
                       where: str) -> ImageOptions:
    """The image options as the meta file records them: layout resolved for the model's
    image input, the crop defaulting to its height and width, lengths checked."""
    specs = input_specs(model)
    images = [spec for spec in specs if len(spec.shape) == 4]
    if len(specs) != 1 or not images:
        raise UsageError(f"image preprocessing needs a model with one 4-D image input; {where} "
                         f"has {', '.join(f'{s.name} {s.shape_text()}' for s in specs)}")
    spec = images[0]
    resolved = (options or ImageOptions(layout="auto")).for_shape(spec.shape)
    _, c, h, w = spec.shape if resolved.layout == "nchw" else \
        (spec.shape[i] for i in (0, 3, 1, 2))
    label = f"input '{spec.name}' {spec.shape_text()} ({resolved.layout})"
    if isinstance(c, int) and c != resolved.channels:
        raise UsageError(f"{label} has {c} channel(s), but --pixel-format "
                         f"{resolved.pixel_format} gives {resolved.channels}; check "
                         f"--pixel-format and --layout")
    if isinstance(h, int) and isinstance(w, int):
        resolved.check_fits(h, w, resolved.channels, label)
        if resolved.crop is None:
            resolved = replace(resolved, crop=(h, w))
    else:
        resolved.check_fits(1, 1, resolved.channels, label)  # mean/scale lengths only
    return resolved


def _test_samples(model: onnx.ModelProto, path: Path, feed: ImageOptions | None,
                  image_file: bool) -> list[dict[str, np.ndarray]]:
    """The test input's samples as fed (an image file: one sample, preprocessed)."""
    specs = input_specs(model)
    if image_file:
        data: Dataset = ImageFolderDataset(path, specs, [path], feed or ImageOptions())
    else:
        data = open_dataset(path, specs, image_options=feed if path.is_dir() else None)
    samples = list(_finite_samples(data))
    if not samples:
        raise DatasetError(f"the test input {path} has no samples")
    return samples


def _stack_samples(samples: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Samples as a data set's arrays: batch-1 slices concatenated along axis 0, other
    samples stacked on a new first axis (the data-set format's "whole samples")."""
    stacked = {}
    for name in samples[0]:
        parts = [sample[name] for sample in samples]
        batch_one = all(part.ndim >= 1 and part.shape[0] == 1 for part in parts)
        stacked[name] = np.concatenate(parts) if batch_one else np.stack(parts)
    return stacked


def calibrate(
    model: str | Path,
    dataset: str | Path,
    *,
    num: int | None = None,
    method: str = "auto",
    percentile: float = 99.99,
    bins: int = 2048,
    output: str | Path | None = None,
    input_shapes: Shapes | None = None,
    image_options: ImageOptions | None = None,
    threads: int | None = None,
    progress: bool = True,
    input_means: bool = True,
    channel_ranges: bool = True,
    check_samples: int = CHECK_SAMPLES,
) -> CalibrationTable:
    """Stream ``num`` samples (all when None) through the model and write the table.

    An image-folder ``dataset`` is preprocessed with ``image_options``, or without them as
    the model's meta file (lowbit.io.meta) says. With ``input_means`` the table also
    keeps each Conv/Gemm's mean input, from which deploy corrects biases without data;
    with ``channel_ranges`` the per-channel min/max of each MatMul/Gemm input, from which
    deploy smooths a transformer (SmoothQuant) without data.
    Method auto ends with an output check on the first ``check_samples`` samples
    (lowbit.quantize.auto_check; 0 skips it)."""
    settings = CalibrationSettings(method=method, percentile=percentile, bins=bins)
    if num is not None and num <= 0:
        raise UsageError(f"--num must be a positive number of samples, got {num}")
    source = _load_float_model(model, "calibrate")
    canonical, _ = canonicalize(source, input_shapes=input_shapes)
    image_options = _image_options_for(model, image_options, dataset, source)
    samples = open_dataset(dataset, input_specs(canonical), image_options=image_options)
    table = collect_ranges(canonical, samples, settings, num_samples=num, progress=progress,
                           threads=threads, input_means=input_means,
                           channel_ranges=channel_ranges)
    if check_samples < 0:
        raise UsageError(f"--check-samples must be 0 or more, got {check_samples}")
    if method == "auto" and check_samples:
        feeds = list(_finite_samples_limited(samples, min(check_samples, table.num_samples)))
        check = check_auto_table(canonical, feeds, table, threads=threads)
        if check is not None:
            table = with_alpha(table, check.alpha)
            table.notes.append(check.summary())
    if output is not None:
        write_table(table, output)
    return table


def deploy(
    model: str | Path,
    *,
    quantize: str = "INT8",
    calibration_table: str | Path | CalibrationTable | None = None,
    output: str | Path,
    test_input: str | Path | None = None,
    test_reference: str | Path | None = None,
    tolerance: str | Tolerance | None = None,
    activation: str = "uint8",
    per_channel: bool = True,
    format: str = "qdq",
    quantize_table: str | Path | QTable | None = None,
    method: str = "cast",
    keep_io_types: bool = True,
    keep_float: Sequence[str] | None = None,
    backend: str = "ort",
    bias_correction: str | Path | bool | None = None,
    input_shapes: Shapes | None = None,
    weight_range: str = "auto",
    block_size: int = 32,
    algorithm: str = "rtn",
    calibration_data: str | Path | None = None,
    symmetric_weights: bool = False,
    float_embeddings: bool = False,
    act_order: bool = False,
    quantize_attention: bool = False,
    dynamic: bool = False,
    smooth: str | float | None = None,
    smooth_data: str | Path | None = None,
    equalize: bool | str | Path = False,
    equalize_relu6: str = "bound",
    adaround: str | Path | bool | None = None,
    adaround_iterations: int = 1000,
    weight_bits: int = 8,
) -> DeployResult:
    """Rewrite the model at ``quantize`` precision, write it, and validate it.

    INT8 needs a calibration table; ``quantize_table`` keeps the ops it names at F32,
    F16 or BF16 (mixed precision). F16/BF16 convert the whole graph (``method`` cast or
    full; ``keep_float`` op types or node names stay F32, default Softmax and friends).
    With ``test_input`` the new model runs on ``backend`` and each output is compared
    with ``test_reference`` (or with the float model's outputs); ``result.passed`` is
    False when a tolerance fails. The file is written either way. ``bias_correction``
    removes the per-channel mean shift weight rounding causes (INT8): by default (None)
    from the mean inputs the calibration table holds (``lowbit calibrate`` stores them),
    skipped with a note when the table has none or ``equalize``/``smooth`` change the
    layers' inputs; a data set measures it on its first 32 samples instead; False turns
    it off. ``weight_range`` "auto" gives INT8 weights 8 bits where ONNX Runtime's
    integer kernels on this CPU are exact; where they would saturate (x86 without VNNI),
    MatMul, Gemm and Conv weights keep 8 bits with int16-safe pairs of K rows ("paired"),
    depthwise Conv weights full range, where probes confirm the kernels' layout, and other
    weights 7 bits; "full", "reduced" (7 bits everywhere) or "paired" force one.

    W4 quantizes the weights of MatMul (and Gemm) nodes to 4 bits in blocks of
    ``block_size`` along K, as ONNX Runtime's MatMulNBits (activations stay float; see
    lowbit.quantize.weight_only): ``algorithm`` "rtn" rounds to nearest, "gptq" corrects
    the rounding with input statistics from the first 128 samples of
    ``calibration_data``; ``symmetric_weights`` drops the zero points; ``act_order``
    (GPTQ) visits the inputs with most energy first. Large embedding tables go int8 per
    hidden channel unless ``float_embeddings``.

    Transformers (lowbit.quantize.transformer): INT8 quantizes the MatMul/Gemm weights
    and their inputs and keeps LayerNorm, Softmax, GELU and the elementwise ops float;
    ``quantize_attention`` also quantizes Q·Kᵀ and P·V. ``dynamic`` quantizes
    activations at run time instead (no calibration table; lowbit.quantize.dynamic).
    ``smooth`` (α in [0, 1], "auto" or "off") applies SmoothQuant first
    (lowbit.quantize.smoothquant): by default (None) static INT8 of a transformer smooths
    at α 0.8 with the per-channel ranges ``lowbit calibrate`` keeps in the table, from
    which the smoothed tensors' ranges follow exactly (no data); a number α does the
    same, or, given ``smooth_data`` (default ``calibration_data``), measures maxima and
    re-calibrates the smoothed tensors on its first 128 samples; "auto" searches α on
    that data.

    ``calibration_data`` is the data set of every algorithm here that needs one and is
    not given its own: GPTQ, SmoothQuant, AdaRound (``adaround=True``) and equalization
    (``equalize=True``); given where none of them runs, it is refused, not ignored.

    ``equalize`` (a data set, or True for the ``adaround``/``bias_correction``/
    ``calibration_data`` one)
    applies cross-layer equalization to Conv pairs first and re-measures the ranges it
    changes on as many samples as the table was made from (lowbit.quantize.equalize;
    ``equalize_relu6`` "bound" or "relu"). ``adaround`` (a data set, or True for
    ``calibration_data``) learns each weight's
    rounding on its first 128 samples, ``adaround_iterations`` steps per layer
    (lowbit.quantize.adaround; needs torch).
    ``weight_bits`` 4 gives W4A8: weights on the [−7, 7] grid, stored as int4 where the
    model's opset allows it (21+), else as int8; activations stay 8-bit.
    """
    precision = quantize.upper()
    if precision not in PRECISIONS:
        raise UsageError(f"--quantize {quantize} is not supported; choose one of "
                         f"{', '.join(PRECISIONS)}")
    if test_reference is not None and test_input is None:
        raise UsageError("--test-reference needs --test-input (the inputs it was made from)")
    check_backend(backend)
    if backend == "openvino":
        require_openvino()  # before anything is written
    tol = Tolerance.parse(tolerance) if isinstance(tolerance, str) else (tolerance or Tolerance())
    _check_not_overwriting(model, output)
    canonical, _ = canonicalize(_load_float_model(model, "deploy"), input_shapes=input_shapes)
    correction_data = bias_correction if isinstance(bias_correction, (str, Path)) else None
    adaround, smooth_data = _shared_data(precision, calibration_data, adaround,
                                         None if _smoothing_off(smooth) else smooth,
                                         smooth_data, equalize)
    if float_embeddings and precision != "W4":
        raise UsageError("--float-embeddings applies to --quantize W4 (INT8 stores large "
                         "embedding tables int8)")
    # Validation compares with this float model, not with the equalized/corrected one the
    # accuracy algorithms below quantize (those change the float function on purpose).
    float_model = canonical
    w4: WeightOnlyResult | None = None
    if precision == "INT8":
        int8_settings = QuantizeSettings(activation=activation, per_channel=per_channel,
                                         format=format, weight_range=weight_range,
                                         quantize_attention=quantize_attention,
                                         weight_bits=weight_bits)
        if dynamic and (equalize or adaround is not None or weight_bits != 8):
            raise UsageError("--equalize, --adaround and --weight-bits 4 need a calibration "
                             "table: they do not combine with --dynamic")
        smoothing = None
        smoothed = False  # whether SmoothQuant changed the model (its layers' inputs)
        if not _smoothing_off(smooth):
            model_out, calibration_table, smoothing = _smooth(
                canonical, calibration_table, smooth, smooth_data, int8_settings, dynamic)
            smoothed, canonical = model_out is not canonical, model_out
        accuracy_notes: list[str] = []
        if equalize:
            canonical, calibration_table, note = _equalize(
                canonical, calibration_table, equalize, equalize_relu6,
                adaround or correction_data or calibration_data)
            accuracy_notes.append(note)
        rounded: dict[str, WeightQuant] | None = None
        if adaround is not None:
            rounded, note = _adaround(canonical, adaround, int8_settings,
                                      AdaRoundSettings(iterations=adaround_iterations),
                                      calibration_table)
            accuracy_notes.append(note)
        correction = None
        if dynamic:
            built = _build_dynamic(canonical, int8_settings, calibration_table is not None,
                                   quantize_table, correction_data)
        elif correction_data is not None:
            data = open_dataset(correction_data, input_specs(canonical))
            canonical, correction = correct_biases(
                canonical, _finite_samples_limited(data, BIAS_CORRECTION_SAMPLES),
                int8_settings, weights=rounded)
        elif bias_correction is None and calibration_table is not None:
            canonical, note = _correct_from_table(
                canonical, _read_table(calibration_table), int8_settings, rounded,
                quantize_table,
                changed_by="--equalize" if equalize else
                "SmoothQuant" if smoothed else None)
            accuracy_notes.append(note)
        if not dynamic:
            built = _build_int8(canonical, calibration_table, quantize_table, int8_settings,
                                weights=rounded)
        if weight_bits == 4:
            accuracy_notes.append(_w4a8_note(canonical, int8_settings))
        if accuracy_notes:
            built = replace(built, notes=(*accuracy_notes, *built.notes))
        if smoothing is not None:
            built = replace(built, notes=(smoothing, *built.notes))
        if correction is not None:
            built = replace(built, notes=(*built.notes, correction.summary()))
        if int8_settings.reduced_range:
            built = replace(built, notes=(*built.notes,
                                             _reduced_range_note(int8_settings, canonical)))
    elif correction_data is not None:
        raise UsageError("--bias-correction applies to --quantize INT8 only")
    elif equalize or adaround is not None or weight_bits != 8:
        raise UsageError("--equalize, --adaround and --weight-bits apply to --quantize INT8 "
                         "only")
    elif dynamic or (smooth is not None and not _smoothing_off(smooth)) or quantize_attention:
        raise UsageError("--dynamic, --smooth and --quantize-attention apply to --quantize "
                         "INT8 only")
    elif precision == "W4":
        if quantize_table is not None:
            raise UsageError("--quantize-table applies to --quantize INT8 only; W4 quantizes "
                             "every MatMul with a constant weight")
        w4 = _build_w4(canonical, WeightOnlySettings(
            block_size=block_size, algorithm=algorithm, symmetric=symmetric_weights,
            act_order=act_order, embeddings=not float_embeddings), calibration_data)
        built = _Built(w4.model, w4.quantized, w4.left_float)
    else:
        if quantize_table is not None:
            raise UsageError(f"--quantize-table applies to --quantize INT8 only; for "
                             f"{precision}, --keep-float names the ops that stay F32")
        settings = FloatSettings(precision=precision, method=method,
                                 keep_io_types=keep_io_types,
                                 keep_float=DEFAULT_KEEP_FLOAT if keep_float is None
                                 else tuple(keep_float))
        built = _build_float(canonical, settings)
    _check_model(built.model, "the converted model")

    # Everything a user can get wrong is checked before the model is written: exit
    # code 2 promises that nothing was written.
    samples, reference = None, None
    notes = list(built.notes)
    if test_input is not None:
        if backend == "ort" and precision != "INT8":
            reason = check_runs_on_ort(built.model)
            if reason:
                raise UsageError(reason)
        samples = open_dataset(test_input, input_specs(canonical))
        if test_reference is not None:
            _check_samples(samples)
            reference = _load_reference(test_reference, output_names(canonical))
        else:
            reference = run_samples(float_model, _finite_samples(samples))
    elif backend == "ort" and precision != "INT8":
        reason = check_runs_on_ort(built.model, run=False)
        if reason:
            notes.append(reason)
    path = save_model(built.model, output)
    if w4 is not None:
        notes.insert(0, w4.summary(Path(model).stat().st_size, path.stat().st_size))

    validation = None
    if samples is not None and reference is not None:
        actual = run_samples(path, samples, backend=backend)
        try:
            validation = compare_outputs(reference, actual, tol)
        except UsageError:
            path.unlink(missing_ok=True)  # the reference does not fit this model: a usage error
            raise
    # What ORT will really run: integer kernels or float fallbacks (no timing runs).
    try:
        advice = explain_int8(path, profile=False) if precision == "INT8" else None
    except LowbitError:
        path.unlink(missing_ok=True)  # ORT cannot load what was written: keep exit 2 honest
        raise
    return DeployResult(path, precision, built.quantized, built.left_float, built.removed,
                        built.float_tensors, validation, advice, tuple(notes))


def _reduced_range_note(settings: QuantizeSettings, model: onnx.ModelProto) -> str:
    """Which weights use which grid on this CPU, for the kinds of weights the model has."""
    inits = {init.name: tuple(init.dims) for init in model.graph.initializer}
    kinds: dict[str, str] = {}
    for node in model.graph.node:
        if len(node.input) < 2 or node.input[1] not in inits:
            continue
        shape = inits[node.input[1]]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        axis = 1 if node.op_type == "MatMul" or (node.op_type == "Gemm" and not
                                                 attrs.get("transB", 0)) else 0
        kind, _ = weight_kind(node.op_type, shape, axis if settings.per_channel else None,
                              int(attrs.get("group", 1)))
        if node.op_type in ("MatMul", "Gemm", "Conv"):
            kinds.setdefault(kind, settings.weight_grid(kind) if settings.per_channel
                             else "reduced")
    words = {"paired": "8 bits with every pair of K rows (2i, 2i+1) at most 128 in magnitude",
             "full": "8 bits (no pair sums)", "reduced": "7 bits (−63..63)"}
    names = {"DepthwiseConv": "depthwise Conv"}
    by_grid: dict[str, list[str]] = {}
    for kind, grid in kinds.items():
        by_grid.setdefault(grid, []).append(names.get(kind, kind))
    which = "; ".join(f"{', '.join(sorted(k))} {words.get(g, g)}"
                      for g, k in sorted(by_grid.items())) or "7 bits (−63..63)"
    return (f"weights: {which}: ONNX Runtime's uint8×int8 kernels on this CPU (x86 without "
            "VNNI) add "
            "pairs of products in a saturating int16, which full-range int8 weights overflow; "
            "--weight-range full for a target with VNNI or ARM")


@dataclass(frozen=True)
class _Built:
    model: onnx.ModelProto
    quantized: tuple[NodeDecision, ...]
    left_float: tuple[NodeDecision, ...]
    removed: tuple[NodeDecision, ...] = ()
    float_tensors: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def _build_int8(canonical: onnx.ModelProto,
                calibration_table: str | Path | CalibrationTable | None,
                quantize_table: str | Path | QTable | None,
                settings: QuantizeSettings,
                weights: Mapping[str, WeightQuant] | None = None) -> _Built:
    table = _required_table(calibration_table, canonical)
    notes: list[str] = []
    result: QuantizeResult
    if quantize_table is not None:
        qtable = quantize_table if isinstance(quantize_table, QTable) else \
            read_qtable(quantize_table)
        mixed = deploy_mixed(canonical, table.ranges, settings, qtable, skipped=table.skipped,
                             weights=weights)
        result, notes = mixed, list(mixed.notes)
    else:
        result, notes = quantize_int8(canonical, table.ranges, settings, skipped=table.skipped,
                                      weights=weights)
    out = to_qoperator(result.model) if settings.format == "qoperator" else result.model
    return _Built(out, tuple(result.quantized), tuple(result.left_float), tuple(result.removed),
                  dict(result.float_tensors), (table.summary(), *notes))


def _required_table(calibration_table: str | Path | CalibrationTable | None,
                    canonical: onnx.ModelProto) -> CalibrationTable:
    """The INT8 calibration table, read and checked against the model; its absence is a
    usage error."""
    if calibration_table is None:
        raise UsageError("--quantize INT8 needs --calibration-table (run lowbit calibrate)")
    table = _read_table(calibration_table)
    _check_table_matches(table, canonical, calibration_table)
    return table


def _read_table(table: str | Path | CalibrationTable) -> CalibrationTable:
    return table if isinstance(table, CalibrationTable) else read_table(table)


def _correct_from_table(canonical: onnx.ModelProto, table: CalibrationTable,
                        settings: QuantizeSettings, rounded: Mapping[str, WeightQuant] | None,
                        quantize_table: str | Path | QTable | None, changed_by: str | None
                        ) -> tuple[onnx.ModelProto, str]:
    """Bias correction from the table's mean inputs, and the note that says what it did."""
    inits = {init.name for init in canonical.graph.initializer}
    if not any(node.op_type in ("Conv", "Gemm") and len(node.input) > 1
               and node.input[1] in inits for node in canonical.graph.node):
        return canonical, "bias correction: nothing to correct (no Conv or Gemm with constant weights)"
    if changed_by is not None:
        return canonical, (f"no bias correction from the calibration table: {changed_by} "
                           "changes the layers' inputs; pass --bias-correction DATASET")
    if not table.input_means:
        return canonical, ("no bias correction: the calibration table holds no input means "
                           "(made with --no-input-means, by an older lowbit or by tpu-mlir); "
                           "pass --bias-correction DATASET or re-run lowbit calibrate")
    kept: set[str] = set()
    if quantize_table is not None:
        qtable = quantize_table if isinstance(quantize_table, QTable) else \
            read_qtable(quantize_table)
        kept = {name for name, p in qtable.precisions.items() if p != "INT8"}
    corrected, report = correct_biases_from_means(canonical, table.input_means,
                                                  table.num_samples, settings,
                                                  weights=rounded, exclude=kept)
    if report.ops == 0:
        return corrected, ("bias correction: nothing to correct (no quantized Conv or Gemm "
                           "with a constant weight and the table's input means)")
    return corrected, f"{report.summary()}, from the calibration table's input means"


def _shared_data(precision: str, data: str | Path | None, adaround: str | Path | bool | None,
                 smooth: object, smooth_data: str | Path | None, equalize: object
                 ) -> tuple[str | Path | None, str | Path | None]:
    """``calibration_data`` is the data set of every algorithm that needs one and was not
    given its own: AdaRound (``adaround=True``), SmoothQuant, equalization, GPTQ. Returns
    (adaround, smooth_data) resolved; data nothing asked for is refused, not ignored."""
    if adaround is False:
        adaround = None
    if adaround is True:
        if data is None:
            raise UsageError("--adaround needs a data set: --adaround DATASET or "
                             "--calibration-data DATASET")
        adaround = data
    if smooth is not None and smooth_data is None:
        smooth_data = data
    if data is not None and precision in ("INT8", "F16", "BF16") and not (
            adaround == data or (smooth is not None and smooth_data == data)
            or equalize is True):
        raise UsageError(f"--calibration-data {data} is not used: it feeds --adaround, "
                         "--smooth and --equalize (INT8) and --algorithm gptq (W4), none of "
                         "which is asked for (INT8 activation ranges come from "
                         "--calibration-table: run lowbit calibrate)")
    return adaround, smooth_data


def _build_w4(canonical: onnx.ModelProto, settings: WeightOnlySettings,
              calibration_data: str | Path | None) -> WeightOnlyResult:
    if settings.algorithm != "gptq":
        if calibration_data is not None:
            raise UsageError("--calibration-data is used by --algorithm gptq only; "
                             "rtn needs no data")
        return quantize_weight_only(canonical, settings)
    if calibration_data is None:
        raise UsageError("--quantize W4 --algorithm gptq needs --calibration-data DATASET "
                         "(inputs like those the model will see)")
    data = open_dataset(calibration_data, input_specs(canonical))
    return quantize_weight_only(canonical, settings,
                                samples=_finite_samples_limited(data, settings.samples),
                                total_samples=min(len(data), settings.samples))


def _build_dynamic(canonical: onnx.ModelProto, settings: QuantizeSettings, table_given: bool,
                   quantize_table: object, bias_correction: object) -> _Built:
    if quantize_table is not None or bias_correction is not None or settings.format != "qdq":
        raise UsageError("--dynamic does not combine with --quantize-table, --bias-correction "
                         "or --format qoperator")
    result = quantize_dynamic(canonical, settings)
    notes = [DYNAMIC_NOTE] + (["--calibration-table is not used by --dynamic"]
                              if table_given else [])
    return _Built(result.model, tuple(result.quantized), tuple(result.left_float),
                  notes=tuple(notes))


def _smoothing_off(smooth: str | float | bool | None) -> bool:
    return smooth is False or (isinstance(smooth, str) and smooth.strip().lower() == "off")


def _smooth(canonical: onnx.ModelProto,
            calibration_table: str | Path | CalibrationTable | None,
            alpha: str | float | None, smooth_data: str | Path | None,
            settings: QuantizeSettings, dynamic: bool
            ) -> tuple[onnx.ModelProto, str | Path | CalibrationTable | None, str | None]:
    """SmoothQuant before INT8: the smoothed model, its table (smoothed tensors' ranges
    re-measured or derived), the note; the model and table unchanged (note None or why)
    when nothing is smoothed.

    ``alpha`` None is deploy's default: static INT8 of a transformer smooths at
    DEFAULT_ALPHA from the table's channel ranges. An explicit α without a data set uses
    those ranges too; "auto", or any α with ``smooth_data``, measures on the data."""
    if alpha is None:
        if dynamic or settings.weight_bits != 8 or calibration_table is None \
                or transformer_scope(canonical) is None:
            return canonical, calibration_table, None
        table = _required_table(calibration_table, canonical)
        done = smooth_from_table(canonical, table, DEFAULT_ALPHA)
        if done is None:
            return canonical, table, (
                "no SmoothQuant: the calibration table holds no channel ranges (made with "
                "--no-channel-ranges, by an older lowbit or by tpu-mlir); re-run lowbit "
                "calibrate, or pass --smooth ALPHA --smooth-data DATASET")
        return done[0].model, done[1], (
            f"{done[0].summary()}; from the calibration table's channel ranges (the default "
            "for transformers; --smooth off turns it off)")
    chosen = parse_alpha(alpha)
    if smooth_data is None and chosen is not None and calibration_table is not None:
        table = _required_table(calibration_table, canonical)
        done = smooth_from_table(canonical, table, chosen)
        if done is not None:
            return done[0].model, None if dynamic else done[1], (
                f"{done[0].summary()}; from the calibration table's channel ranges")
    if smooth_data is None:
        raise UsageError("--smooth needs --smooth-data or --calibration-data DATASET (e.g. "
                         "the calibration data), or for a number α a calibration table with "
                         "channel ranges (lowbit calibrate writes them): SmoothQuant needs "
                         "per-channel activation maxima" +
                         ("; --smooth auto also scores each α on the data"
                          if chosen is None else ""))
    measured = None if dynamic else _required_table(calibration_table, canonical)
    data = open_dataset(smooth_data, input_specs(canonical))
    samples = list(_finite_samples_limited(data, SMOOTH_SAMPLES))
    outcome = smooth_for_int8(canonical, measured, samples, alpha, settings, dynamic=dynamic)
    return outcome.result.model, outcome.table, outcome.summary()


def _equalize(canonical: onnx.ModelProto,
              calibration_table: str | Path | CalibrationTable | None,
              equalize: bool | str | Path, relu6: str, other_data: str | Path | None
              ) -> tuple[onnx.ModelProto, CalibrationTable, str]:
    """Cross-layer equalization before INT8: the equalized model, its table with the
    changed ranges re-measured, the note."""
    settings = EqualizeSettings(relu6=relu6)
    source = other_data if equalize is True else equalize
    if source is None or source is False:
        raise UsageError("--equalize needs a data set to re-measure the ranges it changes: "
                         "--equalize DATASET (e.g. the calibration data), or --adaround, "
                         "--bias-correction or --calibration-data data")
    table = _required_table(calibration_table, canonical)
    data = open_dataset(source, input_specs(canonical))
    count = table.num_samples if table.num_samples > 0 else len(data)
    maxima = measure_channel_max(canonical, _finite_samples_limited(data, count)) \
        if settings.relu6 == "bound" else None
    equalized, report = equalize_layers(canonical, settings, channel_max=maxima)
    table, report = remeasure_ranges(equalized, table, _finite_samples_limited(data, count),
                                     report)
    return equalized, table, report.summary()


def _adaround(canonical: onnx.ModelProto, dataset: str | Path, settings: QuantizeSettings,
              options: AdaRoundSettings,
              calibration_table: str | Path | CalibrationTable | None
              ) -> tuple[dict[str, WeightQuant], str]:
    """Learned rounding, each layer fitted to what it reads in the quantized model."""
    require_torch()  # before any data is read
    table = _required_table(calibration_table, canonical)
    data = open_dataset(dataset, input_specs(canonical))
    samples = list(_finite_samples_limited(data, ADAROUND_SAMPLES))
    if not samples:
        raise DatasetError(f"--adaround: the data set {dataset} has no samples")
    weights, report = learn_rounding(canonical, samples, settings, options,
                                     ranges=table.ranges, skipped=table.skipped)
    return weights, report.summary()


def _w4a8_note(model: onnx.ModelProto, settings: QuantizeSettings) -> str:
    if stores_int4(model, settings):
        return ("W4A8: weights 4-bit (−7..7) stored as int4; ONNX Runtime has no int4 "
                "Conv/Gemm kernel, so it dequantizes them and runs those ops in float")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    why = "--format qoperator" if settings.format != "qdq" else \
        f"opset {opset} has no int4 DequantizeLinear (21 has)"
    return (f"W4A8: weights 4-bit (−7..7) stored as int8 ({why}); ONNX Runtime runs them in "
            "its int8 kernels: INT8 speed and size, 4-bit accuracy")


def _build_float(canonical: onnx.ModelProto, settings: FloatSettings) -> _Built:
    result = convert_float(canonical, settings)
    ops = {node.name: node.op_type for node in canonical.graph.node}
    converted = tuple(NodeDecision(name, ops.get(name, "")) for name in result.converted)
    kept = tuple(NodeDecision(k.name, k.op_type, k.reason) for k in result.kept_float)
    notes = tuple(f"clamped {c.count} value(s) of {c.tensor} to the F16 range"
                  for c in result.clamped)
    return _Built(result.model, converted, kept, notes=notes)


@dataclass(frozen=True)
class QTableResult:
    path: Path
    qtable: QTable
    sensitivity: SensitivityResult | None
    search: SearchResult | None


def qtable(
    model: str | Path,
    dataset: str | Path,
    *,
    calibration_table: str | Path | CalibrationTable,
    output: str | Path,
    num: int | None = 32,
    target: str | None = None,
    labels: str | Path | None = None,
    fallback: str = "F32",
    activation: str = "uint8",
    per_channel: bool = True,
    weight_range: str = "auto",
) -> QTableResult:
    """Rank every quantizable op by how much the network output (SQNR against F32)
    improves when it alone stays float, and write the ranking as a qtable's loss table;
    with ``target`` (``cos=0.99`` or ``top1-drop=0.5`` with ``labels``), search the
    smallest set of ``fallback`` ops that meets it, checked by running the mixed model,
    and write those ops as the qtable's entries."""
    settings = QuantizeSettings(activation=activation, per_channel=per_channel,
                                weight_range=weight_range)
    table = calibration_table if isinstance(calibration_table, CalibrationTable) else \
        read_table(calibration_table)
    canonical, _ = canonicalize(_load_float_model(model, "qtable"))
    _check_table_matches(table, canonical, calibration_table)
    dataset_ = open_dataset(dataset, input_specs(canonical))
    samples = list(_finite_samples_limited(dataset_, num if num is not None else len(dataset_)))
    if not samples:
        raise DatasetError(f"the data set {dataset} has no samples")
    if target is None:
        ranking = rank_sensitivity(canonical, table.ranges, settings, samples,
                                   skipped=table.skipped)
        result_table = QTable({}, ranking.rows)
        path = write_qtable(result_table, output)
        return QTableResult(path, result_table, ranking, None)
    label_array = None
    if labels is not None or Path(dataset).suffix == ".npz":
        try:
            label_array = load_labels(labels, dataset, len(dataset_))[:len(samples)]
        except DatasetError:
            if labels is not None or Target.parse(target).metric == "top1-drop":
                raise
    search = search_mixed(canonical, table.ranges, settings, samples, Target.parse(target),
                          labels=label_array, fallback=fallback.upper(),
                          skipped=table.skipped)
    path = write_qtable(search.qtable, output)
    return QTableResult(path, search.qtable, search.ranking, search)


def evaluate(model: str | Path, dataset: str | Path, *,
             image_options: ImageOptions | None = None, **options: Any) -> EvalReport:
    """lowbit.analysis.evaluate.evaluate (same keywords), with an image-folder data set
    preprocessed as the model's meta file says when no ``image_options`` are given."""
    return evaluate_model(model, dataset,
                          image_options=_image_options_for(model, image_options, dataset),
                          **options)


def classify(
    model: str | Path,
    image: str | Path,
    labels: str | Path | Sequence[str] | None = None,
    top: int = 5,
    *,
    output: str | Path | None = None,
    image_options: ImageOptions | None = None,
    backend: str = "ort",
    threads: int | None = None,
    output_name: str | None = None,
) -> Classification:
    """The ``top`` classes of one image (lowbit.analysis.classify), for F32 and quantized
    models alike, preprocessed with ``image_options`` or as the model's meta file says.

    ``labels``: a text file of one class name per line, or the names themselves;
    default ImageNet-1k's for a 1000-score output. With ``output``, the image is also
    written there with the predictions drawn on it.
    """
    check_backend(backend)
    if backend == "openvino":
        require_openvino()
    proto = load_model(model, check=False)
    options = resolve_image_options(model, image_options, proto)
    if options is None:
        found = find_meta(model)
        why = (f"its meta file {found} records no preprocessing" if found is not None else
               f"it has no meta file ({meta_path(model).name})")
        raise UsageError(f"cannot preprocess an image for {model}: {why} and no image "
                         f"options were given; give --mean, --scale, --pixel-format and "
                         f"--resize (and --crop), or run lowbit transform with them")
    names: Sequence[str] | None
    if isinstance(labels, str | Path):
        names, source = read_class_names(labels), Path(labels).name
    else:
        names, source = labels, ""
    result = classify_image(model, image, image_options=options, labels=names,
                            labels_source=source, top=top, backend=backend, threads=threads,
                            output_name=output_name)
    if output is not None:
        result = replace(result, drawn=draw_predictions(image, result, output))
    return result


def compare(
    reference_model: str | Path,
    test_model: str | Path,
    inputs: str | Path,
    *,
    tolerance: str | Tolerance | None = None,
    csv: str | Path | None = None,
    plot: str | Path | None = None,
    dump: str | Path | None = None,
    progress: bool = True,
) -> LayerReport:
    """Compare two models tensor by tensor on the same inputs.

    Tensors pair across the graphs by the structure lowbit writes (same names, a
    QuantizeLinear→DequantizeLinear chain back to the float tensor it stands for,
    folded BN / removed activations under their original names); each pair gets
    cosine, euclidean similarity, SQNR and a status, pooled over all samples. The
    final outputs pair by name, so the last rows are the output check.
    """
    tol = Tolerance.parse(tolerance) if isinstance(tolerance, str) else (tolerance or Tolerance())
    ref_model = load_model(reference_model)
    test = load_model(test_model)  # a missing or broken file fails with a clear message
    samples = open_dataset(inputs, input_specs(ref_model))
    report = compare_layers(ref_model, test, _finite_samples(samples), tol,
                            dump_dir=Path(dump) if dump else None, progress=progress)
    if csv is not None:
        write_csv(report, csv)
    if plot is not None:
        plot_layers(report, plot)
    return report


def report(
    variants: Sequence[str | Path],
    dataset: str | Path,
    output: str | Path,
    *,
    labels: str | Path | None = None,
    batch: int = 32,
    repeats: int = 20,
    threads: int | None = None,
    num: int | None = None,
    compare_samples: int = 32,
    title: str | None = None,
    backend: str = "ort",
    image_options: ImageOptions | None = None,
) -> ReportResult:
    """One row per model variant: size, accuracy, speed, output cosine vs F32, written
    as report.md and a self-contained report.html (with the F32→first-quantized-variant
    layer plot and bar charts of speed and accuracy).

    The precision of each variant is read off its graph (QuantizeLinear → INT8, float16
    tensors → F16, else F32); the first F32 variant is the baseline. An image-folder
    data set is preprocessed with ``image_options``, or as the baseline's meta file says.
    """
    if not variants:
        raise UsageError("report needs at least one model")
    paths = [Path(v) for v in variants]
    models = [load_model(path) for path in paths]
    precisions = [precision_of(model) for model in models]
    base = precisions.index("F32") if "F32" in precisions else 0
    image_options = _image_options_for(paths[base], image_options, dataset, models[base])
    metrics: tuple[str, ...] = ("cos",)
    if labels is not None or _has_labels(dataset):
        metrics = ("top1", "top5", "cos")
    results = evaluate_models(paths, dataset, labels=labels, metrics=metrics,
                              reference=paths[base], threads=threads, num=num, backend=backend,
                              image_options=image_options)
    bench = bench_models(paths, BenchSettings(batches=(1, batch), threads=threads,
                                              repeats=repeats, backend=backend), progress=False)
    rows = build_rows(list(zip(precisions, paths, strict=True)), results, bench, base)
    out = Path(output)
    layers = None
    plot = None
    quantized = [i for i, p in enumerate(precisions) if p != "F32"]
    if quantized and base != quantized[0] and backend == "ort":
        samples = open_dataset(dataset, input_specs(models[base]), image_options=image_options)
        layers = compare_layers(models[base], models[quantized[0]],
                                _finite_samples_limited(samples, compare_samples), Tolerance(),
                                progress=False)
        out.mkdir(parents=True, exist_ok=True)
        plot = plot_layers(layers, out / "layers.png")
    notes = [f"{r.model}: {r.metrics}" for r in results if not r.metrics]
    if layers is not None:
        notes.append(f"layer by layer, {precisions[base]} vs {precisions[quantized[0]]} on "
                     f"{layers.samples} samples: {layers.summary()}")
    files = write_report(rows, out, title=title or f"lowbit report: {paths[base].stem}",
                         compare_plot=plot, notes=notes)
    return ReportResult(files, tuple(rows), layers)


@dataclass(frozen=True)
class ReportResult:
    files: ReportFiles
    rows: tuple[ReportRow, ...]
    layers: LayerReport | None


def precision_of(model: onnx.ModelProto) -> str:
    """INT8 when the graph quantizes (MIXED when some conv/matmul keeps float weights),
    F16/BF16 when its weights are half floats, else F32."""
    ops = {node.op_type for node in model.graph.node}
    if "MatMulNBits" in ops:
        return "W4"
    if ops & {"QuantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger"}:
        # A qtable's float islands: a conv/matmul whose weight is a float initializer.
        floats = {i.name for i in model.graph.initializer
                  if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16,
                                     onnx.TensorProto.BFLOAT16) and len(i.dims) >= 2}
        casts = {node.input[0] for node in model.graph.node if node.op_type == "Cast"}
        mixed = any(node.op_type in ("Conv", "Gemm", "MatMul", "ConvTranspose")
                    and len(node.input) > 1 and (node.input[1] in floats
                                                 or node.input[1] in casts)
                    for node in model.graph.node)
        return "MIXED" if mixed else "INT8"
    types = {init.data_type for init in model.graph.initializer}
    types |= {attr.i for node in model.graph.node if node.op_type == "Cast"
              for attr in node.attribute if attr.name == "to"}  # cast method: F32 weights
    if onnx.TensorProto.FLOAT16 in types:
        return "F16"
    if onnx.TensorProto.BFLOAT16 in types:
        return "BF16"
    return "F32"


def _image_options_for(model: str | Path, given: ImageOptions | None, dataset: str | Path,
                       proto: onnx.ModelProto | None = None) -> ImageOptions | None:
    """``given``; else, for a folder of images, the preprocessing of the model's meta file
    (checked against the model); else None (other data sets need no image options)."""
    if given is not None:
        return given
    folder = Path(dataset)
    if not folder.is_dir() or not any(is_image_file(p) for p in folder.rglob("*")):
        return None
    if proto is None:
        proto = load_model(model, check=False)
    return resolve_image_options(model, None, proto)


def _has_labels(dataset: str | Path) -> bool:
    path = Path(dataset)
    if path.is_dir():
        return any(child.is_dir() for child in path.iterdir())
    if path.suffix == ".npz" and path.exists():
        with np.load(path) as data:
            return bool({"label", "labels"} & set(data.files))
    return False


def _finite_samples_limited(dataset: Dataset, limit: int) -> Iterator[dict[str, np.ndarray]]:
    for index, sample in enumerate(_finite_samples(dataset)):
        if index >= limit:
            return
        yield sample


def run_samples(model: str | Path | onnx.ModelProto, samples: Iterable[Mapping[str, np.ndarray]],
                *, threads: int | None = None, backend: str = "ort",
                precision: str | None = None) -> dict[str, np.ndarray]:
    """Run a model sample by sample on ``backend`` and stack each output along axis 0."""
    runner = make_runner(model, backend=backend, threads=threads, precision=precision)
    collected: dict[str, list[np.ndarray]] = {name: [] for name in runner.output_names}
    count = 0
    for sample in samples:
        outputs = runner.run({k: v for k, v in sample.items() if k in runner.input_names})
        for name, value in outputs.items():
            collected[name].append(value)
        count += 1
    if count == 0:
        raise DatasetError("the data set has no samples")
    return {name: np.concatenate(values, axis=0) for name, values in collected.items()}


def _finite_samples(dataset: Dataset) -> Iterator[dict[str, np.ndarray]]:
    """The data set's samples; a NaN or Inf in one raises DatasetError naming it."""
    for index, sample in enumerate(dataset):
        check_finite(sample, index, dataset.source)
        yield sample


def _check_samples(dataset: Dataset) -> None:
    """Read every sample once, so a misshapen or non-finite one fails before anything runs."""
    for _ in _finite_samples(dataset):
        pass


def _load_reference(path: str | Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"test reference not found: {path}")
    try:
        with np.load(path) as data:
            arrays = {key: data[key] for key in data.files}
    except Exception as err:
        raise DatasetError(f"{path} is not a readable .npz file: {err}") from err
    missing = [name for name in names if name not in arrays]
    if missing:
        raise DatasetError(f"test reference {path} lacks output(s) {', '.join(missing)}; "
                           f"it has {', '.join(arrays) or 'no arrays'}")
    return {name: arrays[name] for name in names}


def _check_table_matches(table: CalibrationTable, model: onnx.ModelProto,
                         source: object) -> None:
    names = {o for node in model.graph.node for o in node.output}
    names |= {i.name for i in model.graph.input}
    if not table.ranges:
        raise CalibrationError(f"calibration table {source} holds no tensor ranges; give the "
                               f"table lowbit calibrate wrote for this model")
    unknown = [name for name in table.ranges if name not in names]
    # A table made for this model names only its tensors; a few shared names (an "input", an
    # "a") must not make another model's table look like it belongs here.
    if table.ranges and 2 * len(unknown) > len(table.ranges):
        raise CalibrationError(
            f"calibration table {source} does not fit this model: {len(unknown)} of its "
            f"{len(table.ranges)} tensors (e.g. '{unknown[0]}') are not in the model; was it made "
            f"for another model?")
    if unknown:
        log.warning("calibration table %s names %d tensor(s) not in the model, e.g. '%s'; "
                    "they are ignored", source, len(unknown), unknown[0])


def _load_float_model(path: str | Path, stage: str) -> onnx.ModelProto:
    """The model at ``path``, refused when it is already quantized or converted: calibrating
    or quantizing it again would quantize nothing, or quantize quantization noise."""
    model = load_model(path)
    precision = precision_of(model)
    if precision != "F32":
        raise UsageError(f"{path} is already {precision}, not a float F32 model; {stage} takes "
                         f"the float model (e.g. transform's model.f32.onnx)")
    return model


def _check_not_overwriting(model: str | Path, output: str | Path) -> None:
    if Path(output).resolve() == Path(model).resolve():
        raise UsageError(f"-o {output} is the input model; write the result to another file")


def _check_runs_at_shapes(model: onnx.ModelProto, input_shapes: Shapes) -> None:
    """Shape inference accepts shapes that contradict a model's weights (3 channels into a
    1-channel Conv); running it once on zeros does not."""
    feeds = {}
    for spec in input_specs(model):
        if any(not isinstance(d, int) or d <= 0 for d in spec.shape):
            return  # a dynamic axis left: nothing to run at
        shape = tuple(int(d) for d in spec.shape)  # type: ignore[arg-type]
        feeds[spec.name] = np.zeros(shape, spec.dtype)
    try:
        run_samples(model, [feeds])
    except ModelError as err:
        raise UsageError(f"the model does not run at --input-shapes {_shapes_text(input_shapes)}:"
                         f" {err}") from err


def _shapes_text(input_shapes: Shapes) -> str:
    if isinstance(input_shapes, Mapping):
        return ";".join(f"{name}:{','.join(map(str, shape))}"
                        for name, shape in input_shapes.items())
    return str([list(shape) for shape in input_shapes]).replace(" ", "")


def _check_model(model: onnx.ModelProto, what: str) -> None:
    try:
        onnx.checker.check_model(model)
    except Exception as err:  # a bug of ours, but say which stage produced it
        raise ModelError(f"{what} fails the ONNX checker: {str(err).splitlines()[0]}") from err


__all__ = ["Classification", "Dataset", "DeployResult", "EvalReport", "ReportResult",
           "TransformResult", "calibrate", "classify", "compare", "deploy", "evaluate", "precision_of", "qtable", "report", "run_samples",
           "transform"]
