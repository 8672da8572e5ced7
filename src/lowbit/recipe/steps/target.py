"""deploy --target: climb from the defaults through the cheapest fixes until the model
agrees with float as asked, and say what each rung bought.

    target cos=0.995 on 32 calibration samples: defaults 0.98595; + AdaRound 0.98710;
    + 3 ops F32 (conv3, prelu3, conv4) 0.99612: met (21 s, 9 mixed models measured)

The rungs: the defaults (per-channel weights, auto ranges, bias correction, and for a
transformer SmoothQuant, as the recipe already builds them); AdaRound where torch is
installed and the recipe has not asked for it (300 steps a layer: the cheap version);
then the fewest ops kept float, found by lowbit.quantize.mixed.search: ops ranked once
by the network output's sensitivity when each alone stays float (measured on graph
suffixes from cached activations), then a galloping search and bisection over the
ranking, each candidate measured on the samples, and a short pruning pass. Every
metric is measured against the float model on the first 32 samples of the recipe's
calibration data (the validation data stays for the gate). A target that cannot be met
leaves the closest model and says which ops limit it; deploy then exits 1.

With the speed guard on (the default), a model whose defaults miss the target is first
put to the guard (lowbit.recipe.steps.speed): where no INT8 configuration runs at float's
speed on this CPU, the guard would keep every op float after any search, and the F32 model
meets every target (each is measured against it), so nothing is searched (the 48x192
text-direction net: --target auto had spent 28 s on AdaRound and the ranking, to end F32).
Where INT8 gains, the search runs as above and the guard then times its result.

On a terminal a progress bar shows each phase (the defaults scored, the ranking, then
each mixed model measured: the count goes up), and every rung and every mixed model
measured is logged at INFO.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx

from lowbit.analysis.labels import load_labels
from lowbit.errors import DatasetError
from lowbit.progress import progress_bar
from lowbit.quantize.int8.scope import real_token_masks
from lowbit.quantize.mixed.search import Target, output_cosine, output_sqnr, search_mixed
from lowbit.recipe.pipeline import Built, DeployContext, DeployState, Step, run_steps
from lowbit.recipe.recipe import AdaRounding, Recipe
from lowbit.recipe.steps import speed
from lowbit.recipe.steps.keep_float import rebuild
from lowbit.runtime.ort import create_session

log = logging.getLogger(__name__)

TARGET_SAMPLES = 32
ADAROUND_ITERATIONS = 300
PRUNE_TRIALS = 6
# --target auto (bench/dense_baseline.py measures both on the dense stand-ins' REPORT split)
DENSE_TARGET = "cos=0.995"
VECTOR_TARGET = "cos=0.999"


def applies(recipe: Recipe) -> bool:
    return recipe.static_int8 and recipe.target is not None


def run(context: DeployContext, state: DeployState) -> DeployState:
    recipe = context.recipe
    assert recipe.target is not None and recipe.calibration_data is not None
    assert state.built is not None and state.table is not None
    started = time.perf_counter()
    goal = Target.parse(auto_target(context.float_model) if recipe.target == "auto"
                        else recipe.target)
    samples = context.samples(recipe.calibration_data, TARGET_SAMPLES, "--target")
    with progress_bar(f"deploy --target {goal}: the defaults scored", True, None):
        score = _Scorer(context.float_model, samples, goal, recipe.calibration_data)
        rungs = [f"defaults {score(state.built.model):.6g}"]
    log.info("target %s: %s", goal, rungs[-1])
    if goal.holds(score.last):
        return state.noted(_note(goal, samples, rungs, "met by the defaults", started))
    if speed.applies(recipe):
        # Where no INT8 configuration runs at float's speed here, the guard keeps the model
        # F32 after any search: asked first, it spares the search (every target is met by
        # F32, which the targets are measured against).
        guarded = speed.run(context, state)
        if guarded.float_for_speed:
            rungs.append("F32 (no INT8 gain on this CPU, see the speed note)")
            return guarded.noted(_note(goal, samples, rungs, "met by the F32 model; nothing "
                                       "searched", started))
    best = state
    if recipe.adaround is None and importlib.util.find_spec("torch") is not None:
        rounded = _with_adaround(context)
        assert rounded.built is not None
        rungs.append(f"+ AdaRound {score(rounded.built.model):.6g}")
        log.info("target %s: %s", goal, rungs[-1])
        if goal.holds(score.last):
            return rounded.noted(_note(goal, samples, rungs, "met", started))
        if score.better(score.last, score.of(state.built.model)):
            best = rounded
    table = best.table
    assert table is not None
    with progress_bar(f"deploy --target {goal}: ops ranked, then mixed models measured",
                      True, None) as advance:

        def candidate(keep: Mapping[str, str]) -> onnx.ModelProto:
            advance(1)  # one more mixed model measured
            return rebuild(context, best, keep).model

        log.info("target %s: ranking the ops by output sensitivity", goal)
        search = search_mixed(best.model, table.ranges, context.int8, samples, goal,
                              labels=score.labels, skipped=table.skipped,
                              reference=context.float_model, prune=PRUNE_TRIALS,
                              build=candidate)
    ops = search.float_ops
    kept = {name: "F32" for name in ops}
    built: Built = rebuild(context, best, kept)
    best = replace(best, kept_float={**best.kept_float, **kept})  # the speed guard keeps them
    shown = ", ".join(ops[:6]) + (f", … (+{len(ops) - 6})" if len(ops) > 6 else "")
    rungs.append(f"+ {len(ops)} op(s) F32 ({shown}) {score(built.model):.6g}")
    measured = len(search.path)
    if search.met:
        verdict = f"met ({measured} mixed models measured)"
        return replace(best, built=built).noted(_note(goal, samples, rungs, verdict, started))
    limits = [row.name for row in (search.ranking.rows if search.ranking else [])][:5]
    verdict = (f"NOT met even with every candidate op F32 ({measured} mixed models measured)"
               f"; the ops that limit it most: {', '.join(limits) or 'none ranked'}")
    return replace(best, built=built,
                   unmet=f"target {goal} not met: best {score.last:.6g} with {len(ops)} ops "
                   f"F32; limited most by {', '.join(limits) or 'ops outside the search'}"
                   ).noted(_note(goal, samples, rungs, verdict, started))


def auto_target(model: onnx.ModelProto) -> str:
    """``--target auto``: DENSE_TARGET where an output is a dense map (two spatial
    dimensions larger than 1, as a segmentation, heat or box-regression map), else
    VECTOR_TARGET (class scores, embeddings), whose INT8 cosine is usually closer to 1."""
    for output in model.graph.output:
        dims = [d.dim_value for d in output.type.tensor_type.shape.dim]
        spatial = [d for d in dims[2:] if d != 1]  # symbolic dims (0) count as spatial
        if len(dims) >= 4 and len(spatial) >= 2:
            return DENSE_TARGET
    return VECTOR_TARGET


def _with_adaround(context: DeployContext) -> DeployState:
    """The recipe's prepare and INT8 steps again, with AdaRound (short) added."""
    from lowbit.recipe.steps import STEPS

    recipe = replace(context.recipe, target=None, speed="off",
                     adaround=AdaRounding(iterations=ADAROUND_ITERATIONS))
    sub = DeployContext(recipe, context.float_model, context.table, context.parallel)
    return run_steps(sub, tuple(s for s in STEPS if s.name not in ("target", "speed")))


