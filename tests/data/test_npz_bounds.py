"""A data set's headers are held to the bytes stored, and compressed members stream:
a corrupt header is one DatasetError, and reading 20 samples of a 100,000-sample
compressed .npz holds 20 samples, not the whole expanded array."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lowbit.api.common import has_labels
from lowbit.data import open_dataset
from lowbit.data.datasets import read_array
from lowbit.errors import DatasetError
from lowbit.spec import TensorSpec

SPECS = [TensorSpec("input", ("N", 1, 28, 28), np.dtype("float32"))]


def _lying_npz(path: Path, shape: tuple[int, ...], compress: int) -> None:
    """An .npz whose 'input' header announces ``shape`` but holds 3 samples."""
    stream = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(stream, header)
    stream.write(np.zeros((3, 1, 28, 28), np.float32).tobytes())
    with zipfile.ZipFile(path, "w", compression=compress) as archive:
        archive.writestr("input.npy", stream.getvalue())


@pytest.mark.parametrize("compress", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_header_announcing_more_than_the_file_holds(tmp_path: Path, compress: int) -> None:
    path = tmp_path / "lying.npz"
    _lying_npz(path, (10**12, 1, 28, 28), compress)
    with pytest.raises(DatasetError, match=r"header announces shape \[1000000000000,1,28,28\] "
                                           r"float32 \(2.79 PiB\), but the file holds"):
        open_dataset(path, SPECS)
    with pytest.raises(DatasetError, match="header announces"):
        read_array(path, "input")


def test_empty_and_truncated_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(DatasetError, match="not a readable .npz archive"):
        open_dataset(empty, SPECS)
    with pytest.raises(DatasetError, match="not a readable .npz archive"):
        has_labels(empty)
    npy = tmp_path / "empty.npy"
    npy.write_bytes(b"")
    with pytest.raises(DatasetError):
        open_dataset(npy, SPECS)
    with pytest.raises(DatasetError):
        read_array(npy)


def test_compressed_members_stream(tmp_path: Path) -> None:
    path = tmp_path / "many.npz"
    rng = np.random.default_rng(0)
    values = np.zeros((100_000, 1, 28, 28), np.float32)  # 314 MB expanded, ~0.3 MB stored
    values[::997] = rng.normal(size=values[::997].shape)
    np.savez_compressed(path, input=values)
    expected = values[:20].copy()
    del values
    data = open_dataset(path, SPECS)
    tracemalloc.start()
    try:
        samples = list(data.take(20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"reading 20 samples held {peak / 2**20:.1f} MiB"
    np.testing.assert_array_equal(np.concatenate([s["input"] for s in samples]), expected)
    again = list(data.take(2))  # going back starts the member over
    np.testing.assert_array_equal(again[1]["input"], expected[1:2])
