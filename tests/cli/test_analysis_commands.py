"""The commands beyond the INT8 slice, run in-process on small_resnet: explain, eval,
report, bench --profile, qtable, mixed deploy, and deploy to F16/BF16."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from lowbit.quantize.mixed.qtable import read_qtable
from tests.cli.test_flow import run_cli
from tests.models import small_resnet


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lowbit.cli.main import main

    root = tmp_path_factory.mktemp("analysis")
    onnx.save(small_resnet(), root / "model.onnx")
    rng = np.random.default_rng(11)
    x = rng.normal(size=(24, 3, 16, 16)).astype(np.float32)
    labels = rng.integers(0, 10, size=24)
    np.savez(root / "data.npz", input=x, label=labels)
    assert main(["transform", str(root / "model.onnx"), "-o", str(root / "f32.onnx")]) == 0
    assert main(["calibrate", str(root / "f32.onnx"), "--dataset", str(root / "data.npz"),
                 "-o", str(root / "m.calib"), "--no-progress"]) == 0
    assert main(["deploy", str(root / "f32.onnx"), "--calibration-table", str(root / "m.calib"),
                 "-o", str(root / "int8.onnx")]) == 0
    return root


def test_explain_lists_every_compute_op_as_integer(work: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run_cli(["explain", work / "int8.onnx", "--no-profile"], capsys)
    assert code == 0 and "4/4 conv/matmul/gemm run as integer kernels" in text


def test_eval_with_vs_prints_both_models_and_agreement(work: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    code, text = run_cli(["eval", work / "int8.onnx", "--dataset", work / "data.npz", "--vs",
                          work / "f32.onnx"], capsys)
    assert code == 0 and "int8.onnx" in text and "f32.onnx" in text
    assert "top-1 agreement" in text


def test_report_writes_markdown_and_html_with_both_rows(work: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    out = work / "report"
    code, _ = run_cli(["report", work / "f32.onnx", work / "int8.onnx", "--dataset",
                          work / "data.npz", "-o", out, "--repeats", "2", "--batch", "4"],
                         capsys)
    assert code == 0
    markdown = (out / "report.md").read_text()
    assert "| F32 |" in markdown and "| INT8 |" in markdown
    assert "data:image/png;base64" in (out / "report.html").read_text()


def test_report_runs_its_accuracy_pass_on_workers_with_the_same_figures(
        work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--workers 2: the accuracy columns come from merged shards and equal one process's
    (the speed columns are timings, run in this process alone either way)."""
    import lowbit

    one = lowbit.report([work / "f32.onnx", work / "int8.onnx"], work / "data.npz",
                        work / "report1", repeats=2, batch=4, workers=1)
    two = lowbit.report([work / "f32.onnx", work / "int8.onnx"], work / "data.npz",
                        work / "report2", repeats=2, batch=4, workers=2)
    for a, b in zip(one.rows, two.rows, strict=True):
        assert a.top1 == b.top1 and a.top5 == b.top5
        assert a.cos_vs_f32 == pytest.approx(b.cos_vs_f32, abs=1e-6)
    code, _ = run_cli(["report", work / "f32.onnx", "--dataset", work / "data.npz", "-o",
                       work / "report3", "--workers", "0"], capsys)
    assert code == 2 and not (work / "report3").exists()


