"""F16/BF16 (lowbit.quantize.floats): the whole graph converted, Softmax and friends
(or the recipe's keep_float) kept F32."""

from __future__ import annotations

from dataclasses import replace

from lowbit.quantize.floats.convert import FloatSettings, convert_float
from lowbit.quantize.int8.qdq import NodeDecision
from lowbit.recipe.pipeline import Built, DeployContext, DeployState, Step
from lowbit.recipe.recipe import Recipe


def applies(recipe: Recipe) -> bool:
    return recipe.precision in ("F16", "BF16")


def run(context: DeployContext, state: DeployState) -> DeployState:
    options = context.recipe.floats
    settings = FloatSettings(precision=context.recipe.precision, method=options.method,
                             keep_io_types=options.keep_io_types,
                             keep_float=options.keep_float)
    result = convert_float(state.model, settings)
    ops = {node.name: node.op_type for node in state.model.graph.node}
    converted = tuple(NodeDecision(name, ops.get(name, "")) for name in result.converted)
    kept = tuple(NodeDecision(k.name, k.op_type, k.reason) for k in result.kept_float)
    built = Built(result.model, converted, kept)
    cast = (f"{context.recipe.precision} by casting: the weights stay F32 in the file and are "
            f"cast at run time; --float-method full stores them as "
            f"{context.recipe.precision} (half the file)") if options.method == "cast" else None
    return replace(state, built=built).noted(
        cast,
        *(f"clamped {c.count} value(s) of {c.tensor} to the F16 range" for c in result.clamped))


STEP = Step("floats", applies, run)
