"""Concat elimination where the reader can take the parts (rewrite rules).

    rewrites = get_pass("eliminate_concat").run(ir_model)

* ``Concat(x)`` of one input is ``x``.
* ``Split(Concat(a, b, c), axis)`` on the Concat's axis, with split sizes equal to
  the parts' sizes there (static), gives back ``a, b, c``: each Split output is
  replaced by its part. The Concat stays only when something else reads it.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from lowbit.passes.registry import register_rules
from lowbit.passes.rewrite import Match, Op, Replacement, Rule, constant


def _single_input(m: Match) -> Replacement | None:
    inputs = [v for v in m.root.inputs if v is not None]
    if len(inputs) != 1:
        return None
    return Replacement(((m.root.outputs[0], inputs[0]),))


def _split_of_concat(m: Match) -> Replacement | None:
    split, concat = m.root, m["concat"]
    parts = list(concat.inputs)
    if any(p is None or p.shape is None for p in parts):
        return None
    rank = len(parts[0].shape)  # type: ignore[union-attr]
    axis = _axis(concat.attributes.get_int("axis", 0), rank)
    split_axis = _axis(split.attributes.get_int("axis", 0), rank)
    if axis is None or axis != split_axis:
        return None
    sizes = [p.shape[axis] for p in parts]  # type: ignore[union-attr]
    if not all(isinstance(s, int) for s in sizes):
        return None
    wanted = _split_sizes(split, sum(sizes))  # type: ignore[arg-type]
    if wanted != sizes or len(split.outputs) != len(parts):
        return None
    return Replacement(tuple(zip(split.outputs, parts, strict=True)))  # type: ignore[arg-type]


def _axis(axis: int, rank: int) -> int | None:
    axis = axis + rank if axis < 0 else axis
    return axis if 0 <= axis < rank else None


def _split_sizes(split: ir.Node, total: int) -> list[int] | None:
    if len(split.inputs) > 1 and split.inputs[1] is not None:
        sizes = constant(split.inputs[1])
        return None if sizes is None else [int(s) for s in np.asarray(sizes).reshape(-1)]
    attr = split.attributes.get("split")
    if attr is not None:
        return [int(s) for s in attr.as_ints()]
    count = len(split.outputs)
    chunk = math.ceil(total / count)
    return [chunk] * (count - 1) + [total - chunk * (count - 1)]


register_rules(
    "eliminate_concat",
    "Concat of one input removed; Split undoing a Concat replaced by the Concat's inputs",
    [Rule(Op("Concat"), _single_input),
     Rule(Op("Split", inputs={0: Op("Concat", name="concat", exclusive=False)}),
          _split_of_concat)])
