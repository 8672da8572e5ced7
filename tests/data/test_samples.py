"""SampleWindow: the first samples of a data set, read again on every pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lowbit.data import open_dataset
from lowbit.data.samples import SampleWindow
from lowbit.errors import DatasetError
from lowbit.spec import TensorSpec


def test_a_window_reads_its_samples_on_every_pass(tmp_path: Path) -> None:
    x = np.arange(5 * 4, dtype=np.float32).reshape(5, 1, 4)
    np.save(tmp_path / "x.npy", x)
    data = open_dataset(tmp_path / "x.npy", [TensorSpec("x", (None, 4), np.dtype("float32"))])
    window = SampleWindow(data, 3)
    assert len(window) == 3 and len(SampleWindow(data, 99)) == 5
    first = [s["x"] for s in window]
    again = [s["x"] for s in window]
    assert len(first) == 3 and all(np.array_equal(a, b) for a, b in zip(first, again,
                                                                         strict=True))
    assert np.array_equal(window[1]["x"], x[1]) and np.array_equal(window[-1]["x"], x[2])
    assert len(window[:2]) == 2 and len(window[:10]) == 3
    with pytest.raises(IndexError):
        window[3]
    with pytest.raises(TypeError):
        window[1:2]
    x[4, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", x)
    bad = SampleWindow(open_dataset(tmp_path / "nan.npy", data.specs), 5)
    with pytest.raises(DatasetError, match="sample 4"):
        list(bad)