def test_bench_profile_prints_the_op_table(work: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run_cli(["bench", work / "int8.onnx", "--profile", "--batch", "1",
                          "--repeats", "2"], capsys)
    assert code == 0 and "QLinearConv" in text and "share" in text


def test_qtable_ranks_ops_and_search_meets_a_cosine_target(
        work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ranking = work / "rank.qtable"
    code, text = run_cli(["qtable", work / "f32.onnx", "--dataset", work / "data.npz",
                          "--calibration-table", work / "m.calib", "-o", ranking, "--num", "8"],
                         capsys)
    assert code == 0 and "forward passes" in text
    table = read_qtable(ranking)
    assert table.loss and {row.op_type for row in table.loss} >= {"Conv", "Gemm"}

    chosen = work / "search.qtable"
    code, text = run_cli(["qtable", work / "f32.onnx", "--dataset", work / "data.npz",
                          "--calibration-table", work / "m.calib", "-o", chosen, "--num", "8",
                          "--target", "cos=0.99999"], capsys)
    assert code in (0, 1) and "target cos=0.99999" in text
    mixed = work / "mixed.onnx"
    code, text = run_cli(["deploy", work / "f32.onnx", "--calibration-table", work / "m.calib",
                          "--quantize-table", chosen, "-o", mixed, "--test-input",
                          work / "data.npz"], capsys)
    assert code == 0, text
    kept = set(read_qtable(chosen).precisions)
    nodes = {n.name: n.op_type for n in onnx.load(str(mixed)).graph.node}
    assert kept <= set(nodes)  # the kept ops are still there, in float


def test_deploy_f16_runs_on_ort_and_bf16_names_the_missing_kernel(
        work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f16 = work / "f16.onnx"
    code, text = run_cli(["deploy", work / "f32.onnx", "--quantize", "F16", "-o", f16,
                          "--test-input", work / "data.npz"], capsys)
    assert code == 0 and "PASSED" in text
    types = {i.data_type for i in onnx.load(str(f16)).graph.initializer}
    assert onnx.TensorProto.FLOAT in types  # method cast keeps F32 weights in the file

    bf16 = work / "bf16.onnx"
    code, text = run_cli(["deploy", work / "f32.onnx", "--quantize", "BF16", "--method", "full",
                          "-o", bf16, "--test-input", work / "data.npz"], capsys)
    assert code == 2 and "BF16" in text and "--backend openvino" in text
    assert not bf16.exists() and "Traceback" not in text


def test_precision_of_tells_each_variant_apart(work: Path) -> None:
    from lowbit.api import precision_of
    from lowbit.quantize.floats.convert import FloatSettings, convert_float

    f32 = onnx.load(str(work / "f32.onnx"))
    assert precision_of(f32) == "F32"
    assert precision_of(onnx.load(str(work / "int8.onnx"))) == "INT8"
    for method in ("cast", "full"):
        for precision in ("F16", "BF16"):
            converted = convert_float(f32, FloatSettings(precision=precision, method=method))
            assert precision_of(converted.model) == precision
    if (work / "mixed.onnx").exists():
        kept = read_qtable(work / "search.qtable").precisions
        expected = "MIXED" if any(n.op_type in ("Conv", "Gemm") and n.name in kept
                                  for n in f32.graph.node) else "INT8"
        assert precision_of(onnx.load(str(work / "mixed.onnx"))) == expected


def test_deploy_bias_correction_reports_what_it_did(work: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = work / "bc.onnx"
    code, text = run_cli(["deploy", work / "f32.onnx", "--calibration-table", work / "m.calib",
                          "--bias-correction", work / "data.npz", "-o", out, "--test-input",
                          work / "data.npz"], capsys)
    assert code == 0 and "bias correction: 4 ops" in text and out.exists()
    code, text = run_cli(["deploy", work / "f32.onnx", "--quantize", "F16", "--bias-correction",
                          work / "data.npz", "-o", work / "bc16.onnx"], capsys)
    assert code == 2 and "INT8 only" in text


def test_output_that_is_a_directory_is_a_one_line_usage_error(
        work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run_cli(["transform", work / "model.onnx", "-o", work], capsys)
    assert code == 2 and "is a directory" in text and "Traceback" not in text


def test_openvino_missing_is_checked_before_anything_is_written(
        work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError("no openvino")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    out = work / "ov.onnx"
    code, text = run_cli(["deploy", work / "f32.onnx", "--quantize", "BF16", "-o", out,
                          "--test-input", work / "data.npz", "--backend", "openvino"], capsys)
    assert code == 2 and "OpenVINO is not installed" in text and not out.exists()
