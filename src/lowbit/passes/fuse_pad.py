"""A constant zero Pad on the spatial axes folds into the Conv it feeds (rewrite rule).

    rewrites = get_pass("fuse_pad_into_conv").run(ir_model)

``Conv(Pad(x, pads))`` with ``mode="constant"``, a zero (or absent) pad value and
constant non-negative pads that leave the batch and channel axes alone is one Conv
whose ``pads`` grow by those amounts (exporters write TF-style "same" padding this
way: torch's F.pad before a Conv, once fold_constants has evaluated the pads). A
Conv with ``auto_pad`` other than NOTSET is left alone.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from lowbit.passes.registry import register_rules
from lowbit.passes.rewrite import Match, Op, Replacement, Rule, clone_node, constant


def _spatial_pads(pad: ir.Node, rank: int) -> list[int] | None:
    """[begin..., end...] for the spatial axes, or None when Pad is not a zero spatial pad."""
    if pad.attributes.get_string("mode", "constant") != "constant":
        return None
    given_pads = constant(pad.inputs[1]) if len(pad.inputs) > 1 else None
    if given_pads is None:
        return None
    if len(pad.inputs) > 2 and pad.inputs[2] is not None:
        fill = constant(pad.inputs[2])
        if fill is None or np.any(fill != 0):
            return None
    pads = [int(p) for p in np.asarray(given_pads).reshape(-1)]
    axes = list(range(rank))
    if len(pad.inputs) > 3 and pad.inputs[3] is not None:
        given = constant(pad.inputs[3])
        if given is None:
            return None
        axes = [int(a) + rank if a < 0 else int(a) for a in np.asarray(given).reshape(-1)]
    if len(pads) != 2 * len(axes):
        return None
    begin, end = [0] * rank, [0] * rank
    for i, axis in enumerate(axes):
        if not 0 <= axis < rank:
            return None
        begin[axis], end[axis] = pads[i], pads[i + len(axes)]
    if any(p < 0 for p in begin + end) or any(begin[:2]) or any(end[:2]):
        return None
    return begin[2:] + end[2:]


def _fuse(m: Match) -> Replacement | None:
    conv, pad = m.root, m["pad"]
    weight = conv.inputs[1] if len(conv.inputs) > 1 else None
    if weight is None or weight.shape is None or pad.inputs[0] is None:
        return None
    if conv.attributes.get_string("auto_pad", "NOTSET") != "NOTSET":
        return None
    rank = len(weight.shape)  # the data has the weight's rank: (N, C, spatial...)
    extra = _spatial_pads(pad, rank)
    if extra is None:
        return None
    old = list(conv.attributes.get_ints("pads", [0] * (2 * (rank - 2))))
    pads = [a + b for a, b in zip(old, extra, strict=True)]
    node = clone_node(conv, [pad.inputs[0], *conv.inputs[1:]],
                      attributes={"pads": ir.AttrInt64s("pads", pads)})
    return Replacement.outputs(conv, node.outputs, [node])


register_rules(
    "fuse_pad_into_conv", "constant zero Pad on the spatial axes folded into the Conv it feeds",
    [Rule(Op("Conv", inputs={0: Op("Pad", name="pad")}), _fuse)])
