"""The recipe: validated once, settings of another precision refused, every error naming
the setting the caller typed (recipe field, Python keyword or CLI flag)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lowbit.cli.deploy import flag_for
from lowbit.errors import RecipeError
from lowbit.recipe import (
    AdaRounding,
    Equalization,
    Int8Options,
    Recipe,
    Smoothing,
    Validation,
    parse_recipe,
    recipe_text,
)
from lowbit.recipe.options import OPTIONS, keyword_for

TABLE = Path("model.calib")


def test_defaults_need_a_table_for_static_int8_only() -> None:
    with pytest.raises(RecipeError, match="precision INT8 needs calibration_table"):
        Recipe()
    assert Recipe(calibration_table=TABLE).static_int8
    assert not Recipe(int8=Int8Options(dynamic=True)).static_int8
    assert Recipe(precision="f16").precision == "F16"


@pytest.mark.parametrize(("build", "message"), [
    (lambda: Recipe(precision="INT4"), "precision must be one of INT8, F16, BF16, W4"),
    (lambda: Recipe(precision=8), "got 8"),
    (lambda: Int8Options(activation="int16"), "int8.activation must be one of uint8, int8"),
    (lambda: Int8Options(per_channel="yes"), "int8.per_channel must be true or false"),
    (lambda: Int8Options(weight_bits=True), "int8.weight_bits must be one of 4, 8"),
    (lambda: Smoothing(alpha=1.5), r"smooth.alpha must lie in \[0, 1\]"),
    (lambda: Smoothing(alpha="sometimes"), "smooth.alpha must be a number"),
    (lambda: AdaRounding(iterations=0), "adaround.iterations must be a positive"),
    (lambda: Validation(tolerance=0.99), "validation.tolerance must be"),
    (lambda: Validation(tolerance="0.99"), "validation.tolerance"),
    (lambda: Validation(reference=Path("r.npz")), "validation.reference needs validation.data"),
    (lambda: Recipe(calibration_table=123), "calibration_table must be a path"),
    (lambda: Recipe(calibration_table=TABLE, input_shapes="garbage"), "input_shapes must"),
    (lambda: Recipe(calibration_table=TABLE, input_shapes=[[1, 0, 3]]), "input_shapes must"),
])
def test_bad_values_name_the_field(build, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        build()


def test_settings_of_another_precision_are_refused_not_ignored() -> None:
    with pytest.raises(RecipeError, match="int8.weight_bits applies to precision INT8 only, "
                                          "not F16"):
        Recipe(precision="F16", int8=Int8Options(weight_bits=4))
    with pytest.raises(RecipeError, match="block_size applies to quantize W4 only, not INT8"):
        Recipe.from_options(quantize="INT8", calibration_table=TABLE, block_size=64)
    with pytest.raises(RecipeError, match="floats.keep_float names the ops"):
        Recipe(precision="BF16", quantize_table=Path("q.qtable"))
    # a default value of another precision's section is not a setting anyone gave
    assert Recipe(precision="W4").w4.block_size == 32


def test_data_sets_are_shared_and_unused_data_refused() -> None:
    data = Path("calib.npz")
    recipe = Recipe(calibration_table=TABLE, calibration_data=data, adaround=AdaRounding(),
                    equalize=Equalization())
    assert recipe.adaround_data == data and recipe.equalize_data == data
    assert recipe.smooth_data is None  # default smoothing reads the table, not data
    with pytest.raises(RecipeError, match="calibration_data calib.npz is not used"):
        Recipe(calibration_table=TABLE, calibration_data=data)
    with pytest.raises(RecipeError, match="adaround needs a data set"):
        Recipe(calibration_table=TABLE, adaround=AdaRounding())
    with pytest.raises(RecipeError, match="smooth.alpha auto scores each α on data"):
        Recipe(calibration_table=TABLE, smooth=Smoothing(alpha="auto"))
    with pytest.raises(RecipeError, match="needs calibration_data"):
        Recipe.from_options(quantize="W4", algorithm="gptq")


def test_keywords_keep_deploys_forms_and_errors_name_them() -> None:
    recipe = Recipe.from_options(calibration_table="t.calib", adaround="calib.npz",
                                 bias_correction=False, smooth="off", per_channel=False,
                                 test_input="x.npz", tolerance="0.995,0.95")
    assert recipe.adaround == AdaRounding(data=Path("calib.npz"))
    assert recipe.bias_correction.source == "off" and recipe.smooth.off
    assert not recipe.int8.per_channel
    assert recipe.validation.tolerance.cosine == 0.995
    with pytest.raises(RecipeError) as caught:
        Recipe.from_options(calibration_table="t.calib", smooth=2)
    assert str(caught.value).startswith("smooth must lie in [0, 1]")
    with pytest.raises(RecipeError, match="equalize_relu6 applies to equalize"):
        Recipe.from_options(calibration_table="t.calib", equalize_relu6="relu")
    with pytest.raises(RecipeError, match="unknown deploy option 'smoth'"):
        Recipe.from_options(calibration_table="t.calib", smoth=0.5)


def test_the_cli_renders_the_same_error_with_its_flags() -> None:
    with pytest.raises(RecipeError) as caught:
        Recipe(calibration_table=TABLE, int8=Int8Options(dynamic=True, format="qoperator"))
    assert str(caught.value) == "int8.dynamic does not combine with int8.format"
    assert caught.value.renamed(flag_for).args[0] == "--dynamic does not combine with --format"
    assert flag_for("int8.per_channel") == "--per-tensor"
    assert flag_for("validation.data") == "--test-data"
    assert flag_for("floats.method") == "--float-method"
    for option in OPTIONS.values():  # every field a keyword sets maps back to it
        assert keyword_for(option.field) in OPTIONS


def test_toml_round_trip_keeps_every_setting() -> None:
    recipe = Recipe(calibration_table=TABLE, calibration_data=Path("c.npz"),
                    smooth=Smoothing(alpha=0.7, data=Path("s.npz")),
                    adaround=AdaRounding(iterations=200), equalize=Equalization(relu6="relu"),
                    input_shapes={"x": (1, 3, 8, 8)},
                    validation=Validation(data=Path("x.npz"), tolerance="0.98,0.8"))
    again = parse_recipe(recipe_text(recipe))
    assert again == recipe
    assert recipe_text(again) == recipe_text(recipe)


def test_a_recipe_file_with_mistakes_names_the_file_and_the_key() -> None:
    with pytest.raises(RecipeError, match="r.toml: unknown setting 'smooth.alpa'"):
        parse_recipe('precision = "INT8"\ncalibration_table = "t"\n[smooth]\nalpa = 0.5\n',
                     "r.toml")
    with pytest.raises(RecipeError, match="r.toml is not valid TOML"):
        parse_recipe("precision = \n", "r.toml")
    with pytest.raises(RecipeError, match="unknown recipe setting 'precison'"):
        parse_recipe('precison = "INT8"\n', "r.toml")


def test_a_recipe_file_is_checked_with_the_flags_over_it(tmp_path: Path) -> None:
    """A file may leave to the command line what it needs (an [equalize] table whose data
    comes from --calibration-data): the two are merged, then checked once."""
    from lowbit.recipe.document import read_recipe_document

    path = tmp_path / "eq.toml"
    path.write_text('precision = "INT8"\ncalibration_table = "t.calib"\n[equalize]\n'
                    '[int8]\nper_channel = false\n')
    merged = Recipe.from_options(read_recipe_document(path), calibration_data="c.npz",
                                 activation="int8")
    assert merged.equalize == Equalization() and merged.equalize_data == Path("c.npz")
    assert not merged.int8.per_channel and merged.int8.activation == "int8"
    with pytest.raises(RecipeError, match="equalize needs a data set"):
        Recipe.from_options(read_recipe_document(path))
