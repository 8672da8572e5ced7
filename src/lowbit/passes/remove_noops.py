"""Remove nodes that compute nothing at inference time (rewrite rules).

    removed = remove_identity(ir_model)   # Identity nodes
    removed = remove_dropout(ir_model)    # Dropout in inference (mask output unused)
    removed = remove_noop_casts(ir_model) # Cast to the type its input already has

Each is also a registered pass of the same name (lowbit.passes.registry). The node's
output is replaced by its input; a graph output keeps its name (its input takes it
over), and where that cannot be (the input is a graph input, an initializer or
another graph output) the node stays.
"""

from __future__ import annotations

import onnx_ir as ir

from lowbit.passes.registry import get_pass, register_rules
from lowbit.passes.rewrite import Match, Op, Replacement, Rule, constant, keeps_names


def _forward_input(m: Match) -> Replacement | None:
    data = m.root.inputs[0]
    return None if data is None else Replacement(((m.root.outputs[0], data),))


def _drop_dropout(m: Match) -> Replacement | None:
    node = m.root
    if len(node.outputs) > 1 and (node.outputs[1].uses() or node.outputs[1].is_graph_output()):
        return None  # the mask is read
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        training = constant(node.inputs[2])
        if training is None or bool(training.reshape(-1)[0]):
            return None  # training mode, or not known to be off
    data, output = node.inputs[0], node.outputs[0]
    if data is None:
        return None
    if keeps_names(output, data):
        return Replacement(((output, data),))
    # The input cannot take over a graph output's name: keep both names through an Identity.
    identity = ir.Node("", "Identity", [data], name=node.name)
    return Replacement(((output, identity.outputs[0]),), (identity,))


def _drop_noop_cast(m: Match) -> Replacement | None:
    data = m.root.inputs[0]
    target = m.root.attributes.get_int("to", 0)
    if data is None or data.dtype is None or int(data.dtype) != target:
        return None
    return Replacement(((m.root.outputs[0], data),))


register_rules("remove_identity", "Identity nodes removed (their input takes their place)",
               [Rule(Op("Identity"), _forward_input)])
register_rules("remove_dropout", "inference-mode Dropout removed (mask unused, training off)",
               [Rule(Op("Dropout"), _drop_dropout)])
register_rules("remove_noop_casts", "Cast to the type its input already has removed",
               [Rule(Op("Cast"), _drop_noop_cast)],
    needs_shapes=True)


def remove_identity(model: ir.Model) -> int:
    """Remove Identity nodes; returns how many went."""
    return get_pass("remove_identity").run(model)


def remove_dropout(model: ir.Model) -> int:
    """Replace inference-mode Dropout by its input (or an Identity keeping both names)."""
    return get_pass("remove_dropout").run(model)


def remove_noop_casts(model: ir.Model) -> int:
    """Remove Cast nodes whose input already has the target type."""
    return get_pass("remove_noop_casts").run(model)
