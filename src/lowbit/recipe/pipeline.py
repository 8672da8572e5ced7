"""A recipe run as a pipeline of small named steps, each ``model → model + notes``.

    context = DeployContext.for_model(recipe, canonical)   # the table read and checked once
    state = run_steps(context)                             # prepare steps, then one quantizer
    state.built.model, state.notes, state.applied          # the result and what each step did

A step (lowbit.recipe.steps) says whether the recipe asks for it and rewrites the
state: the model it passes on, the calibration table (re-measured or derived where it
changed tensors), learned weights (AdaRound) and the notes deploy prints. The last
step that applies builds the low-precision model (``state.built``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from lowbit.calibration.fit import check_table_fits
from lowbit.calibration.table import CalibrationTable, read_table
from lowbit.data import Dataset, open_dataset
from lowbit.data.samples import SampleWindow, first_samples
from lowbit.errors import DatasetError
from lowbit.io.model import input_specs
from lowbit.parallel import Parallelism
from lowbit.quantize.int8.params import WeightQuant
from lowbit.quantize.int8.qdq import NodeDecision
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.recipe.recipe import Recipe
from lowbit.runtime.memory import MemoryBudget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Built:
    """What a quantizer step made: the model and its per-node decisions."""

    model: onnx.ModelProto
    quantized: tuple[NodeDecision, ...]
    left_float: tuple[NodeDecision, ...]
    removed: tuple[NodeDecision, ...] = ()
    float_tensors: Mapping[str, str] = field(default_factory=dict)


def nothing_quantized(precision: str, built: Built) -> str | None:
    """Why an INT8 (or W4) deploy that quantized no op failed its purpose, or None: the
    model still runs (in float), so it is written, and the caller exits 1 with this."""
    if precision not in ("INT8", "W4") or built.quantized:
        return None
    if not built.left_float:
        return f"{precision} was asked for, but the model has no op to quantize"
    first = built.left_float[0]
    return (f"{precision} was asked for, but no op was quantized: all "
            f"{len(built.left_float)} stay float (first {first.op_type} {first.name}: "
            f"{first.reason})")


@dataclass(frozen=True)
class DeployState:
    """What flows between steps. ``changed_inputs`` names the step that changed the
    layers' inputs (then the table's input means no longer describe them)."""

    model: onnx.ModelProto
    table: CalibrationTable | None = None
    weights: Mapping[str, WeightQuant] | None = None
    changed_inputs: str | None = None
    notes: tuple[str, ...] = ()
    applied: tuple[str, ...] = ()
    built: Built | None = None
    uncorrected: onnx.ModelProto | None = None  # the model before bias correction
    unmet: str | None = None  # why the model misses what the recipe asked (then exit 1)
    float_for_speed: bool = False  # the speed guard kept every op float: F32 was faster
    # ops an earlier step chose to keep float (the target search): later rebuilds keep them
    kept_float: Mapping[str, str] = field(default_factory=dict)
    # W4 names the file sizes once the model is written: (float bytes, written) → note
    size_note: Callable[[int, int], str] | None = None

    def noted(self, *notes: str | None) -> DeployState:
        return replace(self, notes=(*self.notes, *(n for n in notes if n)))


@dataclass(frozen=True)
class DeployContext:
    """The recipe, the float model every step starts from and the table, read once;
    ``parallel``: where the steps that shard their data run it (GPTQ's statistics). It
    is not part of the recipe: it changes how a model is made, not which."""

    recipe: Recipe
    float_model: onnx.ModelProto
    table: CalibrationTable | None
    parallel: Parallelism = field(default_factory=Parallelism)

    @classmethod
    def for_model(cls, recipe: Recipe, model: onnx.ModelProto,
                  parallel: Parallelism | None = None) -> DeployContext:
        given = recipe.calibration_table
        table = read_table(given) if isinstance(given, Path) else given
        if table is not None:
            check_table_fits(table, model, given if isinstance(given, Path) else "(in memory)")
        return cls(recipe, model, table, parallel or Parallelism())

    @property
    def int8(self) -> QuantizeSettings:
        return self.recipe.int8.settings()

    @property
    def budget(self) -> MemoryBudget:
        """What a batch of samples may hold in the steps that run the model over data."""
        return MemoryBudget.parse(self.recipe.memory_budget)

    def data(self, path: Path) -> Dataset:
        return open_dataset(path, input_specs(self.float_model))

    def samples(self, path: Path, limit: int, what: str) -> SampleWindow:
        """The first ``limit`` finite samples of ``path``, read again on each pass (never
        all held at once); none is an error naming ``what``."""
        samples = SampleWindow(self.data(path), limit)
        if not len(samples):
            raise DatasetError(f"{what}: the data set {path} has no samples")
        return samples

    def stream(self, path: Path, limit: int) -> Iterator[dict[str, np.ndarray]]:
        return first_samples(self.data(path), limit)


@dataclass(frozen=True)
class Step:
    """A named step: ``applies`` reads the recipe, ``run`` rewrites the state."""

    name: str
    applies: Callable[[Recipe], bool]
    run: Callable[[DeployContext, DeployState], DeployState]


def run_steps(context: DeployContext, steps: tuple[Step, ...] | None = None) -> DeployState:
    """Every step the recipe asks for, in registry order, from the float model."""
    if steps is None:
        from lowbit.recipe.steps import STEPS

        steps = STEPS
    state = DeployState(context.float_model, context.table)
    for step in steps:
        if step.applies(context.recipe):
            log.info("deploy step: %s", step.name)
            done = step.run(context, state)
            if done is not state:  # a step with nothing to do hands the state back as it is
                state = replace(done, applied=(*done.applied, step.name))
    if state.built is None:
        raise AssertionError("no quantizer step applied to the recipe")  # registry bug
    return state
