"""Provenance: every deployed model says how it was made, lowbit info prints it, and a
re-run from it is bit-identical (or says what differs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

import lowbit
from lowbit.recipe.provenance import file_stamp, graph_sha256, read_provenance
from tests.cli.test_flow import run_cli


def test_a_deployed_model_records_its_recipe_versions_cpu_and_inputs(flow: Path) -> None:
    result = lowbit.deploy(flow / "model.f32.onnx", calibration_table=flow / "model.calib",
                           output=flow / "p.onnx", smooth="off")
    model = onnx.load(result.path)
    found = read_provenance(model)
    assert found.recipe == result.recipe
    assert found.versions["lowbit"] == lowbit.__version__ and "onnxruntime" in found.versions
    assert isinstance(found.cpu["u8s8_saturates"], bool) and "flags" in found.cpu
    assert found.inputs["calibration_table"] == file_stamp(flow / "model.calib")
    assert found.inputs["model"].sha256 == file_stamp(flow / "model.f32.onnx").sha256
    assert found.steps == result.steps
    assert found.graph_sha256 == graph_sha256(model)


def test_info_prints_it(flow: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lowbit.deploy(flow / "model.f32.onnx", calibration_table=flow / "model.calib",
                  output=flow / "i.onnx")
    code, text = run_cli(["info", flow / "i.onnx", "--json"], capsys)
    facts = json.loads(text)
    assert code == 0 and facts["precision"] == "INT8"
    assert facts["provenance"]["steps"] == ["bias_correction", "int8"]
    assert 'precision = "INT8"' in facts["provenance"]["recipe"]
    code, text = run_cli(["info", flow / "model.f32.onnx"], capsys)
    assert code == 0 and "provenance: none recorded" in text


def test_a_rerun_from_the_model_is_bit_identical_and_a_changed_table_shows(
        flow: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = flow / "first.onnx"
    lowbit.deploy(flow / "model.f32.onnx", calibration_table=flow / "model.calib",
                  output=first)
    code, text = run_cli(["deploy", flow / "model.f32.onnx", "--recipe-from", first, "-o",
                          flow / "second.onnx"], capsys)
    assert code == 0 and f"bit-identical to {first}" in text
    again = lowbit.rerun(flow / "model.f32.onnx", output=flow / "third.onnx",
                         recipe_from=first, per_channel=False)
    assert not again.identical
    assert "recipe: the settings differ (lowbit info shows both)" in again.differences
    # a table with other contents at the same path: named as the likely reason
    table = flow / "other.calib"
    table.write_bytes((flow / "model.calib").read_bytes())
    lowbit.deploy(flow / "model.f32.onnx", calibration_table=table, output=flow / "o1.onnx")
    lines = table.read_text().splitlines()
    name, threshold, low, high = next(line for line in lines
                                      if line and not line.startswith("#")).split()
    lines[lines.index(f"{name} {threshold} {low} {high}")] = \
        f"{name} {float(threshold) * 2} {low} {float(high) * 2}"
    table.write_text("\n".join(lines) + "\n")
    changed = lowbit.rerun(flow / "model.f32.onnx", output=flow / "o2.onnx",
                           recipe_from=flow / "o1.onnx")
    assert not changed.identical
    assert any(line.startswith("calibration_table: contents differ")
               for line in changed.differences)


def test_print_recipe_writes_toml_that_deploy_reads_back(
        flow: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run_cli(["deploy", flow / "model.f32.onnx", "--calibration-table",
                          flow / "model.calib", "--smooth", "0.6", "--print-recipe"], capsys)
    assert code == 0 and "alpha = 0.6" in text and not list(tmp_path.iterdir())
    path = tmp_path / "r.toml"
    path.write_text(text)
    code, out = run_cli(["deploy", flow / "model.f32.onnx", "--recipe", path, "--per-tensor",
                         "-o", tmp_path / "m.onnx"], capsys)
    assert code == 0, out
    recipe = read_provenance(onnx.load(tmp_path / "m.onnx")).recipe
    assert recipe is not None and recipe.smooth.alpha == 0.6 and not recipe.int8.per_channel


def test_recipe_mistakes_on_the_command_line_name_the_flags(
        flow: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.onnx"
    cases = [
        (["--quantize", "F16", "--weight-bits", "4"],
         "--weight-bits applies to --quantize INT8 only, not F16"),
        (["--dynamic", "--format", "qoperator"], "--dynamic does not combine with --format"),
        (["--calibration-table", flow / "model.calib", "--smooth", "7"],
         "--smooth must lie in [0, 1]"),
        (["--recipe", tmp_path / "missing.toml"], "recipe file not found"),
    ]
    for extra, message in cases:
        code, text = run_cli(["deploy", flow / "model.f32.onnx", "-o", out, *extra], capsys)
        assert code == 2 and message in text and len(text.strip().splitlines()) == 1, text
        assert not out.exists()


def test_the_python_api_refuses_wrong_types_before_writing(flow: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    for options, message in (({"quantize": 8}, "quantize must be one of"),
                             ({"tolerance": 0.99}, "tolerance must be"),
                             ({"calibration_table": 5}, "calibration_table must be a path"),
                             ({"output": None}, "output must be a path")):
        kwargs = {"calibration_table": flow / "model.calib", "output": out, **options}
        with pytest.raises(lowbit.LowbitError, match=message):
            lowbit.deploy(flow / "model.f32.onnx", **kwargs)
        assert not out.exists()
    assert np.isfinite(1.0)
