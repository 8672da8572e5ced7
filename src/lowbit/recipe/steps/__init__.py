"""The deploy steps, in the order they run. Adding a preparation algorithm is one file
here and one line in STEPS.

    STEPS                       # smooth, equalize, adaround, bias_correction, then a quantizer
    step_names()                # ("smooth", "equalize", ...)

Each step module defines ``STEP = Step(name, applies, run)`` (lowbit.recipe.pipeline).
The prepare steps change the float model (and the table where they change tensors);
exactly one quantizer step (int8, dynamic, w4, floats) applies to a recipe; the speed
step then keeps float what runs slower in INT8 than in float on this machine.
"""

from __future__ import annotations

from lowbit.recipe.pipeline import Step
from lowbit.recipe.steps import (
    adaround,
    bias_correction,
    dynamic,
    equalize,
    floats,
    int8,
    smooth,
    speed,
    target,
    w4,
)

STEPS: tuple[Step, ...] = (
    smooth.STEP,
    equalize.STEP,
    adaround.STEP,
    bias_correction.STEP,
    int8.STEP,
    target.STEP,
    speed.STEP,
    dynamic.STEP,
    w4.STEP,
    floats.STEP,
)


def step_names() -> tuple[str, ...]:
    return tuple(step.name for step in STEPS)
