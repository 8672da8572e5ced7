"""`lowbit qtable`: sensitivity ranking, or the fewest float ops that meet a target."""

from __future__ import annotations

import argparse

from lowbit.cli.options import (
    add_data_option,
    add_json_option,
    add_memory_budget_option,
    add_parallel_options,
    add_weight_range,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Without --target: write a loss table ranking every "
                       "quantizable op by the network output's SQNR against F32 when that op "
                       "alone stays float. With --target cos=0.99 or top1-drop=0.5 (--labels): "
                       "find the smallest set of ops to keep at --fallback so the mixed model "
                       "meets it (checked by running it), print the path taken, and write "
                       "those ops as 'op_name PRECISION' lines for deploy --quantize-table.")
    p.add_argument("model", help="the float ONNX model")
    add_data_option(p, help="samples to measure on")
    p.add_argument("--calibration-table", required=True, help="table written by calibrate")
    p.add_argument("-o", "--output", required=True, help="the qtable to write")
    p.add_argument("--num", type=int, default=32, help="samples to use (default 32)")
    p.add_argument("--target", help="cos=VALUE (mean output cosine vs F32) or "
                   "top1-drop=POINTS (needs labels)")
    p.add_argument("--labels", help="labels for top1-drop, as for eval")
    p.add_argument("--fallback", default="F32", choices=("F32", "F16", "BF16"),
                   type=str.upper, help="precision of the ops taken out of INT8 (default F32)")
    p.add_argument("--activation", choices=("uint8", "int8"), default="uint8",
                   help="activation type of the INT8 part")
    add_weight_range(p)
    add_memory_budget_option(p)
    add_parallel_options(p, what="candidate ops of the ranking",
                         default="one per core for a model with 16 or more Conv/Gemm/MatMul "
                         "ops and 1 MiB of weights, else 1")
    add_json_option(p)

    def run(args: argparse.Namespace) -> int:
        from lowbit import api
        from lowbit.cli.render import console, loss_table, print_json

        result = api.qtable(args.model, args.data, calibration_table=args.calibration_table,
                            output=args.output, num=args.num, target=args.target,
                            labels=args.labels, fallback=args.fallback,
                            activation=args.activation, weight_range=args.weight_range,
                            memory_budget=args.memory_budget, workers=args.workers,
                            cluster=args.cluster)
        if args.json:
            print_json(result)
            return 0 if result.search is None or result.search.met else 1
        if result.sensitivity is not None:
            console.print(loss_table(result.sensitivity.rows))
            console.print(f"sensitivity: {result.sensitivity.forward_passes:.1f} forward passes "
                          f"(full-model equivalents) on {result.sensitivity.samples} samples")
        if result.search is not None:
            for step in result.search.path:
                console.print(f"  {step.action}: {len(step.added_ops)} float op(s) → "
                              f"{step.metric:.6f} {'meets' if step.met else 'misses'} "
                              f"{args.target}")
            ops = ", ".join(result.search.float_ops) or "none"
            verdict = "met" if result.search.met else "[red]NOT met[/red]"
            console.print(f"target {args.target} {verdict} with {len(result.search.float_ops)} "
                          f"{args.fallback} op(s): {ops}; {result.search.forward_passes:.1f} "
                          "forward passes in all")
        console.print(f"wrote {result.path}")
        return 0 if result.search is None or result.search.met else 1

    p.set_defaults(run=run)
