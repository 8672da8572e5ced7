"""write_report / build_rows: the numbers given are the numbers shown, and the HTML stands alone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lowbit.analysis.bench import BatchTiming, BenchComparison, BenchResult
from lowbit.analysis.evaluate import EvalResult
from lowbit.analysis.plots import plot_bars
from lowbit.analysis.report import ReportRow, build_rows, write_report
from lowbit.errors import UsageError

ROWS = [
    ReportRow("F32", "m.f32.onnx", 0.2514, 97.9, 99.95, 0.1234, 41234.56, 32, 1.0, 1.0),
    ReportRow("INT8", "m.int8.onnx", 0.0712, 97.65, 99.9, 0.0871, 90123.4, 32, 2.1857, 0.99871),
    ReportRow("F16", "m.f16.onnx", 0.13, None, None, 0.2, 30000.0, 32, 0.7275, None),
]
SHOWN = ["0.25", "0.07", "97.90%", "99.95%", "97.65%", "0.123", "0.087", "41234.6", "90123.4",
         "1.00x", "2.19x", "0.73x", "1.000000", "0.998710", "n/a"]


def test_markdown_table_shows_the_rows(tmp_path):
    files = write_report(ROWS, tmp_path / "out", title="m report", notes=["calibrated on 200"])
    assert files.markdown == tmp_path / "out" / "report.md"
    text = files.markdown.read_text()
    lines = text.splitlines()
    assert lines[0] == "# m report"
    assert lines[2] == ("| precision | size MB | top-1 | top-5 | latency b1 ms | throughput b32 "
                        "(samples/s) | speed-up vs F32 | output cos vs F32 |")
    assert lines[5] == ("| INT8 | 0.07 | 97.65% | 99.90% | 0.087 | 90123.4 | 2.19x | 0.998710 |")
    for value in SHOWN:
        assert value in text, value
    assert "- calibrated on 200" in text
    assert "INT8 = m.int8.onnx" in text


def test_html_is_self_contained_with_the_same_numbers(tmp_path):
    compare = plot_bars(["a", "b"], [1.0, 2.0], "layers", "dB", tmp_path / "layers.png")
    files = write_report(ROWS, tmp_path / "out", title="<m> & co", compare_plot=compare)
    page = files.html.read_text()
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "@import" not in page and "<link" not in page
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert len(sources) == 3  # speed-up, top-1, compare plot
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "&lt;m&gt; &amp; co" in page
    for value in SHOWN:
        assert value in page, value
    assert [p.name for p in files.images] == ["speedup.png", "top1.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in files.images)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_rows_without_accuracy_skip_the_top1_chart(tmp_path):
    rows = [ROWS[2]]
    files = write_report(rows, tmp_path, title="t")
    assert [p.name for p in files.images] == ["speedup.png"]
    with pytest.raises(UsageError, match="compare plot not found"):
        write_report(rows, tmp_path, title="t", compare_plot=tmp_path / "none.png")


def test_build_rows_from_bench_and_eval():
    def result(name: str, size: int, b1_ms: float, b8_tput: float) -> BenchResult:
        return BenchResult(name, size, (BatchTiming(1, b1_ms, b1_ms, 1000 / b1_ms),
                                        BatchTiming(8, 2.0, 2.5, b8_tput)))

    bench = BenchComparison((result("a.onnx", 4_000_000, 0.5, 400.0),
                             result("b.onnx", 1_000_000, 0.25, 1000.0)))
    evals = [EvalResult("a.onnx", {"top1": 90.0, "top5": 99.0, "cos": 1.0}, 100),
             EvalResult("b.onnx", {"top1": 89.0, "top5": 98.5, "cos": 0.995}, 100)]
    rows = build_rows([("F32", Path("w/a.onnx")), ("INT8", Path("w/b.onnx"))], evals, bench)
    assert rows[1] == ReportRow("INT8", "b.onnx", 1.0, 89.0, 98.5, 0.25, 1000.0, 8, 2.5, 0.995)
    assert rows[0].speedup == 1.0 and rows[0].size_mb == 4.0
    no_eval = build_rows([("F32", "a.onnx"), ("INT8", "b.onnx")], None, bench, f32_index=1)
    assert no_eval[0].top1 is None and no_eval[0].speedup == pytest.approx(0.4)
    with pytest.raises(UsageError, match="2 models but 1 eval"):
        build_rows([("F32", "a.onnx"), ("INT8", "b.onnx")], evals[:1], bench)


def test_a_report_without_f32_names_its_baseline(tmp_path):
    bench = BenchComparison((
        BenchResult("m.int8.onnx", 1_000, (BatchTiming(1, 0.5, 0.5, 2000.0),
                                           BatchTiming(8, 2.0, 2.5, 4000.0))),
        BenchResult("m.f16.onnx", 2_000, (BatchTiming(1, 1.0, 1.0, 1000.0),
                                          BatchTiming(8, 4.0, 5.0, 2000.0)))))
    rows = build_rows([("INT8", "w/m.int8.onnx"), ("F16", "w/m.f16.onnx")], None, bench)
    assert rows[1].speedup == pytest.approx(0.5)
    text = write_report(rows, tmp_path, title="t").markdown.read_text()
    assert "speed-up vs INT8 (m.int8.onnx) | output cos vs INT8 (m.int8.onnx) |" in text
    assert "vs F32" not in text
