"""`lowbit bench`: latency and throughput, side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

from lowbit.cli.options import add_json_option


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Time a model at each batch size (median and p90 over "
                       "repeated runs after warm-up). With --vs, both models run interleaved "
                       "in one process and the speed-up is printed.")
    p.add_argument("model", help="the model to time")
    p.add_argument("--vs", help="a second model to compare with (e.g. the float original)")
    p.add_argument("--batch", default="1,32", help="batch sizes (default 1,32)")
    p.add_argument("--threads", type=int, help="engine threads (ONNX Runtime: intra-op)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up runs (default 3)")
    p.add_argument("--repeats", type=int, default=20,
                   help="timed runs at least (default 20; a quick model runs more, in 20 ms "
                   "blocks)")
    p.add_argument("--backend", default="ort", help="engine: ort (default) or openvino")
    p.add_argument("--precision", type=str.upper, choices=("F32", "BF16", "F16"),
                   help="ask the engine to compute a float model in this precision (OpenVINO: "
                   "BF16 on AVX512-BF16/AMX CPUs; lowbit sets F32 explicitly otherwise)")
    p.add_argument("--profile", action="store_true",
                   help="also print ORT's per-op time table (op type | ms | calls | share) for "
                   "the optimized graph it really runs, at each batch size (always ONNX "
                   "Runtime, whatever --backend)")
    add_json_option(p)

    def run(args: argparse.Namespace) -> int:
        from lowbit.analysis.bench import BenchSettings, bench_models
        from lowbit.analysis.profile import profile_model
        from lowbit.cli.parsing import parse_ints
        from lowbit.cli.render import bench_table, console, print_json

        models = [args.model] + ([args.vs] if args.vs else [])
        settings = BenchSettings(batches=parse_ints(args.batch, "--batch"), threads=args.threads,
                                 warmup=args.warmup, repeats=args.repeats,
                                 backend=args.backend, precision=args.precision)
        if args.profile:
            for model in models:
                for batch in settings.batches:
                    profile = profile_model(model, batch=batch, runs=args.repeats,
                                            threads=args.threads)
                    console.print(f"op profile of {Path(model).name}, batch {batch}:")
                    console.print(profile.table(), markup=False, soft_wrap=True)
        comparison = bench_models(models, settings)
        if args.json:
            print_json(comparison)
            return 0
        console.print(bench_table(comparison))
        if args.vs:
            for batch in settings.batches:
                console.print(f"batch {batch}: {Path(args.model).name} is "
                              f"{comparison.ratio(batch):.2f}x the throughput of "
                              f"{Path(args.vs).name}")
        return 0

    p.set_defaults(run=run)
