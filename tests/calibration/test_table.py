"""Calibration table: round trip, tpu-mlir tables, and errors that name the line."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from lowbit.calibration.observers import TensorRange
from lowbit.calibration.table import CalibrationTable, read_table, write_table
from lowbit.errors import CalibrationError


def _table() -> CalibrationTable:
    return CalibrationTable(
        ranges={
            "input": TensorRange(2.640000104904175, -2.5, 2.640000104904175),
            "conv1/out:0": TensorRange(1.0e-7, 0.0, 3.0e-7),
            "relu": TensorRange(0.0, 0.0, 0.0),
        },
        method="percentile",
        num_samples=200,
        bins=2048,
        percentile=99.99,
        skipped={"mask": "range not finite (min=-inf, max=0)"},
    )


def test_round_trip(tmp_path: Path) -> None:
    table = _table()
    path = write_table(table, tmp_path / "sub" / "model.calib")
    assert path == tmp_path / "sub" / "model.calib"
    text = path.read_text()
    assert text.startswith("# lowbit calibration table v1\n")
    assert "# method: percentile" in text and "# created: " in text
    back = read_table(path)
    assert back.ranges == table.ranges  # repr precision: exact
    assert list(back.ranges) == list(table.ranges)
    assert (back.method, back.num_samples, back.bins, back.percentile) == (
        "percentile", 200, 2048, 99.99)
    assert back.skipped == table.skipped
    assert [p.name for p in path.parent.iterdir()] == ["model.calib"]  # no temp file left


def test_minmax_table_has_no_bins_line(tmp_path: Path) -> None:
    table = CalibrationTable({"x": TensorRange(1.0, -1.0, 0.5)}, "minmax", 3)
    text = write_table(table, tmp_path / "t.calib").read_text()
    assert "# bins" not in text and "# percentile" not in text
    back = read_table(tmp_path / "t.calib")
    assert back.bins is None and back.percentile is None and back.skipped == {}


@pytest.mark.parametrize("name", ["has space", "", "#hash", "tab\tname"])
def test_unwritable_name(tmp_path: Path, name: str) -> None:
    table = CalibrationTable({name: TensorRange(1.0, -1.0, 1.0)}, "minmax", 1)
    with pytest.raises(CalibrationError, match="cannot be written") as err:
        write_table(table, tmp_path / "t.calib")
    assert repr(name) in str(err.value)
    assert not (tmp_path / "t.calib").exists()


def test_non_finite_range_not_written(tmp_path: Path) -> None:
    table = CalibrationTable({"mask": TensorRange(1.0, float("-inf"), 0.0)}, "minmax", 1)
    with pytest.raises(CalibrationError, match="mask"):
        write_table(table, tmp_path / "t.calib")


TPU_MLIR_TABLE = """\
# genetated time: 2023-05-10 10:00:00.123456
# histogram number: 2048
# sample number: 100
# tune number: 5
###
# op_name    threshold    min    max
images 1.0000080 0.0000000 1.0000080
122_Conv 5.2839112 -6.1234560 5.2839112

#int4_th
images 0.9000000 0.0000000 1.0000080
122_Conv 3.1000000 -6.1234560 5.2839112
#weight_scale
122_Conv_weight 3 0.1 0.2 0.3 3 0 0 0
"""


def test_reads_tpu_mlir_table(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "yolo_cali_table"
    path.write_text(TPU_MLIR_TABLE)
    with caplog.at_level(logging.WARNING):
        table = read_table(path)
    assert table.ranges == {
        "images": TensorRange(1.000008, 0.0, 1.000008),
        "122_Conv": TensorRange(5.2839112, -6.123456, 5.2839112),
    }
    assert table.num_samples == 100 and table.bins == 2048 and table.method == "unknown"
    assert "int4_th" in caplog.text and "weight_scale" in caplog.text


@pytest.mark.parametrize(("line", "what"), [
    ("conv 1.0 -1.0", "expected 'name threshold min max', found 3 fields"),
    ("conv 1.0 -1.0 abc", "not a number"),
    ("conv nan -1.0 1.0", "finite"),
    ("conv inf -1.0 1.0", "finite"),
    ("conv -1.0 -1.0 1.0", "threshold >= 0"),
    ("x 2.0 -1.0 1.0", "appears twice"),
])
def test_malformed_line_names_file_and_line(tmp_path: Path, line: str, what: str) -> None:
    path = tmp_path / "bad.calib"
    path.write_text(f"# lowbit calibration table v1\n# method: kl\nx 1 -1 1\n\n{line}\n")
    with pytest.raises(CalibrationError) as err:
        read_table(path)
    assert f"{path}:5:" in str(err.value)
    assert what in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="not found"):
        read_table(tmp_path / "nope.calib")


def test_bad_header_value(tmp_path: Path) -> None:
    path = tmp_path / "bad.calib"
    path.write_text("# samples: many\nx 1 -1 1\n")
    with pytest.raises(CalibrationError, match="samples"):
        read_table(path)


def test_channel_ranges_round_trip_as_float32(tmp_path: Path) -> None:
    table = _table()
    low = np.array([-1.5, -0.25, 0.0], np.float32).astype(np.float64)
    high = np.array([2.0, 0.3333333432674408, 7.25], np.float64)
    table.channel_ranges = {"ln/out": (low, high)}
    back = read_table(write_table(table, tmp_path / "m.calib"))
    assert back.ranges == table.ranges  # the section follows the ranges, which still read
    assert list(back.channel_ranges) == ["ln/out"]
    np.testing.assert_array_equal(back.channel_ranges["ln/out"][0].astype(np.float32), low)
    np.testing.assert_array_equal(back.channel_ranges["ln/out"][1].astype(np.float32), high)


@pytest.mark.parametrize(("line", "what"), [
    ("t 2 -1 -1 1", "expected 4 finite values for 2 channels, found 3"),
    ("t two -1 1", "reads 'tensor channels min... max...'"),
    ("t 1 2 1", "a channel's min exceeds its max"),
    ("t 1 nan 1", "finite values"),
])
def test_malformed_channel_line_names_file_and_line(tmp_path: Path, line: str,
                                                    what: str) -> None:
    path = tmp_path / "bad.calib"
    path.write_text(f"# lowbit calibration table v1\n# method: kl\nx 1 -1 1\n"
                    f"#lowbit_channel_ranges\n{line}\n")
    with pytest.raises(CalibrationError) as err:
        read_table(path)
    assert f"{path}:5:" in str(err.value) and what in str(err.value)
