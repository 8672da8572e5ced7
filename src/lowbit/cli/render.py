"""Turn API results into terminal tables (rich). Printing lives here and in main only."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from lowbit.analysis.bench import BenchComparison
from lowbit.analysis.validate import ValidationReport
from lowbit.api import DeployResult
from lowbit.demo import DemoResult

console = Console(highlight=False)


def validation_table(report: ValidationReport, title: str = "validation") -> Table:
    tol = report.tolerance
    table = Table(title=f"{title} (tolerance cos ≥ {tol.cosine}, euclid ≥ {tol.euclid})")
    for column in ("output", "shape", "cosine", "euclid", "SQNR dB", "max |err|", "status"):
        table.add_column(column, justify="left" if column in ("output", "status") else "right")
    for check in report.checks:
        table.add_row(check.name, "x".join(map(str, check.shape)), f"{check.cosine:.6f}",
                      f"{check.euclid:.6f}", f"{check.sqnr_db:.2f}", f"{check.max_abs_error:.4g}",
                      "[green]PASSED[/green]" if check.passed else "[red]FAILED[/red]")
    return table


def deploy_summary(result: DeployResult) -> None:
    counts = Counter(d.op_type for d in result.quantized)
    quantized = ", ".join(f"{n} {op}" for op, n in sorted(counts.items())) or "nothing"
    console.print(f"quantized to {result.precision}: {quantized}")
    if result.removed:
        removed = Counter(d.op_type for d in result.removed)
        console.print("folded into the preceding op's range: "
                      + ", ".join(f"{n} {op}" for op, n in sorted(removed.items())))
    if result.left_float:
        console.print(f"left float ({len(result.left_float)}):")
        for decision in result.left_float:
            console.print(f"  {decision.op_type} {decision.name}: {decision.reason}")
    else:
        console.print("left float: none")
    if result.advice is not None:
        console.print(f"ONNX Runtime: {result.advice.summary()}")
        for op in result.advice.float_ops:
            console.print(f"  {op.op_type} {op.name} runs as {op.kernel or 'float'}: {op.reason}")


def bench_table(comparison: BenchComparison) -> Table:
    table = Table(title="bench (median of interleaved runs)")
    for column in ("model", "size MB", "batch", "median ms", "p90 ms", "throughput /s"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for result in comparison.results:
        for timing in result.timings:
            note = " (sequential)" if timing.sequential else ""
            table.add_row(result.model, f"{result.size_bytes / 1e6:.2f}", f"{timing.batch}{note}",
                          f"{timing.median_ms:.3f}", f"{timing.p90_ms:.3f}",
                          f"{timing.throughput:.1f}")
    return table


def demo_table(result: DemoResult) -> Table:
    table = Table(title="MNIST LeNet: F32 vs INT8 (ONNX Runtime, CPU)")
    for column in ("precision", "size MB", "top-1 %", "cos vs F32", "latency b1 ms",
                   "throughput b32 /s", "speed-up b32"):
        table.add_column(column, justify="left" if column == "precision" else "right")
    for row in result.rows:
        table.add_row(row.precision, f"{row.size_bytes / 1e6:.2f}", f"{row.top1:.1f}",
                      f"{row.cosine_vs_f32:.5f}", f"{row.latency_b1_ms:.3f}",
                      f"{row.throughput_b32:.0f}", f"{row.speedup_b32:.2f}x")
    return table
