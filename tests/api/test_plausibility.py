"""Data that is valid but wrong: raw pixels for a model whose meta file records a 1/255
scale, or inputs orders of magnitude off the reference inputs, are warned about with the
fix; an INT8 deploy that quantizes nothing exits 1 with the reason."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest

from lowbit import api
from lowbit.api.plausibility import expected_range, input_warnings
from lowbit.calibration.observers import TensorRange
from lowbit.data import ImageOptions
from tests.cli.test_flow import run_cli
from tests.models import small_resnet


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("plausible")
    onnx.save(small_resnet(batch=1), folder / "source.onnx")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(8, 3, 16, 16)).astype(np.float32)
    np.savez(folder / "raw.npz", input=pixels)
    np.savez(folder / "raw_u8.npz", input=pixels.astype(np.uint8))
    np.savez(folder / "scaled.npz", input=pixels / 255)
    api.transform(folder / "source.onnx", folder / "model.f32.onnx", test_input=folder /
                  "scaled.npz", image_options=ImageOptions(scale=(1 / 255,)))
    return folder


def test_expected_range_of_recorded_preprocessing() -> None:
    assert expected_range(ImageOptions(scale=(1 / 255,)), fused=False) == (0.0, 1.0)
    low, high = expected_range(ImageOptions(mean=(127.5,), scale=(1 / 127.5,)), fused=False)
    assert (low, high) == (-1.0, 1.0)
    assert expected_range(ImageOptions(scale=(1 / 255,)), fused=True) == (0.0, 255.0)


def test_raw_pixels_are_warned_with_the_fix(work: Path, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING):
        table = api.calibrate(work / "model.f32.onnx", work / "raw.npz", num=4,
                              check_samples=0, progress=False)
    assert table.ranges["input"].max > 200  # calibrated, exit 0: a warning, not an error
    text = caplog.text
    assert "input 'input' spans 0..255 in" in text and "gives 0..1 (255 times as wide)" in text
    assert "looks like raw pixels: apply that preprocessing" in text


def test_integer_data_where_the_reference_is_float(work: Path) -> None:
    warnings = input_warnings(work / "model.f32.onnx", {"input": TensorRange(255, 0, 255)},
                              work / "raw_u8.npz", dtypes={"input": np.dtype("uint8")})
    assert any("is uint8 in" in w and "float32 in the reference inputs" in w for w in warnings)


def test_matching_data_is_quiet(work: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        api.calibrate(work / "model.f32.onnx", work / "scaled.npz", num=4, check_samples=0,
                      progress=False)
    assert "spans" not in caplog.text
    warnings = input_warnings(work / "model.f32.onnx", {"input": TensorRange(0.02, 0, 0.02)},
                              "small.npz")  # 1/50 of 0..1: more than a factor 10 short
    assert len(warnings) == 1 and "looks preprocessed already" in warnings[0]


def test_deploy_on_a_raw_pixel_table_says_why(work: Path) -> None:
    table = work / "raw.calib"
    api.calibrate(work / "model.f32.onnx", work / "raw.npz", num=4, check_samples=0,
                  progress=False, output=table)
    result = api.deploy(work / "model.f32.onnx", output=work / "raw.int8.onnx",
                        calibration_table=table)
    assert any("raw pixels" in note and "re-run lowbit calibrate" in note
               for note in result.notes)


def test_an_int8_deploy_that_quantizes_nothing_exits_1(work: Path,
                                                       capsys: pytest.CaptureFixture[str]):
    table = work / "huge.calib"
    api.calibrate(work / "model.f32.onnx", work / "scaled.npz", num=4, check_samples=0,
                  progress=False, output=table)
    lines = table.read_text().splitlines()
    ranges_end = next(i for i, line in enumerate(lines) if line.startswith("#lowbit_"))
    lines = [line if line.startswith("#") or i >= ranges_end else
             f"{line.split()[0]} 1e300 -1e300 1e300" for i, line in enumerate(lines)]
    table.write_text("\n".join(lines) + "\n")
    out = work / "huge.int8.onnx"
    result = api.deploy(work / "model.f32.onnx", output=out, calibration_table=table)
    assert not result.quantized and not result.passed and out.exists()
    assert result.problem is not None and "no op was quantized" in result.problem
    code, text = run_cli(["deploy", work / "model.f32.onnx", "--calibration-table", table,
                          "-o", out], capsys)
    assert code == 1 and "INT8 was asked for, but no op was quantized" in text, text
