"""lowbit.deploy: rewrite a float model at lower precision, write it, validate it."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import onnx

from lowbit.analysis.explain import SpeedAdvice, explain_int8
from lowbit.analysis.validate import Tolerance, ValidationReport, compare_outputs
from lowbit.api.common import (
    check_model,
    check_not_overwriting,
    check_samples,
    check_table_matches,
    finite_samples,
    first_samples,
    load_float_model,
    load_reference,
    run_samples,
)
from lowbit.calibration.table import CalibrationTable, read_table
from lowbit.data import (
    open_dataset,
)
from lowbit.errors import DatasetError, LowbitError, UsageError
from lowbit.io.model import input_specs, output_names, save_model
from lowbit.passes import canonicalize
from lowbit.passes.canonical import Shapes
from lowbit.quantize.floats.convert import (
    DEFAULT_KEEP_FLOAT,
    FloatSettings,
    check_runs_on_ort,
    convert_float,
)
from lowbit.quantize.int8.dynamic import NOTE as DYNAMIC_NOTE
from lowbit.quantize.int8.dynamic import quantize_dynamic
from lowbit.quantize.int8.params import WeightQuant, weight_kind
from lowbit.quantize.int8.qdq import NodeDecision, QuantizeResult, stores_int4
from lowbit.quantize.int8.qoperator import to_qoperator
from lowbit.quantize.int8.scope import transformer_scope
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.quantize.int8.static import quantize_int8
from lowbit.quantize.mixed.deploy import deploy_mixed
from lowbit.quantize.mixed.qtable import QTable, read_qtable
from lowbit.quantize.prepare.adaround import AdaRoundSettings, require_torch
from lowbit.quantize.prepare.adaround import adaround as learn_rounding
from lowbit.quantize.prepare.bias_correction import correct_biases, correct_biases_from_means
from lowbit.quantize.prepare.equalize import (
    EqualizeSettings,
    equalize_layers,
    measure_channel_max,
    remeasure_ranges,
)
from lowbit.quantize.prepare.smoothquant import (
    DEFAULT_ALPHA,
    SMOOTH_SAMPLES,
    parse_alpha,
    smooth_for_int8,
    smooth_from_table,
)
from lowbit.quantize.w4.weight_only import (
    WeightOnlyResult,
    WeightOnlySettings,
    quantize_weight_only,
)
from lowbit.runtime.backends import check_backend, require_openvino

log = logging.getLogger(__name__)
PRECISIONS = ("INT8", "F16", "BF16", "W4")
BIAS_CORRECTION_SAMPLES = 32
ADAROUND_SAMPLES = 128



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
    lowbit.quantize.w4.weight_only): ``algorithm`` "rtn" rounds to nearest, "gptq" corrects
    the rounding with input statistics from the first 128 samples of
    ``calibration_data``; ``symmetric_weights`` drops the zero points; ``act_order``
    (GPTQ) visits the inputs with most energy first. Large embedding tables go int8 per
    hidden channel unless ``float_embeddings``.

    Transformers (lowbit.quantize.int8.scope): INT8 quantizes the MatMul/Gemm weights
    and their inputs and keeps LayerNorm, Softmax, GELU and the elementwise ops float;
    ``quantize_attention`` also quantizes Q·Kᵀ and P·V. ``dynamic`` quantizes
    activations at run time instead (no calibration table; lowbit.quantize.int8.dynamic).
    ``smooth`` (α in [0, 1], "auto" or "off") applies SmoothQuant first
    (lowbit.quantize.prepare.smoothquant): by default (None) static INT8 of a transformer smooths
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
    changes on as many samples as the table was made from (lowbit.quantize.prepare.equalize;
    ``equalize_relu6`` "bound" or "relu"). ``adaround`` (a data set, or True for
    ``calibration_data``) learns each weight's
    rounding on its first 128 samples, ``adaround_iterations`` steps per layer
    (lowbit.quantize.prepare.adaround; needs torch).
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
    check_not_overwriting(model, output)
    canonical, _ = canonicalize(load_float_model(model, "deploy"), input_shapes=input_shapes)
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
                canonical, first_samples(data, BIAS_CORRECTION_SAMPLES),
                int8_settings, weights=rounded)
        elif bias_correction is None and calibration_table is not None:
            canonical, note = _correct_from_table(
                canonical, read_table_or_given(calibration_table), int8_settings, rounded,
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
    check_model(built.model, "the converted model")

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
            check_samples(samples)
            reference = load_reference(test_reference, output_names(canonical))
        else:
            reference = run_samples(float_model, finite_samples(samples))
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
    table = required_table(calibration_table, canonical)
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


def required_table(calibration_table: str | Path | CalibrationTable | None,
                    canonical: onnx.ModelProto) -> CalibrationTable:
    """The INT8 calibration table, read and checked against the model; its absence is a
    usage error."""
    if calibration_table is None:
        raise UsageError("--quantize INT8 needs --calibration-table (run lowbit calibrate)")
    table = read_table_or_given(calibration_table)
    check_table_matches(table, canonical, calibration_table)
    return table


def read_table_or_given(table: str | Path | CalibrationTable) -> CalibrationTable:
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
                                samples=first_samples(data, settings.samples),
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
        table = required_table(calibration_table, canonical)
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
        table = required_table(calibration_table, canonical)
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
    measured = None if dynamic else required_table(calibration_table, canonical)
    data = open_dataset(smooth_data, input_specs(canonical))
    samples = list(first_samples(data, SMOOTH_SAMPLES))
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
    table = required_table(calibration_table, canonical)
    data = open_dataset(source, input_specs(canonical))
    count = table.num_samples if table.num_samples > 0 else len(data)
    maxima = measure_channel_max(canonical, first_samples(data, count)) \
        if settings.relu6 == "bound" else None
    equalized, report = equalize_layers(canonical, settings, channel_max=maxima)
    table, report = remeasure_ranges(equalized, table, first_samples(data, count),
                                     report)
    return equalized, table, report.summary()


def _adaround(canonical: onnx.ModelProto, dataset: str | Path, settings: QuantizeSettings,
              options: AdaRoundSettings,
              calibration_table: str | Path | CalibrationTable | None
              ) -> tuple[dict[str, WeightQuant], str]:
    """Learned rounding, each layer fitted to what it reads in the quantized model."""
    require_torch()  # before any data is read
    table = required_table(calibration_table, canonical)
    data = open_dataset(dataset, input_specs(canonical))
    samples = list(first_samples(data, ADAROUND_SAMPLES))
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
