"""`lowbit report`: one table of size | accuracy | speed per precision."""

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
    p.description = ("For each model variant (F32, INT8, …) measure size, top-1/"
                       "top-5 (when the data set has labels), batch-1 latency, batch-N "
                       "throughput, speed-up and output cosine vs F32, and write report.md and "
                       "report.html (with the layer-by-layer plot and bar charts).")
    p.add_argument("models", nargs="+", help="the variants, e.g. model.f32.onnx model.int8.onnx")
    add_data_option(p, help="data set to evaluate on")
    p.add_argument("--labels", help="labels, as for eval")
    p.add_argument("-o", "--output", required=True, help="folder to write the report into")
    p.add_argument("--batch", type=int, default=32, help="throughput batch size (default 32)")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per batch size")
    p.add_argument("--num", type=int, help="evaluate on the first NUM samples")
    p.add_argument("--threads", type=int, help="engine threads")
    add_memory_budget_option(p)
    add_parallel_options(p, what="accuracy pass's samples", same="the same up to float "
                         "rounding (the timing runs in this process, alone)")
    p.add_argument("--backend", default="ort", help="engine: ort (default) or openvino (runs "
                   "BF16 models, which ORT's CPU provider cannot)")
    add_image_options(p)
    add_json_option(p)

    def run(args: argparse.Namespace) -> int:
        from lowbit import api
        from lowbit.cli.render import console, print_json, report_table

        result = api.report(args.models, args.data, args.output, labels=args.labels,
                            batch=args.batch, repeats=args.repeats, threads=args.threads,
                            num=args.num, backend=args.backend,
                            image_options=image_options(args),
                            memory_budget=args.memory_budget, workers=args.workers,
                            cluster=args.cluster)
        if args.json:
            print_json(result)
            return 0
        console.print(report_table(result.rows))
        console.print(f"wrote {result.files.markdown} and {result.files.html}")
        return 0

    p.set_defaults(run=run)
