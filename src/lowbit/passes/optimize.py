"""Run graph passes by name and report what each did.

    from lowbit.passes import optimize, list_passes, DEFAULT_PASSES
    result = optimize(onnx_model)                         # DEFAULT_PASSES
    result = optimize(onnx_model, ["fold_constants", "fold_batchnorm"])
    result.model                                          # a new onnx.ModelProto
    for step in result.steps:                             # one per pass, in order run
        print(step.name, step.nodes_before, step.nodes_after, step.rewrites)
    print(result.summary())                               # "212 → 140 nodes: ..."

The caller's model is not changed. After the passes the graph is sorted, every
node gets a unique name (unnamed ones are named after their op type), and shapes
are inferred again. An unknown pass name is a UsageError listing the registered
ones (see :func:`list_passes`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import onnx
import onnx_ir as ir

from lowbit.passes.finish import finish
from lowbit.passes.registry import GraphPass, get_pass, list_passes

log = logging.getLogger(__name__)

# Order matters: lifting and folding first expose constants to the later rules;
# the clean-ups let BatchNormalization and affine ops meet their Conv; dead-node
# removal clears what the rewrites left. fuse_horizontal is not a default: it did
# not speed ONNX Runtime up in our measurements (BENCHMARKS.md, issue 5).
DEFAULT_PASSES: tuple[str, ...] = (
    "lift_constants",
    "fold_constants",
    "fuse_pad_into_conv",
    "remove_identity",
    "remove_dropout",
    "remove_noop_casts",
    "collapse_reshapes",
    "eliminate_concat",
    "eliminate_common_subexpressions",
    "fold_batchnorm",
    "fold_affine",
    "remove_dead_nodes",
)


@dataclass(frozen=True)
class PassStep:
    """What one pass did: node counts around it and how many rewrites it made."""

    name: str
    nodes_before: int
    nodes_after: int
    rewrites: int


@dataclass(frozen=True)
class OptimizeResult:
    """The optimised model and one step per pass run."""

    model: onnx.ModelProto
    steps: tuple[PassStep, ...]

    @property
    def nodes_before(self) -> int:
        return self.steps[0].nodes_before if self.steps else len(self.model.graph.node)

    @property
    def nodes_after(self) -> int:
        return len(self.model.graph.node)

    def summary(self) -> str:
        """One line: total node counts, then each pass that changed something."""
        changed = [f"{s.name} {s.rewrites}" for s in self.steps if s.rewrites]
        return (f"{self.nodes_before} → {self.nodes_after} nodes"
                + (": " + ", ".join(changed) if changed else ""))


def resolve_passes(passes: Sequence[str] | str | None) -> list[GraphPass]:
    """The passes named (a list, or one comma-separated string); None: DEFAULT_PASSES."""
    if passes is None:
        names: Sequence[str] = DEFAULT_PASSES
    elif isinstance(passes, str):
        names = [n.strip() for n in passes.split(",") if n.strip()]
    else:
        names = [n.strip() for n in passes]
    return [get_pass(name) for name in names]


def optimize_ir(model: ir.Model, passes: Sequence[str] | str | None = None
                ) -> tuple[PassStep, ...]:
    """Run ``passes`` on ``model`` in place (no sorting or naming afterwards)."""
    steps = []
    for graph_pass in resolve_passes(passes):
        before = len(model.graph)
        rewrites = graph_pass.run(model)
        steps.append(PassStep(graph_pass.name, before, len(model.graph), rewrites))
        log.info("pass %s: %d → %d nodes, %d rewrite(s)", graph_pass.name, before,
                 len(model.graph), rewrites)
    return tuple(steps)


def optimize(model: onnx.ModelProto, passes: Sequence[str] | str | None = None
             ) -> OptimizeResult:
    """Apply the named passes (default DEFAULT_PASSES) to a copy of ``model``."""
    chosen = resolve_passes(passes)  # a bad name fails before any work
    ir_model = ir.from_proto(model)
    steps = optimize_ir(ir_model, [p.name for p in chosen])
    out = finish(ir_model)
    result = OptimizeResult(out, steps)
    log.info("optimize: %s", result.summary())
    return result


__all__ = ["DEFAULT_PASSES", "OptimizeResult", "PassStep", "list_passes", "optimize",
           "optimize_ir", "resolve_passes"]
