"""Rebuild the INT8 model with some ops kept float: what the speed guard and the target
search both do to the model the prepare steps made.

    built = rebuild(context, state, {"conv3": "F32", "prelu3": "F32"})

The recipe's own qtable stays kept; kept ops get their biases back as they were before
bias correction, which corrected for a rounding they no longer do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import onnx

from lowbit.quantize.int8.qdq import NodeDecision
from lowbit.quantize.mixed.deploy import deploy_mixed
from lowbit.quantize.mixed.qtable import read_qtable, resolve_qtable
from lowbit.recipe.pipeline import Built, DeployContext, DeployState

TARGET_REASON = "kept F32 by deploy --target (the output missed the target with it INT8)"


def rebuild(context: DeployContext, state: DeployState, keep: Mapping[str, str],
            reason: str = TARGET_REASON) -> Built:
    """The INT8 model with ``keep`` float besides the recipe's qtable and the target's
    ops; ``reason``: what the model's report says kept ``keep`` (and an activation that
    joined one of them) float."""
    table = state.table
    assert table is not None  # static INT8: the recipe requires a table
    given = context.recipe.quantize_table
    users = dict(resolve_qtable(read_qtable(given), state.model) if given else {})
    kept = {**users, **state.kept_float, **keep}  # what the target kept float stays float
    model = restore_biases(state.model, state.uncorrected, kept)
    result = deploy_mixed(model, table.ranges, context.int8, kept, skipped=table.skipped,
                          weights=state.weights)
    left = tuple(_reason(d, users, state.kept_float, reason) for d in result.left_float)
    return Built(result.model, tuple(result.quantized), left, tuple(result.removed),
                 dict(result.float_tensors))


def _reason(decision: NodeDecision, users: Mapping[str, str], target: Mapping[str, str],
            reason: str) -> NodeDecision:
    """A node kept float by a step, not by the user's qtable, says which step."""
    if not decision.reason.endswith("by the qtable") or decision.name in users:
        return decision
    return replace(decision, reason=TARGET_REASON if decision.name in target else reason)


def restore_biases(model: onnx.ModelProto, uncorrected: onnx.ModelProto | None,
                   keep: Mapping[str, str]) -> onnx.ModelProto:
    """``model`` with the ``keep`` nodes' biases as they were before bias correction (a
    bias the correction added to a Conv without one is taken away again)."""
    if uncorrected is None:
        return model
    before_nodes = {n.name: n for n in uncorrected.graph.node if n.name in keep}
    before = {i.name: i for i in uncorrected.graph.initializer}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    restored: set[str] = set()
    for node in out.graph.node:
        old = before_nodes.get(node.name)
        if old is None or len(node.input) < 3:
            continue
        if len(old.input) < 3 or not old.input[2]:  # the correction added this bias
            del node.input[2:]
        elif old.input[2] in before:
            node.input[2] = old.input[2]
            restored.add(old.input[2])
    for init in out.graph.initializer:
        if init.name in restored:
            init.CopyFrom(before[init.name])
    used = {name for node in out.graph.node for name in node.input} | set(before)
    kept = [init for init in out.graph.initializer if init.name in used]  # added, now unused
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept)
    return out
