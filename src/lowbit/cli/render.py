"""Turn API results into terminal tables (rich). Printing lives here and in main only."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.table import Table

from lowbit.analysis.bench import BenchComparison
from lowbit.analysis.classify import Classification
from lowbit.analysis.evaluate import EvalReport, format_metric
from lowbit.analysis.layerwise import LayerReport
from lowbit.analysis.report import ReportRow, baseline_of
from lowbit.analysis.validate import ValidationReport
from lowbit.api import DeployResult
from lowbit.quantize.int8.qdq import NodeDecision
from lowbit.quantize.mixed.qtable import LossRow

# Piped output (CI logs, files) gets a wide fixed width instead of rich's 80 columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)


# Column kinds: a name wraps (folds) where it must, a number never does, and a status
# word keeps its line. rich shrinks wrapping columns first, so at 80 columns a long tensor
# name folds onto more lines while every figure stays whole.
NAME, NUMBER, WORD = "name", "number", "word"


def _table(title: str, columns: Sequence[tuple[str, str]]) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0))
    for header, kind in columns:
        if kind != NAME and len(header) > 9 and " " in header:  # two lines, not a wide column
            cut = min((i for i, c in enumerate(header) if c == " "),
                      key=lambda i: abs(i - len(header) / 2))
            header = f"{header[:cut]}\n{header[cut + 1:]}"
        if kind == NAME:
            table.add_column(header, overflow="fold", min_width=min(10, len(header) + 2))
        else:
            table.add_column(header, justify="right" if kind == NUMBER else "left",
                             no_wrap=True)
    return table


def validation_table(report: ValidationReport, title: str = "validation") -> Table:
    tol = report.tolerance
    table = _table(f"{title} (tolerance cos ≥ {tol.cosine}, euclid ≥ {tol.euclid})",
                   [("output", NAME), ("shape", NAME), ("cosine", NUMBER), ("euclid", NUMBER),
                    ("SQNR dB", NUMBER), ("max |err|", NUMBER), ("status", WORD)])
    for check in report.checks:
        table.add_row(check.name, "x".join(map(str, check.shape)), f"{check.cosine:.6f}",
                      f"{check.euclid:.6f}", f"{check.sqnr_db:.2f}", f"{check.max_abs_error:.4g}",
                      "[green]PASSED[/green]" if check.passed else "[red]FAILED[/red]")
    return table


def deploy_summary(result: DeployResult) -> None:
    counts = Counter(d.op_type for d in result.quantized)
    quantized = ", ".join(f"{n} {op}" for op, n in sorted(counts.items())) or "nothing"
    verb = "converted" if result.precision in ("F16", "BF16") else "quantized"
    console.print(f"{verb} to {result.precision}: {quantized}")
    if result.removed:
        removed = Counter(d.op_type for d in result.removed)
        console.print("folded into the preceding op's range: "
                      + ", ".join(f"{n} {op}" for op, n in sorted(removed.items())))
    if result.left_float:
        console.print(f"left float ({len(result.left_float)}):")
        for line in left_float_lines(result.left_float):
            console.print(line, soft_wrap=True, markup=False)
    else:
        console.print("left float: none")
    for note in result.notes:
        console.print(f"note: {note}", soft_wrap=True, markup=False)
    if result.advice is not None:
        console.print(f"ONNX Runtime: {result.advice.summary()}")
        for op in result.advice.float_ops:
            console.print(f"  {op.op_type} {op.name} runs as {op.kernel or 'float'}: {op.reason}")


def left_float_lines(decisions: Sequence[NodeDecision], shown: int = 3) -> list[str]:
    """One line per (op type, reason); a group of more than ``shown`` ops names the first
    ``shown`` and counts the rest, so a transformer's hundreds of float ops stay readable."""
    groups: dict[tuple[str, str], list[str]] = {}
    for decision in decisions:
        groups.setdefault((decision.op_type, decision.reason), []).append(decision.name)
    lines = []
    for (op_type, reason), names in groups.items():
        if len(names) == 1:
            lines.append(f"  {op_type} {names[0]}: {reason}")
            continue
        listed = ", ".join(names[:shown]) + (f", … (+{len(names) - shown})"
                                             if len(names) > shown else "")
        lines.append(f"  {len(names)} {op_type} ({listed}): {reason}")
    return lines


def bench_table(comparison: BenchComparison) -> Table:
    table = _table("bench (median of interleaved runs)",
                   [("model", NAME), ("engine", WORD), ("computes in", NAME), ("size MB", NUMBER),
                    ("batch", NUMBER), ("median ms", NUMBER), ("p90 ms", NUMBER),
                    ("throughput /s", NUMBER)])
    for result in comparison.results:
        for timing in result.timings:
            note = " (sequential)" if timing.sequential else ""
            table.add_row(result.model, result.backend, result.precision_used,
                          f"{result.size_bytes / 1e6:.2f}", f"{timing.batch}{note}",
                          f"{timing.median_ms:.3f}", f"{timing.p90_ms:.3f}",
                          f"{timing.throughput:.1f}")
    return table


