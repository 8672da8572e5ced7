"""AdaRound (lowbit.quantize.prepare.adaround): each weight's rounding learned layer by
layer on the first 128 samples of the recipe's AdaRound data; needs torch."""

from __future__ import annotations

from dataclasses import replace

from lowbit.quantize.prepare.adaround import AdaRoundSettings, require_torch
from lowbit.quantize.prepare.adaround import adaround as learn_rounding
from lowbit.recipe.pipeline import DeployContext, DeployState, Step
from lowbit.recipe.recipe import Recipe

ADAROUND_SAMPLES = 128


def applies(recipe: Recipe) -> bool:
    return recipe.precision == "INT8" and recipe.adaround is not None


def run(context: DeployContext, state: DeployState) -> DeployState:
    recipe = context.recipe
    assert recipe.adaround is not None and recipe.adaround_data is not None
    assert state.table is not None
    require_torch()  # before any data is read
    samples = context.samples(recipe.adaround_data, ADAROUND_SAMPLES, "adaround")
    weights, report = learn_rounding(state.model, samples, context.int8,
                                     AdaRoundSettings(iterations=recipe.adaround.iterations),
                                     ranges=state.table.ranges, skipped=state.table.skipped,
                                     memory_budget=context.budget)
    return replace(state, weights=weights).noted(report.summary())


STEP = Step("adaround", applies, run)
