"""lowbit.deploy: run a recipe on a float model, write the result, validate it.

    result = lowbit.deploy("work/model.f32.onnx", output="work/model.int8.onnx",
                           calibration_table="work/model.calib", test_input="x.npz")
    result = lowbit.deploy("work/model.f32.onnx", output="out.onnx",
                           recipe=read_recipe("int8.toml"), tolerance="0.995,0.95")
    result.passed, result.left_float, result.notes, result.recipe

The keywords are the recipe's (lowbit.recipe.options.OPTIONS lists them: ``quantize``,
``calibration_table``, ``smooth``, ``adaround``, ...); given with ``recipe`` they
override its settings. Everything a user can get wrong is checked before anything is
written: exit code 2 promises that nothing was.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from lowbit import arguments
from lowbit.analysis.explain import SpeedAdvice, explain_int8
from lowbit.analysis.validate import ValidationReport, compare_outputs
from lowbit.api.common import (
    check_model,
    check_samples,
    load_float_model,
    load_reference,
    run_samples,
)
from lowbit.api.plausibility import table_warnings
from lowbit.api.prequantized import arrival_options, deploy_quantized, deploy_source
from lowbit.atomic import write_text_atomic
from lowbit.data import Dataset, open_dataset
from lowbit.data.samples import finite_samples
from lowbit.errors import ArgumentError, LowbitError, RecipeError, UsageError
from lowbit.io.meta import find_meta, meta_path
from lowbit.io.model import input_specs, load_model, output_names, save_model
from lowbit.outputs import check_distinct
from lowbit.parallel import Parallelism
from lowbit.passes import canonicalize
from lowbit.quantize.int8.qdq import NodeDecision
from lowbit.recipe.options import keyword_for
from lowbit.recipe.pipeline import DeployContext, nothing_quantized, run_steps
from lowbit.recipe.provenance import differences, read_provenance, stamp
from lowbit.recipe.recipe import PRECISIONS, Recipe
from lowbit.runtime.backends import check_backend

log = logging.getLogger(__name__)

__all__ = ["PRECISIONS", "DeployResult", "Rerun", "deploy", "plan", "rerun"]


@dataclass(frozen=True)
class DeployResult:
    path: Path
    precision: str
    quantized: tuple[NodeDecision, ...]
    left_float: tuple[NodeDecision, ...]
    removed: tuple[NodeDecision, ...]
    float_tensors: Mapping[str, str]
    validation: ValidationReport | None = None
    advice: SpeedAdvice | None = None
    notes: tuple[str, ...] = ()
    recipe: Recipe | None = None
    steps: tuple[str, ...] = ()
    problem: str | None = None  # the model is written but misses what was asked (a target)

    @property
    def passed(self) -> bool:
        return self.problem is None and (self.validation is None or self.validation.passed)


def plan(recipe: Recipe | None = None, **options: Any) -> Recipe:
    """The recipe deploy would run: ``recipe`` (default: every default) with the keywords
    applied, validated once. RecipeError names the keywords as given."""
    if recipe is not None and not isinstance(recipe, Recipe):
        raise UsageError(f"recipe must be a lowbit.recipe.Recipe; got {recipe!r} (read a "
                         "TOML file with lowbit.recipe.read_recipe)")
    return Recipe.from_options(recipe, **options)


def deploy(model: str | Path, *, output: str | Path, recipe: Recipe | None = None,
           workers: int | None = None, cluster: str | None = None,
           **options: Any) -> DeployResult:
    """Rewrite ``model`` as the recipe says (``recipe`` and/or deploy's keywords, see
    ``plan``), write it to ``output`` with its provenance, and validate it: with the
    recipe's validation data the new model runs on its backend and each output is
    compared with the reference (or the float model's outputs); ``result.passed`` is
    False when a tolerance fails, and the file is written either way.

    ``workers`` / ``cluster`` collect GPTQ's statistics (W4, algorithm gptq) as shards
    on local processes or Ray, as calibrate does (lowbit.parallel); the model is the
    same up to float rounding of the summed statistics. They are not recipe settings
    (the provenance does not record them) and are refused where nothing would use them."""
    model, output = arguments.path(model, "model"), arguments.path(output, "output")
    parallel = Parallelism.checked(workers, cluster)
    arrived, read = arrival_options(model, recipe, options)
    chosen = plan(recipe, **arrived)
    _check_parallel(parallel, chosen)
    _check_outputs(model, output, chosen)
    backend = check_backend(chosen.backend)
    backend.require()  # before anything is read or written
    source = deploy_source(model, chosen, read)
    del read
    if source.model is None:  # arrived quantized (QDQ): its scales are kept
        return deploy_quantized(model, output=output, recipe=chosen)
    canonical, _ = canonicalize(source.model, input_shapes=chosen.input_shapes)
    state = run_steps(DeployContext.for_model(chosen, canonical, parallel))
    assert state.built is not None
    check_model(state.built.model, "the converted model")
    samples, reference = _gate_inputs(chosen, canonical)  # read before anything is written
    notes = [*source.notes, *state.notes, *table_warnings(model, state.table)]
    if chosen.precision != "INT8":
        reason = backend.cannot_run(state.built.model, samples is not None)
        if reason and samples is not None:
            raise UsageError(reason)
        notes += [reason] if reason else []
    checked = _Checks(chosen, output, samples, reference)
    path = save_model(stamp(state.built.model, chosen, source=model, steps=state.applied),
                      output, check=checked.run)
    if state.size_note is not None:
        notes.insert(0, state.size_note(Path(model).stat().st_size, path.stat().st_size))
    notes += [note for note in (_carry_meta(model, path, chosen),) if note]
    validation, advice, built = checked.validation, checked.advice, state.built
    return DeployResult(path, chosen.precision, built.quantized, built.left_float,
                        built.removed, built.float_tensors, validation, advice, tuple(notes),
                        chosen, state.applied,
                        state.unmet or (None if state.float_for_speed
                                        else nothing_quantized(chosen.precision, built)))


def _check_parallel(parallel: Parallelism, recipe: Recipe) -> None:
    """Workers run GPTQ's statistics only: given for a recipe without them, refused."""
    if parallel != Parallelism() and recipe.gptq_data is None:
        raise ArgumentError("{workers} and {cluster} run GPTQ's statistics ({quantize} W4 "
                            "with {algorithm} gptq); this deploy collects none")


def _gate_inputs(recipe: Recipe, float_model: onnx.ModelProto
                 ) -> tuple[Dataset | None, dict[str, np.ndarray] | None]:
    """The validation samples and what they are compared with, read in full now, so a
    bad file fails before the model is written."""
    gate = recipe.validation
    if gate.data is None:
        return None, None
    samples = open_dataset(gate.data, input_specs(float_model))
    if gate.float_model is not None:  # the float original of a model that arrived quantized
        return samples, run_samples(load_float_model(gate.float_model, "deploy"),
                                    finite_samples(samples))
    if gate.reference is not None:
        check_samples(samples)
        return samples, load_reference(gate.reference, output_names(float_model))
    return samples, run_samples(float_model, finite_samples(samples))


class _Checks:
    """What deploy checks on the written file before it takes the output's place: the
    validation gate (a failed tolerance is a result, not an error) and what ONNX
    Runtime will run (a model it cannot load is an error, and the file at the output
    path is left as it was)."""

    def __init__(self, recipe: Recipe, output: str | Path, samples: Dataset | None,
                 reference: dict[str, np.ndarray] | None) -> None:
        self.recipe, self.output, self.samples, self.reference = recipe, output, samples, \
            reference
        self.validation: ValidationReport | None = None
        self.advice: SpeedAdvice | None = None

    def run(self, written: Path) -> None:
        try:
            if self.samples is not None and self.reference is not None:
                actual = run_samples(written, self.samples, backend=self.recipe.backend)
                self.validation = compare_outputs(self.reference, actual,
                                                  self.recipe.validation.tolerance)
            if self.recipe.precision == "INT8":
                self.advice = explain_int8(written, profile=False)
        except LowbitError as err:  # name the output, not the temporary file it is yet
            raise type(err)(err.template.replace(str(written), str(self.output))) from None


def _meta_to_carry(model: str | Path, output: str | Path, recipe: Recipe) -> Path | None:
    """Where the float model's meta file goes beside an output that has none (classify,
    eval and report read the preprocessing there); None when nothing is to be carried
    (no meta file, one already there, or inputs and outputs that change type)."""
    if find_meta(model) is None or find_meta(output) is not None:
        return None
    if recipe.precision in ("F16", "BF16") and not recipe.floats.keep_io_types:
        return None
    return meta_path(output)


def _carry_meta(model: str | Path, written: Path, recipe: Recipe) -> str | None:
    target = _meta_to_carry(model, written, recipe)
    source = find_meta(model)
    if target is None or source is None:
        return None
    write_text_atomic(target, source.read_text(encoding="utf-8"))
    return f"wrote {target}: the float model's meta file (inputs, preprocessing) for the " \
        "new model's folder"


def _check_outputs(model: str | Path, output: str | Path, recipe: Recipe) -> None:
    """-o may not be the model or any file the recipe reads (symlinks and hard links
    included); the error names them as the caller does (keywords, or the CLI's flags)."""
    inputs: dict[str, Path | str | None] = {"{model}": model}
    inputs.update({"{" + name + "}": path for name, path in recipe.data_sets().items()})
    try:
        check_distinct(inputs, {"{output}": output,
                                "{output}'s meta file": _meta_to_carry(model, output, recipe)})
    except ArgumentError as err:
        raise RecipeError(err.template).renamed(keyword_for) from None


@dataclass(frozen=True)
class Rerun:
    """A deploy re-run from the recipe another model records: whether the new graph is
    bit-identical to the recorded one, and what differs in how the two were made."""

    result: DeployResult
    recorded_from: Path
    identical: bool
    differences: tuple[str, ...]


def rerun(model: str | Path, *, output: str | Path, recipe_from: str | Path,
          **options: Any) -> Rerun:
    """Deploy ``model`` with the recipe recorded in ``recipe_from`` (a model lowbit wrote;
    ``options`` override its settings) and compare the result with that model."""
    recipe_from = arguments.path(recipe_from, "recipe_from")
    recorded = read_provenance(load_model(recipe_from, check=False), str(recipe_from))
    if recorded.recipe is None:
        raise UsageError(f"{recipe_from} records no lowbit recipe (it was not written by "
                         "lowbit deploy, or by an older lowbit)")
    result = deploy(model, output=output, recipe=recorded.recipe, **options)
    now = read_provenance(load_model(result.path, check=False), str(result.path))
    return Rerun(result, Path(recipe_from), now.graph_sha256 == recorded.graph_sha256,
                 tuple(differences(recorded, now)))
