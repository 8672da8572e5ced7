"""Deploy as a pipeline: the registry's order, one table read, steps that did nothing
left out of the record, and a deploy the same as before the recipe existed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import lowbit
from lowbit.recipe import pipeline
from lowbit.recipe.steps import STEPS, step_names
from tests.models import small_resnet


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    onnx.save(small_resnet(), root / "model.onnx")
    rng = np.random.default_rng(3)
    np.savez(root / "calib.npz", input=rng.normal(size=(16, 3, 16, 16)).astype(np.float32))
    np.savez(root / "x.npz", input=rng.normal(size=(4, 3, 16, 16)).astype(np.float32))
    lowbit.transform(root / "model.onnx", root / "model.f32.onnx")
    lowbit.calibrate(root / "model.f32.onnx", root / "calib.npz", output=root / "model.calib",
                     progress=False)
    return root


def test_prepare_steps_run_before_exactly_one_quantizer() -> None:
    names = step_names()
    assert names[:4] == ("smooth", "equalize", "adaround", "bias_correction")
    quantizers = {"int8", "dynamic", "w4", "floats"}
    assert set(names[4:]) == quantizers | {"target", "speed"}
    # target then speed refine what int8 built: fidelity first, then speed
    assert names.index("int8") + 1 == names.index("target") == names.index("speed") - 1
    recipes = [lowbit.plan(calibration_table="t"), lowbit.plan(dynamic=True),
               lowbit.plan(quantize="W4"), lowbit.plan(quantize="F16")]
    for recipe in recipes:
        assert sum(step.applies(recipe) for step in STEPS if step.name in quantizers) == 1


def test_the_table_is_read_once(flow: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = []
    real = pipeline.read_table
    monkeypatch.setattr(pipeline, "read_table", lambda path: reads.append(path) or real(path))
    result = lowbit.deploy(flow / "model.f32.onnx", calibration_table=flow / "model.calib",
                           output=flow / "once.onnx")
    assert reads == [flow / "model.calib"]
    assert result.steps == ("bias_correction", "int8")  # default smoothing: not a transformer


def test_the_recipe_changes_the_model_as_its_flags_did(flow: Path) -> None:
    """per-tensor weights and no bias correction through the recipe object give the same
    file as the keywords."""
    recipe = lowbit.plan(calibration_table=flow / "model.calib", per_channel=False,
                         bias_correction=False)
    by_recipe = lowbit.deploy(flow / "model.f32.onnx", output=flow / "a.onnx", recipe=recipe)
    by_keywords = lowbit.deploy(flow / "model.f32.onnx", output=flow / "b.onnx",
                                calibration_table=flow / "model.calib", per_channel=False,
                                bias_correction=False)
    assert by_recipe.steps == ("int8",)
    a, b = onnx.load(by_recipe.path), onnx.load(by_keywords.path)
    assert a.graph == b.graph
    scales = [i for i in a.graph.initializer if "weight" in i.name and i.name.endswith("scale")]
    assert scales and all(len(i.dims) == 0 for i in scales)  # per-tensor: scalar scales


def test_a_recipe_over_keywords(flow: Path) -> None:
    recipe = lowbit.plan(calibration_table=flow / "model.calib", test_input=flow / "x.npz",
                         tolerance="0.9999999,0.9999")
    strict = lowbit.deploy(flow / "model.f32.onnx", output=flow / "s.onnx", recipe=recipe)
    loose = lowbit.deploy(flow / "model.f32.onnx", output=flow / "l.onnx", recipe=recipe,
                          tolerance="0.9,0.5")
    assert not strict.passed and loose.passed
    assert loose.recipe is not None and loose.recipe.validation.tolerance.cosine == 0.9


def test_a_model_written_to_another_folder_carries_the_meta_file(flow: Path,
                                                                 tmp_path: Path) -> None:
    from lowbit.io.meta import find_meta, read_meta

    source = find_meta(flow / "model.f32.onnx")
    assert source is not None
    result = lowbit.deploy(flow / "model.f32.onnx", calibration_table=flow / "model.calib",
                           output=tmp_path / "elsewhere" / "m.int8.onnx")
    carried = tmp_path / "elsewhere" / "m.meta.json"
    assert read_meta(carried) == read_meta(source)
    assert any(note.startswith(f"wrote {carried}") for note in result.notes)
    cast = lowbit.deploy(flow / "model.f32.onnx", quantize="F16", output=tmp_path / "h.onnx")
    assert any("weights stay F32 in the file" in note for note in cast.notes)