def layer_table(report: LayerReport) -> Table:
    tol = report.tolerance
    table = _table(f"layer by layer over {report.samples} samples "
                   f"(tolerance cos ≥ {tol.cosine}, euclid ≥ {tol.euclid})",
                   [("tensor", NAME), ("op", NAME), ("shape", NAME), ("cosine", NUMBER),
                    ("euclid", NUMBER), ("SQNR dB", NUMBER), ("max |err|", NUMBER),
                    ("status", WORD)])
    colours = {"EQUAL": "green", "CLOSE": "green", "SIMILAR": "cyan", "FAILED": "red"}
    for diff in report.diffs:
        status = str(diff.status)
        table.add_row(diff.name, diff.op_type, "x".join(map(str, diff.shape)),
                      f"{diff.cosine:.6f}", f"{diff.euclid:.6f}", f"{diff.sqnr_db:.2f}",
                      f"{diff.max_abs_error:.4g}", f"[{colours.get(status, 'white')}]{status}"
                      f"[/{colours.get(status, 'white')}]")
    return table


def eval_table(report: EvalReport) -> Table:
    names = list(report.results[0].metrics)
    table = _table("evaluation", [("model", NAME), ("samples", NUMBER),
                                  *((name, NUMBER) for name in names)])
    for result in report.results:
        table.add_row(result.model, str(result.num_samples),
                      *(format_metric(n, result.metrics[n]) for n in names))
    if len(report.results) > 1:
        table.add_row("drop (vs − model)", "", *(f"{report.drop(n):+.3g}" for n in names))
    return table


def report_table(rows: tuple[ReportRow, ...] | list[ReportRow]) -> Table:
    batch = rows[0].throughput_batch if rows else 0
    table = _table("size | accuracy | speed",
                   [("precision", WORD), ("size MB", NUMBER), ("top-1 %", NUMBER),
                    ("top-5 %", NUMBER), ("latency b1 ms", NUMBER),
                    (f"throughput b{batch} /s", NUMBER), (f"speed-up vs {baseline_of(rows)}",
                                                          NUMBER),
                    (f"cos vs {baseline_of(rows)}", NUMBER)])

    def fmt(value: float | None, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    for row in rows:
        table.add_row(row.precision, f"{row.size_mb:.2f}", fmt(row.top1, ".2f"),
                      fmt(row.top5, ".2f"), f"{row.latency_b1_ms:.3f}", f"{row.throughput:.0f}",
                      f"{row.speedup:.2f}x", fmt(row.cos_vs_f32, ".6f"))
    return table


def loss_table(rows: list[LossRow]) -> Table:
    table = _table("sensitivity: network output vs F32 when the op alone stays float",
                   [("No.", NUMBER), ("layer", NAME), ("op", NAME), ("SQNR dB", NUMBER),
                    ("cosine", NUMBER)])
    for rank, row in enumerate(rows, start=1):
        table.add_row(str(rank), row.name, row.op_type, f"{row.sqnr_db:.2f}",
                      f"{row.cosine:.6f}")
    return table


def classify_table(result: Classification) -> Table:
    table = _table(f"top {len(result.predictions)}",
                   [("rank", NUMBER), ("class", NAME), ("index", NUMBER), ("score", NUMBER)])
    for rank, prediction in enumerate(result.predictions, start=1):
        table.add_row(str(rank), prediction.label, str(prediction.index),
                      f"{prediction.score:.4f}")
    return table


def print_json(result: object, **extra: object) -> None:
    """``result`` (a result dataclass, mapping or list) as one JSON document on stdout;
    ``extra`` adds keys (a dataclass result's properties, such as ``passed``)."""
    import json

    found = jsonable(result)
    if extra and isinstance(found, dict):
        found.update({key: jsonable(value) for key, value in extra.items()})
    console.print(json.dumps(found, indent=2), markup=False, soft_wrap=True, highlight=False)


def jsonable(value: object, *, max_items: int = 4096) -> object:
    """Plain JSON values: dataclasses as their fields, paths as text, numpy scalars as
    numbers, arrays as lists (a large array as its shape and dtype), NaN/Inf as text."""
    import dataclasses
    import enum
    import math
    from pathlib import Path

    import numpy as np

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray):
        if value.size > max_items:
            return {"shape": list(value.shape), "dtype": str(value.dtype)}
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str | int | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return str(value)
