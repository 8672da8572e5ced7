"""deploy of a model that arrives quantized (a QDQ model from ONNX Runtime's quantizer, NNCF
or lowbit.qat): keep its scales and validate it, or re-derive them with lowbit's rules.

    source = deploy_source("qdq.onnx", recipe)      # what deploy quantizes
    source.model is None                             # keep its scales: deploy_quantized
    result = deploy_quantized("qdq.onnx", output="out.onnx", recipe=recipe)

``lowbit deploy qdq.onnx --float-model f32.onnx --test-data x.npz -o out.onnx`` keeps the
model's own quantization: its scales are checked (zero, negative or non-finite ones are
refused, naming the tensor), the model is written with lowbit's provenance, validated
against the float original's outputs and explained (which ops ONNX Runtime runs as
integer kernels). With ``--requantize`` its Q/DQ are stripped
(lowbit.quantize.int8.imported.strip_qdq: weights dequantized, folded Relus restored)
and the float graph goes through lowbit's own recipe with ``--calibration-table``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from lowbit.api.common import check_model, load_float_model
from lowbit.errors import LowbitError, RecipeError, UsageError
from lowbit.graph import check_qdq_params, declared_precision, is_qdq, precision_of
from lowbit.io.model import check_loaded, load_model, save_model
from lowbit.quantize.int8.imported import describe_qdq, strip_qdq, take_float_weights
from lowbit.quantize.int8.qdq import NodeDecision
from lowbit.recipe.options import keyword_for
from lowbit.recipe.provenance import stamp
from lowbit.recipe.recipe import Recipe

if TYPE_CHECKING:
    from lowbit.api.deploy import DeployResult

KEEP_STEP = "keep_scales"


@dataclass(frozen=True)
class Source:
    """The float graph deploy quantizes (None: the model keeps its own quantization) and
    what reading it did."""

    model: onnx.ModelProto | None
    notes: tuple[str, ...] = ()


def arrival_options(model: str | Path, recipe: Recipe | None, options: dict[str, Any]
                    ) -> tuple[dict[str, Any], onnx.ModelProto | None]:
    """deploy's keywords with ``keep_scales=True`` added for a QDQ model, unless
    ``requantize`` (or ``keep_scales``) is given: such a model keeps its own scales and
    needs no calibration table; and the model as read (unchecked, for deploy_source; None
    when it was not read or cannot be)."""
    if not Path(model).is_file():
        return options, None
    try:
        proto = load_model(model, check=False)
    except LowbitError:
        return options, None  # deploy reads it again and says what is wrong
    given = {**({} if recipe is None else {"requantize": recipe.requantize,
                                           "keep_scales": recipe.keep_scales}), **options}
    if given.get("requantize") or given.get("keep_scales") or not is_qdq(proto):
        return options, proto
    return {**options, "keep_scales": True}, proto


def deploy_source(model: str | Path, recipe: Recipe, read: onnx.ModelProto | None = None
                  ) -> Source:
    """The model deploy starts from: a float model as it is, a QDQ model stripped to float
    with ``recipe.requantize``, or None with ``recipe.keep_scales``; other precisions are
    refused. ``read``: the model as arrival_options read it (checked here, not read again)."""
    if read is None:
        proto = load_model(model)
    else:
        check_loaded(read, model)
        proto = read
    precision = precision_of(proto)
    if precision == "F32":
        for which, given in (("requantize", recipe.requantize),
                             ("keep_scales", recipe.keep_scales)):
            if given:
                raise RecipeError(f"{{{which}}} applies to a model that arrives quantized; "
                                  f"{model} is a float model").renamed(keyword_for)
        return Source(proto)
    if precision not in ("INT8", "MIXED") or not is_qdq(proto):
        raise UsageError(f"{model} is already {declared_precision(proto)}, not a float F32 "
                         "or QDQ model; deploy takes the float model (e.g. transform's "
                         "model.f32.onnx) or a QDQ one")
    check_qdq_params(proto, str(model))
    if not recipe.requantize:
        if not recipe.keep_scales:
            raise RecipeError(f"{model} arrives quantized: deploy keeps its scales "
                              "({keep_scales}) or re-derives them ({requantize})"
                              ).renamed(keyword_for)
        return Source(None)
    stripped = strip_qdq(proto)
    restored = f"; Relu restored after {', '.join(stripped.relus)}" if stripped.relus else ""
    note = (f"requantize: {model} stripped to float ({stripped.pairs} Q/DQ pairs removed, "
            f"{stripped.constants} weights, biases and constants dequantized{restored}), then "
            "quantized with lowbit's rules")
    float_model = recipe.validation.float_model
    if not recipe.float_weights or float_model is None:
        return Source(stripped.model, (note,))
    weights = take_float_weights(stripped, load_float_model(float_model, "deploy"))
    if not weights.taken:
        raise RecipeError(f"{{float_weights}}: no dequantized weight of {model} matches a "
                          f"float weight of {float_model} (op name, input and shape, values "
                          "within rounding); is it the model this one was quantized from?"
                          ).renamed(keyword_for)
    return Source(weights.model, (note, f"float weights: {weights.note(str(float_model))}"))


def deploy_quantized(model: str | Path, *, output: str | Path, recipe: Recipe) -> DeployResult:
    """Write ``model`` (QDQ, scales checked) with its provenance, its quantization kept;
    validate it against ``recipe.validation`` (the float original's outputs, or reference
    outputs) and explain which of its ops run as integer kernels."""
    from lowbit.api.deploy import DeployResult, _Checks, _gate_inputs

    proto = load_model(model)
    check_qdq_params(proto, str(model))
    check_model(proto, str(model))
    summary = describe_qdq(proto)
    gate = recipe.validation
    if gate.data is not None and gate.float_model is None and gate.reference is None:
        raise RecipeError("{validation.data} validates a model that arrives quantized "
                          f"against its float original: give {{validation.float_model}} "
                          f"(or {{validation.reference}}); {model} alone is no "
                          "reference").renamed(keyword_for)
    samples, reference = _gate_inputs(recipe, proto)
    checked = _Checks(recipe, output, samples, reference)
    path = save_model(stamp(proto, recipe, source=model, steps=(KEEP_STEP,)), output,
                      check=checked.run)
    quantized = tuple(NodeDecision(op.name, op.op_type) for op in summary.quantized)
    left = tuple(NodeDecision(op.name, op.op_type, op.reason) for op in summary.left_float)
    problem = None if quantized else (
        f"{model} arrives quantized, but none of its {len(summary.ops)} conv/matmul/gemm "
        "reads integer inputs" if summary.ops else None)
    return DeployResult(path, precision_of(proto), quantized, left, (), {},
                        checked.validation, checked.advice, (summary.note(),), recipe,
                        (KEEP_STEP,), problem)
