"""Static INT8 of any model: the entry every deploy, search and check goes through.

    result, notes = quantize_int8(model, table.ranges, QuantizeSettings())

A transformer (lowbit.quantize.int8.scope) keeps its LayerNorm, Softmax, GELU and
elementwise ops float and quantizes its linear layers; any other graph gets the plain
per-op rules (lowbit.quantize.int8.qdq).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import onnx

from lowbit.calibration.observers import TensorRange
from lowbit.quantize.int8.embeddings import quantize_embeddings
from lowbit.quantize.int8.params import WeightQuant
from lowbit.quantize.int8.qdq import NodeDecision, QuantizeResult, quantize_qdq
from lowbit.quantize.int8.scope import (
    keep_bias_adds_apart,
    transformer_scope,
    unshare_float_readers,
)
from lowbit.quantize.int8.settings import QuantizeSettings


def quantize_int8(model: onnx.ModelProto, ranges: Mapping[str, TensorRange],
                  settings: QuantizeSettings, *, skipped: Mapping[str, str] | None = None,
                  weights: Mapping[str, WeightQuant] | None = None,
                  keep: Mapping[str, str] | None = None
                  ) -> tuple[QuantizeResult, list[str]]:
    """INT8 QDQ for any graph: a transformer gets the scope above, other graphs the plain
    rewrite (lowbit.quantize.int8.qdq). ``keep`` (node → precision, a qtable's) leaves more
    nodes out of INT8, inside the transformer scope too. Returns the result and notes for
    the deploy report."""
    scope = transformer_scope(model, quantize_attention=settings.quantize_attention,
                              ranges=ranges, max_abs_range=settings.max_abs_range)
    if scope is None:
        return quantize_qdq(model, ranges, settings, skipped=skipped, weights=weights,
                            keep=keep), []
    model = keep_bias_adds_apart(model, scope)
    result = quantize_qdq(model, ranges, settings, skipped=skipped,
                          keep={**scope.keep_float, **(keep or {})}, weights=weights)
    unshare_float_readers(result.model, {d.name for d in result.quantized})
    embeddings = set(quantize_embeddings(result.model))
    left = [NodeDecision(d.name, d.op_type, scope.keep_float.get(d.name, d.reason))
            if d.reason.endswith("by the qtable") or d.reason.startswith("feeds only ops")
            else d for d in result.left_float if d.name not in embeddings]
    quantized = [*result.quantized, *(NodeDecision(n, "Gather") for n in sorted(embeddings))]
    return replace(result, left_float=left, quantized=quantized), \
        [scope.note(settings.quantize_attention, len(embeddings))]
