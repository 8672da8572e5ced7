"""lowbit demo ends by packaging its INT8 model and running the bundle with lowbit-run."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lowbit.demo import asset_path, run_demo_flow, run_lowbit_run, write_digit
from lowbit.errors import LowbitError
from lowbit_run.bundle import read_bundle
from tests.package_work import Work


def test_the_digit_png_holds_the_test_pixels(tmp_path) -> None:
    path = write_digit(asset_path("mnist_test.npz"), tmp_path / "digit.png")
    with np.load(asset_path("mnist_test.npz")) as data:
        index = int(np.argmax(data["label"] == 7))
        expected = data["input"][index, 0]
    pixels = np.asarray(Image.open(path), dtype=np.float32) / 255
    np.testing.assert_allclose(pixels, expected, atol=1e-6)


def test_lowbit_run_runs_in_its_own_interpreter(work: Work) -> None:
    lines = run_lowbit_run([str(work.int8_bundle), "--input", str(work.image), "--top", "2"])
    assert lines[1] == "photo.png: top 2 of 'logits' (softmax of the output)"
    with pytest.raises(LowbitError, match="lowbit-run failed on the demo's bundle: .*not found"):
        run_lowbit_run([str(work.root / "none.lowbit"), "--input", str(work.image)])


def test_the_demo_flow_ends_with_the_bundle_naming_the_digit(tmp_path) -> None:
    lines: list[str] = []
    result = run_demo_flow(tmp_path / "demo", repeats=1, on_stage=lines.append)
    assert result.package is not None and result.package.passed
    assert read_bundle(result.package.path).report["precision"] == "INT8"
    assert any(line.startswith("5/5 package INT8") for line in lines)
    assert "digit.png: top 3 of 'logits' (softmax of the output)" in result.run_output
    assert result.run_output[2].startswith("  1. 7 (7)")
