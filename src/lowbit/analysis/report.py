"""The one-table report: size | accuracy | speed per precision, as Markdown and HTML.

    results = evaluate_models([f32, int8], "val.npz", metrics=("top1", "top5", "cos"),
                              reference=f32)
    bench = bench_models([f32, int8], BenchSettings(batches=(1, 32)))
    rows = build_rows([("F32", f32), ("INT8", int8)], results, bench, f32_index=0)
    files = write_report(rows, Path("report"), title="mnist_lenet", compare_plot=Path("layers.png"))
    files.markdown, files.html, files.images     # report/report.md, report/report.html, [*.png]

``report.md`` holds the table and notes. ``report.html`` is one self-contained
page (inline CSS, images as base64 PNG data URIs, no external links, scripts or
fonts) with the same table, a bar chart of the speed-up and of top-1 per
precision, and the layer-compare plot when given. Files are written atomically
(temp file + rename). Accuracy is in percent; size in MB (10⁶ bytes); latency is
the median at batch 1; throughput is samples/s at the largest timed batch, and
the speed-up is that throughput over the F32 row's at the same batch.
"""

from __future__ import annotations

import base64
import html
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lowbit.analysis.bench import BenchComparison
from lowbit.analysis.evaluate import EvalReport, EvalResult
from lowbit.analysis.plots import plot_bars
from lowbit.atomic import write_text_atomic
from lowbit.errors import UsageError

log = logging.getLogger(__name__)