def _note(goal: Target, samples: Sequence[dict[str, np.ndarray]], rungs: list[str],
          verdict: str, started: float) -> str:
    seconds = time.perf_counter() - started
    return (f"target {goal} on {len(samples)} calibration samples: {'; '.join(rungs)}: "
            f"{verdict} in {seconds:.0f} s")


class _Scorer:
    """The target's metric of a model against the float model on the samples."""

    def __init__(self, float_model: onnx.ModelProto, samples: Sequence[dict[str, np.ndarray]],
                 goal: Target, data: Path) -> None:
        self.samples, self.goal = samples, goal
        self.reference = self._run(float_model)
        self.masks = real_token_masks(float_model, samples)
        self.labels = None
        if goal.metric == "top1-drop":
            try:
                self.labels = load_labels(None, data, len(samples))[:len(samples)]
            except DatasetError as err:
                raise DatasetError(f"{{target}} {goal} needs labels in the calibration data "
                                   f"(a 'label' array): {err}") from None
        self.last = float("nan")
        self._cache: dict[int, float] = {}

    def _run(self, model: onnx.ModelProto) -> list[list[np.ndarray]]:
        session = create_session(model)
        return [session.run(None, dict(sample)) for sample in self.samples]

    def of(self, model: onnx.ModelProto) -> float:
        key = id(model)
        if key not in self._cache:
            outputs = self._run(model)
            if self.goal.metric == "cos":
                value = output_cosine(self.reference, outputs, self.masks)
            elif self.goal.metric == "sqnr":
                value = output_sqnr(self.reference, outputs, self.masks)
            else:
                assert self.labels is not None
                value = 100.0 * (self._top1(self.reference) - self._top1(outputs))
            self._cache[key] = value
        return self._cache[key]

    def __call__(self, model: onnx.ModelProto) -> float:
        self.last = self.of(model)
        return self.last

    def better(self, a: float, b: float) -> bool:
        return a < b if self.goal.metric == "top1-drop" else a > b

    def _top1(self, outputs: list[list[np.ndarray]]) -> float:
        predicted = np.array([int(np.argmax(out[0].reshape(-1))) for out in outputs])
        return float(np.mean(predicted == np.asarray(self.labels)))


STEP = Step("target", applies, run)
