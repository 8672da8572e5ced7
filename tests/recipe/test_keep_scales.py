"""The recipe of a model that arrives quantized: keep_scales needs no calibration table and
refuses lowbit's quantization settings; requantize and the float original apply to INT8."""

from __future__ import annotations

from pathlib import Path

import pytest

from lowbit.errors import RecipeError
from lowbit.recipe import Recipe


def test_keep_scales_needs_no_table_and_refuses_quantization_settings() -> None:
    recipe = Recipe.from_options(keep_scales=True, test_input="x.npz", float_model="f.onnx")
    assert recipe.calibration_table is None
    assert recipe.validation.float_model == Path("f.onnx")
    with pytest.raises(RecipeError, match="smooth is a setting of lowbit's own quantization"):
        Recipe.from_options(keep_scales=True, smooth=0.5)
    with pytest.raises(RecipeError, match="weight_bits is a setting"):
        Recipe.from_options(keep_scales=True, weight_bits=4)


def test_requantize_is_int8_and_the_float_original_needs_data() -> None:
    assert Recipe.from_options(requantize=True, calibration_table="m.calib").requantize
    with pytest.raises(RecipeError, match="requantize applies to quantize INT8 only"):
        Recipe.from_options(quantize="F16", requantize=True)
    with pytest.raises(RecipeError, match="float_model is run on test_input"):
        Recipe.from_options(keep_scales=True, float_model="f.onnx")
    with pytest.raises(RecipeError, match="without test_reference"):
        Recipe.from_options(keep_scales=True, float_model="f.onnx", test_input="x.npz",
                            test_reference="ref.npz")
