"""lowbit.arguments: every check names the keyword and its limit; lowbit.errors: placeholders."""

from __future__ import annotations

import numpy as np
import pytest

from lowbit import arguments
from lowbit.errors import ArgumentError, DatasetError, LowbitError, RecipeError


@pytest.mark.parametrize(("value", "message"), [
    ("10", "num must be a whole number from 1 to 2147483647; got '10'"),
    (True, "num must be a whole number"),
    (2.0, "num must be a whole number"),
    (0, "num must be from 1 to 2147483647; got 0"),
    ("10**30", "got a number of about 31 digits"),
    ("10**5000", "got a number of about 5001 digits"),
], ids=["str", "bool", "float", "zero", "10**30", "10**5000"])
def test_count_refuses_what_is_not_a_bounded_whole_number(value: object, message: str) -> None:
    if isinstance(value, str) and value.startswith("10**"):
        value = 10 ** int(value[4:])  # built here: pytest's ids cannot print 5,000 digits
    with pytest.raises(ArgumentError, match=message):
        arguments.count(value, "num")


def test_count_takes_numpy_integers_and_bounds() -> None:
    assert arguments.count(np.int64(5), "num") == 5
    assert arguments.count(0, "check_samples", minimum=0) == 0
    assert arguments.threads(None) is None
    with pytest.raises(ArgumentError, match="threads must be from 1 to 1024; got -3"):
        arguments.threads(-3)


@pytest.mark.parametrize("value", ["99", float("nan"), float("inf"), 0.0, 101, None])
def test_number_refuses_text_and_out_of_range(value: object) -> None:
    with pytest.raises(ArgumentError, match="percentile must"):
        arguments.number(value, "percentile", low=0, high=100, low_open=True)


def test_shapes_refuse_a_string_and_unbounded_dims() -> None:
    with pytest.raises(ArgumentError, match="input_shapes must map .* got 'garbage'"):
        arguments.shapes("garbage")
    for bad in ([[1, 2**40]], [[1, 0]], [[1.5]], {"x": "123"}, [], [[10**5000]],
                [[1] * (arguments.MAX_RANK + 1)]):
        with pytest.raises(ArgumentError, match="input_shapes"):
            arguments.shapes(bad)
    assert arguments.shapes({"x": [1, 2]}) == {"x": (1, 2)}
    assert arguments.shapes([[1, 3], []]) == [(1, 3), ()]  # a scalar input's shape


def test_paths_choices_flags() -> None:
    with pytest.raises(ArgumentError, match="model must be a path"):
        arguments.path(123, "model")
    with pytest.raises(ArgumentError, match="variants must be a list of file paths"):
        arguments.paths("model.onnx", "variants")
    with pytest.raises(ArgumentError, match="method must be one of a, b; got 'c'"):
        arguments.choice("c", ("a", "b"), "method")
    with pytest.raises(ArgumentError, match="progress must be True or False; got 1"):
        arguments.flag(1, "progress")


def test_memory_requests_are_refused_before_allocating() -> None:
    with pytest.raises(ArgumentError, match=r"batches: batch 9 would take about 2 GiB, more "
                                            r"than "
                                            r"the memory budget \(1 GiB\)"):
        arguments.check_memory(2 << 30, "batches", "batch 9", budget=1 << 30)
    arguments.check_memory(1 << 20, "batches", "batch 1", budget=1 << 30)
    assert arguments.memory_refusal(10**30, "it") is not None  # more than any machine has


def test_errors_render_keywords_for_python_and_flags_for_the_command_line() -> None:
    err = DatasetError("give {labels} or put a 'label' array in {dataset}; {1} {'x'} stay")
    assert str(err) == "give labels or put a 'label' array in dataset; {1} {'x'} stay"
    flagged = err.renamed(lambda name: "--" + name)
    assert str(flagged) == "give --labels or put a 'label' array in --dataset; {1} {'x'} stay"
    assert isinstance(flagged, DatasetError) and flagged.template == err.template
    recipe = RecipeError("{smooth.alpha} must lie in [0, 1]")
    assert str(recipe) == "smooth.alpha must lie in [0, 1]"
    assert isinstance(recipe.renamed(str.upper), RecipeError)
    assert isinstance(ArgumentError("x"), LowbitError)
