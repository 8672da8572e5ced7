"""Graph passes by name, each with a one-line description.

    from lowbit.passes.registry import get_pass, list_passes, register_rules
    register_rules("remove_identity", "Identity nodes removed", [Rule(Op("Identity"), ...)])
    rewrites = get_pass("remove_identity").run(ir_model)     # in place; how many rewrites
    for p in list_passes():
        print(p.name, p.description)

A pass is either a list of rewrite rules (run by lowbit.passes.rewrite.apply_rules)
or a function of the onnx-ir model that returns how many rewrites it made (for
passes onnx-ir or onnxscript already do well). Registering a name twice is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass

from lowbit.errors import LowbitError, UsageError
from lowbit.passes.rewrite import Rule, apply_rules


@dataclass(frozen=True)
class GraphPass:
    """A named in-place rewrite of an onnx-ir model; ``run`` returns how many rewrites it made."""

    name: str
    description: str
    run: Callable[[ir.Model], int]


_PASSES: dict[str, GraphPass] = {}


def register(graph_pass: GraphPass) -> GraphPass:
    if graph_pass.name in _PASSES:
        raise LowbitError(f"a graph pass named {graph_pass.name!r} is already registered")
    if not graph_pass.name.isidentifier():
        raise LowbitError(f"graph pass names are identifiers (verb_object), "
                          f"found {graph_pass.name!r}")
    _PASSES[graph_pass.name] = graph_pass
    return graph_pass


def register_rules(name: str, description: str, rules: Sequence[Rule], *,
                   needs_shapes: bool = False) -> GraphPass:
    """Register a pass made of rewrite rules; ``needs_shapes``: infer shapes and types
    first (rules that compare shapes or element types)."""
    frozen = tuple(rules)

    def run(model: ir.Model) -> int:
        if needs_shapes:
            infer_ir_shapes(model)
        return apply_rules(model, frozen)

    return register(GraphPass(name, description, run))


def infer_ir_shapes(model: ir.Model) -> None:
    """Fill in value shapes and types in place (onnx's inference; left as is where it fails)."""
    ShapeInferencePass(strict_mode=False)(model)


def get_pass(name: str) -> GraphPass:
    try:
        return _PASSES[name]
    except KeyError:
        raise UsageError(f"unknown graph pass {name!r}; registered passes: "
                         f"{', '.join(sorted(_PASSES))}") from None


def list_passes() -> list[GraphPass]:
    """Every registered pass, in the order registered."""
    return list(_PASSES.values())
