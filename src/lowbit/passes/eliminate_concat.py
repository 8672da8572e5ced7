"""Concat elimination where the reader can take the parts (rewrite rules).

    rewrites = get_pass("eliminate_concat").run(ir_model)

* ``Concat(x)`` of one input is ``x``.
* ``Split(Concat(a, b, c), axis)`` on the Concat's axis, with split sizes equal to
  the parts' sizes there (static), gives back ``a, b, c``: each Split output is
  replaced by its part. The Concat stays only when something else reads it.
* ``Concat(…, Split(x)[0], …, Split(x)[n-1], …)`` on the Split's axis reads ``x`` in
  place of the run of all the Split's outputs in order (horizontal fusion leaves
  these); the Split stays only when something else reads it.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from lowbit.passes.registry import register_rules
from lowbit.passes.rewrite import Match, Op, Replacement, Rule, clone_node, constant


def _single_input(m: Match) -> Replacement | None:
    inputs = [v for v in m.root.inputs if v is not None]
    if len(inputs) != 1:
        return None
    return Replacement(((m.root.outputs[0], inputs[0]),))


def _split_of_concat(m: Match) -> Replacement | None:
    split, concat = m.root, m["concat"]
    parts = [p for p in concat.inputs if p is not None]
    shapes = [p.shape for p in parts if p.shape is not None]
    if len(shapes) != len(concat.inputs) or not shapes:
        return None
    rank = len(shapes[0])
    axis = _axis(concat.attributes.get_int("axis", 0), rank)
    split_axis = _axis(split.attributes.get_int("axis", 0), rank)
    if axis is None or axis != split_axis:
        return None
    sizes = [shape[axis] for shape in shapes]
    if not all(isinstance(s, int) for s in sizes):
        return None
    wanted = _split_sizes(split, sum(sizes))  # type: ignore[arg-type]
    if wanted != sizes or len(split.outputs) != len(parts):
        return None
    return Replacement(tuple(zip(split.outputs, parts, strict=True)))


def _concat_of_split(m: Match) -> Replacement | None:
    concat = m.root
    inputs = list(concat.inputs)
    merged: list[ir.Value | None] = []
    i = 0
    while i < len(inputs):
        value = inputs[i]
        split = value.producer() if value is not None else None
        if (split is not None and split.op_type == "Split" and value is split.outputs[0]
                and split.inputs[0] is not None and _same_axis(concat, split)
                and inputs[i:i + len(split.outputs)] == list(split.outputs)):
            merged.append(split.inputs[0])
            i += len(split.outputs)
        else:
            merged.append(value)
            i += 1
    if len(merged) == len(inputs):
        return None
    if len(merged) == 1 and merged[0] is not None:
        return Replacement(((concat.outputs[0], merged[0]),))
    node = clone_node(concat, merged)
    return Replacement.outputs(concat, node.outputs, [node])


def _same_axis(concat: ir.Node, split: ir.Node) -> bool:
    concat_axis = concat.attributes.get_int("axis", 0)
    split_axis = split.attributes.get_int("axis", 0)
    if concat_axis == split_axis:
        return True
    data = split.inputs[0]
    if data is None or data.shape is None:
        return False  # one axis counts from the end: the rank decides
    rank = len(data.shape)
    axis = _axis(concat_axis, rank)
    return axis is not None and axis == _axis(split_axis, rank)


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
    "Concat of one input removed; Split undoing a Concat (and Concat undoing a Split) bypassed",
    [Rule(Op("Concat"), _single_input),
     Rule(Op("Concat"), _concat_of_split),
     Rule(Op("Split", inputs={0: Op("Concat", name="concat", exclusive=False)}),
          _split_of_concat)],
    needs_shapes=True)
