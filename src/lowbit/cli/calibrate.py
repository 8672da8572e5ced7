"""`lowbit calibrate`: stream a data set through the model, write the calibration table."""

from __future__ import annotations

import argparse

from lowbit.cli.options import (
    add_data_option,
    add_image_options,
    add_json_option,
    add_memory_budget_option,
    add_parallel_options,
    image_options,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from lowbit.calibration.observers import METHODS

    p.description = ("Stream a data set through the model and write the "
                       "calibration table (lines 'tensor threshold min max'). Memory depends on "
                       "the number of tensors and bins, never on the number of samples.")
    p.add_argument("model", help="the float ONNX model")
    add_data_option(p, help=".npz (one array per input, first axis = samples), .npy, a "
                    "folder of .npz/.npy samples, or a folder of images")
    p.add_argument("-o", "--output", required=True, help="the calibration table to write")
    p.add_argument("--num", type=int, help="use the first NUM samples (default: all)")
    p.add_argument("--method", default="auto", choices=METHODS,
                   help="how to choose each tensor's range (default: auto, the candidate "
                   "threshold with the least quantization error per tensor)")
    p.add_argument("--percentile", type=float, default=99.99,
                   help="percentile of |x| for --method percentile (default 99.99)")
    p.add_argument("--bins", type=int, default=2048, help="histogram bins (default 2048)")
    p.add_argument("--input-shapes", help="fix input shapes, as for transform")
    add_image_options(p)
    p.add_argument("--threads", type=int, help="ONNX Runtime threads")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_memory_budget_option(p)
    add_parallel_options(p)
    add_json_option(p)
    p.add_argument("--check-samples", type=int, default=32, metavar="N",
                   help="auto: build the INT8 model for 5 blends between auto's thresholds "
                   "and minmax and keep the one with the best output SQNR on the first N "
                   "samples (default 32; 0 skips the check)")
    p.add_argument("--check-unsmoothed", action="store_true",
                   help="auto on a transformer whose default deploy (SmoothQuant from the "
                   "channel ranges) does not depend on the blend: score the blends on the "
                   "model deploy --smooth off builds, for that deploy (default: not scored, "
                   "auto's own thresholds kept)")
    p.add_argument("--no-input-means", action="store_true",
                   help="leave out each Conv/Gemm's mean input (the table's "
                   "#lowbit_input_means section), from which deploy corrects biases "
                   "without data")
    p.add_argument("--no-channel-ranges", action="store_true",
                   help="leave out the per-channel min/max of each MatMul/Gemm input (the "
                   "table's #lowbit_channel_ranges section), from which deploy applies "
                   "SmoothQuant to transformers without data")

    def run(args: argparse.Namespace) -> int:
        from lowbit import api
        from lowbit.cli.parsing import parse_shapes
        from lowbit.cli.render import console, print_json

        table = api.calibrate(
            args.model, args.data, num=args.num, method=args.method,
            percentile=args.percentile, bins=args.bins, output=args.output,
            input_shapes=parse_shapes(args.input_shapes), image_options=image_options(args),
            threads=args.threads, progress=not args.no_progress,
            input_means=not args.no_input_means, channel_ranges=not args.no_channel_ranges,
            check_samples=args.check_samples, check_unsmoothed=args.check_unsmoothed,
            memory_budget=args.memory_budget,
            workers=args.workers, cluster=args.cluster)
        if args.json:
            print_json(table)
            return 0
        console.print(f"calibrated {len(table.ranges)} tensors on {table.num_samples} samples "
                      f"({table.method}); wrote {args.output}")
        for name, reason in table.skipped.items():
            console.print(f"  {name} will stay float: {reason}")
        return 0

    p.set_defaults(run=run)
