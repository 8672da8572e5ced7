"""A data set's samples are held to ONNX Runtime's rules for a feed and no stricter
(lowbit.spec.TensorSpec.feed): each case is run through onnxruntime to show what it
does with the same arrays."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest

from lowbit.calibration.collect import collect_ranges
from lowbit.calibration.observers import CalibrationSettings
from lowbit.data import open_dataset
from lowbit.errors import DatasetError, ModelError
from lowbit.io.model import input_specs
from lowbit.runtime.ort import OrtRunner
from lowbit.spec import TensorSpec, named_dim_conflict
from tests.feed_models import (
    default_input_model,
    int32_ids_model,
    paddle_classifier,
    scalar_input_model,
    shared_dim_model,
)
from tests.io.test_input_specs import ort_runs

F32 = np.dtype("float32")


def run_dataset(model: onnx.ModelProto, path: Path) -> list[dict[str, np.ndarray]]:
    """Every sample of the data set at ``path`` for ``model``, each also run through ORT."""
    samples = list(open_dataset(path, input_specs(model)))
    for sample in samples:
        assert ort_runs(model, sample)
    return samples


# --------------------------------------------------------------------------- dynamic dims


def test_minus_one_dims_take_any_size(tmp_path: Path) -> None:
    model = paddle_classifier()
    x = np.random.default_rng(0).normal(size=(3, 3, 48, 192)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    samples = run_dataset(model, tmp_path / "d.npz")
    assert len(samples) == 3 and samples[0]["x"].shape == (1, 3, 48, 192)


def test_a_fixed_dim_that_differs_is_refused_naming_both_shapes(tmp_path: Path) -> None:
    model = paddle_classifier()
    x = np.zeros((2, 4, 48, 192), np.float32)
    assert not ort_runs(model, {"x": x[:1]})
    np.savez(tmp_path / "d.npz", x=x)
    with pytest.raises(DatasetError, match=r"input 'x' expects \[\?,3,\?,\?\], sample 0 in "
                                           r".*d.npz has \[1,4,48,192\]"):
        open_dataset(tmp_path / "d.npz", input_specs(model))


# --------------------------------------------------------------------------- scalars


def test_one_element_samples_feed_a_scalar_and_say_so_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = scalar_input_model()
    folder = tmp_path / "samples"
    folder.mkdir()
    for i in range(3):  # one file per sample, the rate stored as a 1-element array
        np.savez(folder / f"s{i}.npz", x=np.ones((1, 8), np.float32),
                 sr=np.array([16000.0 + i], np.float32))
    with caplog.at_level(logging.INFO, logger="lowbit.data.datasets"):
        samples = run_dataset(model, folder)
    assert [s["sr"].shape for s in samples] == [(), (), ()]
    assert [float(s["sr"]) for s in samples] == [16000.0, 16001.0, 16002.0]
    told = [r for r in caplog.records if "is a scalar" in r.getMessage()]
    assert len(told) == 1 and "'sr'" in told[0].getMessage()


@pytest.mark.parametrize("rates", [np.arange(4.0), np.arange(4.0).reshape(4, 1)])
def test_an_npz_holds_one_value_per_sample_for_a_scalar(tmp_path: Path,
                                                        rates: np.ndarray) -> None:
    np.savez(tmp_path / "d.npz", x=np.ones((4, 8), np.float32), sr=rates)
    samples = run_dataset(scalar_input_model(), tmp_path / "d.npz")
    assert [s["sr"].shape for s in samples] == [()] * 4
    assert [float(s["sr"]) for s in samples] == [0.0, 1.0, 2.0, 3.0]
    stacked = open_dataset(tmp_path / "d.npz", input_specs(scalar_input_model())).stacked()
    assert stacked["sr"].shape == (4,) and stacked["x"].shape == (4, 8)


def test_a_longer_array_for_a_scalar_is_fed_as_ort_takes_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    np.savez(tmp_path / "d.npz", x=np.ones((2, 8), np.float32), sr=np.ones((2, 8), np.float32))
    with caplog.at_level(logging.WARNING, logger="lowbit.data.datasets"):
        samples = run_dataset(scalar_input_model(), tmp_path / "d.npz")  # ORT broadcasts
    assert samples[0]["sr"].shape == (1, 8)
    assert "declared a scalar" in caplog.text


def test_collect_ranges_feeds_a_scalar_from_a_one_element_array() -> None:
    model = scalar_input_model()
    samples = [{"x": np.ones((1, 8), np.float32), "sr": np.array([[2.0]])}] * 2
    table = collect_ranges(model, samples, CalibrationSettings("minmax"), progress=False)
    assert table.num_samples == 2 and table.ranges["sr"].max == 2.0


# --------------------------------------------------------------------------- dtypes


def test_int64_ids_for_an_int32_input_are_converted_where_they_fit(tmp_path: Path) -> None:
    model = int32_ids_model()
    ids = np.random.default_rng(0).integers(0, 20, size=(3, 6))  # int64
    assert not ort_runs(model, {"ids": ids[:1]})  # ORT: "Unexpected input data type"
    np.savez(tmp_path / "d.npz", ids=ids)
    samples = run_dataset(model, tmp_path / "d.npz")
    assert samples[0]["ids"].dtype == np.int32
    np.testing.assert_array_equal(samples[2]["ids"], ids[2:3])


def test_ids_outside_int32_are_refused_naming_both_dtypes(tmp_path: Path) -> None:
    ids = np.full((2, 6), 2**31, np.int64)
    np.savez(tmp_path / "d.npz", ids=ids)
    data = open_dataset(tmp_path / "d.npz", input_specs(int32_ids_model()))
    with pytest.raises(DatasetError, match=r"input 'ids' is int32, sample 0 in .*d.npz is int64 "
                                           r"with values from 2\.14748e\+09 to 2\.14748e\+09, "
                                           r"outside int32's range"):
        next(iter(data))


@pytest.mark.parametrize(("values", "dtype", "target", "refused"), [
    ([1.0, 2.0], np.float64, np.int32, None),
    ([1.5, 2.0], np.float64, np.int32, r"non-integer values \(e\.g\. 1\.5\)"),
    ([np.nan, 2.0], np.float32, np.int64, "NaN or Inf"),
    ([0, 1], np.int64, np.bool_, None),
    ([0, 2], np.int64, np.bool_, "other than 0 and 1"),
    ([-1, 255], np.int16, np.uint8, r"from -1 to 255, outside uint8's range"),
    ([0, 255], np.int16, np.uint8, None),
    ([2**63 - 1, 0], np.uint64, np.int64, None),
    ([2**63, 0], np.uint64, np.int64, "outside int64's range"),
    ([1e10, 0], np.float64, np.float32, None),   # float to float: rounding, as the model does
    ([3, 4], np.uint8, np.float16, None),
])
def test_dtype_conversions_keep_every_value(values: list[float], dtype: type, target: type,
                                            refused: str | None) -> None:
    spec = TensorSpec("v", (2,), np.dtype(target))
    array = np.array(values, dtype)
    if refused is None:
        fed = spec.feed(array, "sample 0")
        assert fed.dtype == np.dtype(target)
        kept = array.astype(target) if np.dtype(target).kind == "f" else array
        assert fed.tolist() == kept.tolist()   # Python ints: exact at int64's ends
    else:
        with pytest.raises(DatasetError, match=f"input 'v' is {np.dtype(target)}, sample 0 is "
                                               f"{np.dtype(dtype)} .*{refused}"):
            spec.feed(array, "sample 0")


def test_text_data_is_refused() -> None:
    with pytest.raises(DatasetError, match=r"input 'v' is float32, s is <U1 \(not numeric\)"):
        TensorSpec("v", (1,), F32).feed(np.array(["a"]), "s")


# --------------------------------------------------------------------------- shared dims


def shared_samples(tmp_path: Path) -> Path:
    folder = tmp_path / "shared"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        np.savez(folder / f"s{i}.npz", a=rng.normal(size=(2, 8)).astype(np.float32),
                 b=rng.normal(size=(5, 8)).astype(np.float32))
    return folder


def test_a_dim_name_shared_with_two_sizes_is_fed_as_ort_takes_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """ORT does not check that inputs agree on a dim name: the two-MatMul model runs.
    lowbit does not refuse either, but says once that ORT plans memory by the name."""
    with caplog.at_level(logging.WARNING, logger="lowbit.data.datasets"):
        samples = run_dataset(shared_dim_model(), shared_samples(tmp_path))
    assert samples[0]["a"].shape == (2, 8) and samples[0]["b"].shape == (5, 8)
    warned = [r.getMessage() for r in caplog.records if "the dim 'N'" in r.getMessage()]
    assert len(warned) == 1 and "inputs 'a' and 'b' give the dim 'N' sizes 2 and 5" in warned[0]


def test_a_run_ort_refuses_for_a_shared_dim_is_one_line_naming_it() -> None:
    """ORT refuses the two sizes where they must meet (an Add): lowbit's runner says which
    dim the inputs disagree on, in one line."""
    model = shared_dim_model(add=True)
    feeds = {"a": np.ones((2, 8), np.float32), "b": np.ones((5, 8), np.float32)}
    assert not ort_runs(model, feeds)
    with pytest.raises(ModelError) as caught:
        OrtRunner(model).run(feeds)
    message = str(caught.value)
    assert "\n" not in message
    assert "inputs 'a' and 'b' give the dim 'N' sizes 2 and 5" in message


def test_named_dim_conflict() -> None:
    shapes = {"a": ("N", 8), "b": ("N", "M"), "c": ("K", "K")}
    feeds = {"a": np.ones((2, 8)), "b": np.ones((2, 3)), "c": np.ones((4, 4))}
    assert named_dim_conflict(shapes, feeds) is None
    assert named_dim_conflict(shapes, {**feeds, "b": np.ones((3, 3))}) == \
        "inputs 'a' and 'b' give the dim 'N' sizes 2 and 3"
    assert named_dim_conflict(shapes, {**feeds, "c": np.ones((4, 5))}) == \
        "input 'c' gives the dim 'K' sizes 4 and 5"


# --------------------------------------------------------------------------- defaults


def test_an_input_with_a_default_is_not_needed_in_the_data_set(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.ones((2, 8), np.float32))
    samples = run_dataset(default_input_model(), tmp_path / "d.npz")
    assert set(samples[0]) == {"x"}