MISSING = "n/a"
_CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 62em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 0.35em 0.7em; }
th { background: #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; }
figcaption { font-size: 0.9em; color: #555; }
img { max-width: 100%; }
"""


@dataclass(frozen=True)
class ReportRow:
    """One precision of the model: its file, size, accuracy and speed."""

    precision: str
    model: str
    size_mb: float
    top1: float | None
    top5: float | None
    latency_b1_ms: float
    throughput: float
    throughput_batch: int
    speedup: float
    cos_vs_f32: float | None
    baseline: str = "F32"  # the row speed-up and cosine compare against


@dataclass(frozen=True)
class ReportFiles:
    """What write_report wrote: the Markdown, the HTML and the chart PNGs."""

    markdown: Path
    html: Path
    images: tuple[Path, ...]


def build_rows(
    models: Sequence[tuple[str, str | Path]],
    evals: EvalReport | Sequence[EvalResult | None] | None,
    bench: BenchComparison,
    f32_index: int = 0,
) -> list[ReportRow]:
    """Rows from (precision, model path) pairs, their eval results and bench results, all in
    the same order; ``f32_index`` is the row the speed-up divides by."""
    results = evals.results if isinstance(evals, EvalReport) else evals
    if results is not None and len(results) != len(models):
        raise UsageError(f"build_rows: {len(models)} models but {len(results)} eval results")
    if len(bench.results) != len(models):
        raise UsageError(f"build_rows: {len(models)} models but {len(bench.results)} bench "
                         f"results")
    if not 0 <= f32_index < len(models):
        raise UsageError(f"build_rows: f32_index {f32_index} is not one of the "
                         f"{len(models)} rows")
    batch = max(t.batch for t in bench.results[f32_index].timings)
    base = bench.results[f32_index].timing(batch).throughput
    precision, path = models[f32_index]
    baseline = "F32" if precision == "F32" else f"{precision} ({Path(path).name})"
    rows = []
    for index, (precision, path) in enumerate(models):
        timed = bench.results[index]
        result = results[index] if results is not None else None
        metrics = result.metrics if result is not None else {}
        throughput = timed.timing(batch).throughput
        rows.append(ReportRow(
            precision=precision, model=Path(path).name, size_mb=timed.size_bytes / 1e6,
            top1=metrics.get("top1"), top5=metrics.get("top5"),
            latency_b1_ms=timed.timing(1).median_ms, throughput=throughput,
            throughput_batch=batch, speedup=throughput / base if base > 0 else math.nan,
            cos_vs_f32=metrics.get("cos"), baseline=baseline))
    return rows


def write_report(rows: Sequence[ReportRow], out_dir: str | Path, *, title: str,
                 compare_plot: Path | None = None, notes: Sequence[str] = ()) -> ReportFiles:
    """Write report.md, report.html and the charts into ``out_dir``; see the module."""
    if not rows:
        raise UsageError("a report needs at least one row, found none")
    if compare_plot is not None and not Path(compare_plot).is_file():
        raise UsageError(f"compare plot not found: {compare_plot}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    all_notes = [*_model_notes(rows), *notes]
    images = _write_charts(rows, out)
    markdown = _write_text(out / "report.md", render_markdown(rows, title, all_notes))
    figures = [(path, caption) for path, caption in images]
    if compare_plot is not None:
        figures.append((Path(compare_plot), "layer-by-layer compare"))
    page = _write_text(out / "report.html", render_html(rows, title, all_notes, figures))
    return ReportFiles(markdown, page, tuple(path for path, _ in images))


# --------------------------------------------------------------------------- table


def table_header(rows: Sequence[ReportRow]) -> list[str]:
    batches = {row.throughput_batch for row in rows}
    throughput = f"throughput b{batches.pop()}" if len(batches) == 1 else "throughput"
    return ["precision", "size MB", "top-1", "top-5", "latency b1 ms",
            f"{throughput} (samples/s)", f"speed-up vs {baseline_of(rows)}",
            f"output cos vs {baseline_of(rows)}"]


def baseline_of(rows: Sequence[ReportRow]) -> str:
    """What the rows' speed-up and cosine compare against (F32 unless no variant is)."""
    return rows[0].baseline if rows else "F32"


def table_cells(row: ReportRow, uniform_batch: bool = True) -> list[str]:
    """A row's cells as both the Markdown and the HTML show them."""
    throughput = f"{row.throughput:.1f}"
    if not uniform_batch:
        throughput += f" (b{row.throughput_batch})"
    return [row.precision, f"{row.size_mb:.2f}", _percent(row.top1), _percent(row.top5),
            f"{row.latency_b1_ms:.3f}", throughput, f"{row.speedup:.2f}x",
            MISSING if row.cos_vs_f32 is None else f"{row.cos_vs_f32:.6f}"]


def render_markdown(rows: Sequence[ReportRow], title: str, notes: Sequence[str]) -> str:
    header = table_header(rows)
    uniform = len({row.throughput_batch for row in rows}) == 1
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(table_cells(row, uniform)) + " |" for row in rows]
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def render_html(rows: Sequence[ReportRow], title: str, notes: Sequence[str],
                figures: Sequence[tuple[Path, str]]) -> str:
    esc = html.escape
    uniform = len({row.throughput_batch for row in rows}) == 1
    head = "".join(f"<th>{esc(h)}</th>" for h in table_header(rows))
    body = []
    for row in rows:
        cells = table_cells(row, uniform)
        body.append("<tr><td>" + esc(cells[0]) + "</td>"
                    + "".join(f'<td class="num">{esc(c)}</td>' for c in cells[1:]) + "</tr>")
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{esc(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
        f"<h1>{esc(title)}</h1>", f"<table><thead><tr>{head}</tr></thead>",
        "<tbody>", *body, "</tbody></table>",
    ]
    if notes:
        parts += ["<ul>", *(f"<li>{esc(note)}</li>" for note in notes), "</ul>"]
    for path, caption in figures:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{esc(caption)}">'
                     f"<figcaption>{esc(caption)}</figcaption></figure>")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _percent(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}%"


def _model_notes(rows: Sequence[ReportRow]) -> list[str]:
    files = ", ".join(f"{row.precision} = {row.model}" for row in rows)
    return [f"models: {files}",
            "latency: median at batch 1; throughput and speed-up at batch "
            + "/".join(sorted({str(row.throughput_batch) for row in rows}))]


# --------------------------------------------------------------------------- files


def _write_charts(rows: Sequence[ReportRow], out: Path) -> list[tuple[Path, str]]:
    labels = [row.precision for row in rows]
    base = baseline_of(rows)
    charts = [(_chart(labels, [row.speedup for row in rows], f"speed-up vs {base}",
                      f"x (throughput / {base})", out / "speedup.png"), f"speed-up vs {base}")]
    scored = [row for row in rows if row.top1 is not None]
    if scored:
        values = [row.top1 for row in scored if row.top1 is not None]
        charts.append((_chart([row.precision for row in scored], values, "top-1 accuracy",
                              "top-1 (%)", out / "top1.png"), "top-1 accuracy"))
    return charts


def _chart(labels: list[str], values: list[float], title: str, ylabel: str, path: Path) -> Path:
    return plot_bars(labels, values, title, ylabel, path)  # written atomically


def _write_text(path: Path, text: str) -> Path:
    write_text_atomic(path, text)
    return path


__all__ = ["ReportFiles", "ReportRow", "build_rows", "render_html", "render_markdown",
           "write_report"]
