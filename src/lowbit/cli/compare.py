"""`lowbit compare`: two models, tensor by tensor, on the same data."""

from __future__ import annotations

import argparse

from lowbit.cli.options import (
    add_data_option,
    add_json_option,
    add_memory_budget_option,
    add_parallel_options,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Run both models on --data, pair their tensors (a "
                       "quantized tensor's DequantizeLinear output with the float tensor it "
                       "stands for, a folded BN or removed Relu under its own name) and report "
                       "cosine, euclidean similarity, SQNR, max error and status (EQUAL, CLOSE, "
                       "SIMILAR, FAILED) per tensor in graph order. Exit code 1 when a tensor "
                       "fails the tolerance.")
    p.add_argument("reference", help="the reference model (usually float)")
    p.add_argument("test", help="the model to check (e.g. the INT8 one)")
    add_data_option(p, old=("--inputs", "--dataset"), help="data set to run both models on")
    p.add_argument("--tolerance", default="0.99,0.90", help="cosine,euclid (default 0.99,0.90)")
    p.add_argument("--csv", help="also write the table as CSV")
    p.add_argument("--plot", help="also draw SQNR and cosine per layer (PNG)")
    p.add_argument("--dump", help="write every compared tensor of both models to this folder "
                   "(reference.npz, test.npz; keys 'tensor:sample')")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_memory_budget_option(p)
    add_parallel_options(p, same="the same up to float rounding")
    add_json_option(p)

    def run(args: argparse.Namespace) -> int:
        from lowbit import api
        from lowbit.cli.render import console, layer_table, print_json

        report = api.compare(args.reference, args.test, args.data, tolerance=args.tolerance,
                             csv=args.csv, plot=args.plot, dump=args.dump,
                             progress=not args.no_progress,
                             memory_budget=args.memory_budget, workers=args.workers,
                             cluster=args.cluster)
        if args.json:
            print_json(report, passed=report.passed)
            return 0 if report.passed else 1
        console.print(layer_table(report))
        if report.unpaired:
            console.print(f"{report.unpaired} reference tensors have no partner in the test "
                          "model (e.g. a conv output before a folded BN or a removed "
                          "Relu) and were not compared")
        first = report.first_failure
        if first is not None:
            console.print(f"[red]first FAILED tensor: {first.name} ({first.op_type})[/red]")
        console.print(report.summary())
        for what, path in (("CSV", args.csv), ("plot", args.plot), ("tensors", args.dump)):
            if path:
                console.print(f"wrote {what}: {path}")
        return 0 if report.passed else 1

    p.set_defaults(run=run)
