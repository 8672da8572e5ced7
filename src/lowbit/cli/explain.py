"""`lowbit explain`: which ops ONNX Runtime runs as integer kernels, and why not."""

from __future__ import annotations

import argparse

from lowbit.cli.options import add_json_option


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Read the graph ONNX Runtime really runs after its "
                       "optimizations and report, for every Conv/MatMul/Gemm/ConvTranspose, "
                       "whether it became an integer kernel or fell back to float, with the "
                       "reason, and the share of profiled time spent in float fallbacks.")
    p.add_argument("model", help="a quantized (QDQ or QOperator) ONNX model")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    p.add_argument("--no-profile", action="store_true",
                   help="skip the profiled runs (no time shares)")
    add_json_option(p)

    def run(args: argparse.Namespace) -> int:
        from lowbit.analysis.explain import explain_int8
        from lowbit.cli.render import console, print_json

        advice = explain_int8(args.model, threads=args.threads, profile=not args.no_profile)
        if args.json:
            print_json(advice)
            return 0
        console.print(advice.table(), markup=False, soft_wrap=True)
        return 0

    p.set_defaults(run=run)
