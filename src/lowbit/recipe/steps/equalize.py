"""Cross-layer equalization of Conv pairs before INT8 (lowbit.quantize.prepare.equalize);
the ranges it changes are re-measured on the recipe's equalize data."""

from __future__ import annotations

from dataclasses import replace

from lowbit.quantize.prepare.equalize import (
    EqualizeSettings,
    equalize_layers,
    measure_channel_max,
    remeasure_ranges,
)
from lowbit.recipe.pipeline import DeployContext, DeployState, Step
from lowbit.recipe.recipe import Recipe


def applies(recipe: Recipe) -> bool:
    return recipe.precision == "INT8" and recipe.equalize is not None


def run(context: DeployContext, state: DeployState) -> DeployState:
    recipe = context.recipe
    assert recipe.equalize is not None and recipe.equalize_data is not None  # the recipe says
    assert state.table is not None  # static INT8: the recipe requires a table
    settings = EqualizeSettings(relu6=recipe.equalize.relu6)
    data = recipe.equalize_data
    count = state.table.num_samples if state.table.num_samples > 0 else \
        len(context.data(data))
    maxima = measure_channel_max(state.model, context.stream(data, count)) \
        if settings.relu6 == "bound" else None
    equalized, report = equalize_layers(state.model, settings, channel_max=maxima)
    if report.pairs == 0 and report.relu6_replaced == 0:  # nothing changed: keep the table
        return state.noted(report.summary())
    table, report = remeasure_ranges(equalized, state.table, context.stream(data, count),
                                     report, memory_budget=context.budget)
    return replace(state, model=equalized, table=table,
                   changed_inputs="--equalize").noted(report.summary())


STEP = Step("equalize", applies, run)
