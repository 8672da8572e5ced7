"""Reshape chains collapsed and Reshapes to the input's own shape removed (rewrite rules).

    rewrites = get_pass("collapse_reshapes").run(ir_model)

``Reshape(Reshape(x, s1), s2)`` is ``Reshape(x, s2)`` when ``s2`` is a constant that
does not copy dimensions from the inner result (no 0 entries, unless the outer
Reshape has ``allowzero=1``). ``Reshape(x, s)`` is ``x`` when ``s`` is constant and
resolves to ``x``'s own shape, dimension by dimension: a 0 copies it, an equal size
matches it, and one -1 matches when every other dimension already does. Flatten,
Squeeze and Unsqueeze are left as they are.
"""

from __future__ import annotations

import numpy as np

from lowbit.passes.registry import register_rules
from lowbit.passes.rewrite import Match, Op, Replacement, Rule, clone_node, constant


def _collapse_chain(m: Match) -> Replacement | None:
    outer, inner = m.root, m["inner"]
    shape = constant(outer.inputs[1])
    if shape is None or inner.inputs[0] is None:
        return None
    if not outer.attributes.get_int("allowzero", 0) and np.any(shape == 0):
        return None  # a 0 copies a dimension of the inner result, not of x
    node = clone_node(outer, [inner.inputs[0], outer.inputs[1]])
    return Replacement.outputs(outer, node.outputs, [node])


def _drop_same_shape(m: Match) -> Replacement | None:
    node = m.root
    data = node.inputs[0]
    shape = constant(node.inputs[1])
    if data is None or data.shape is None or shape is None or shape.ndim != 1:
        return None
    dims = list(data.shape)
    if len(dims) != shape.size:
        return None
    allowzero = node.attributes.get_int("allowzero", 0)
    unresolved = 0
    for dim, size in zip(dims, shape.tolist(), strict=True):
        if size == 0 and not allowzero:
            continue  # copies this very dimension
        if isinstance(dim, int) and size == dim:
            continue
        if size == -1:
            unresolved += 1
            continue
        return None
    if unresolved > 1:
        return None
    return Replacement(((node.outputs[0], data),))


register_rules(
    "collapse_reshapes",
    "Reshape of a Reshape reads the first input; Reshape to the input's own shape removed",
    [Rule(Op("Reshape", inputs={0: Op("Reshape", name="inner", exclusive=False)}),
          _collapse_chain),
     Rule(Op("Reshape"), _drop_same_shape)],
    needs_shapes=True)


