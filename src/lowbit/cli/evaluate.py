"""`lowbit eval`: accuracy on a data set."""

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
    p.description = ("Run the model over a data set and score it: top1/top5 "
                       "for classifiers (labels from an npz array, a folder-per-class image "
                       "tree or a labels file), psnr/ssim for image-to-image models and cos "
                       "(output cosine) against --reference or --vs. With --vs REF both models "
                       "run on the same samples and the drop and top-1 agreement are printed.")
    p.add_argument("model", help="the model to evaluate")
    add_data_option(p, help="data set (.npz/.npy/folder/images)")
    p.add_argument("--labels", help="labels: labels.npz[:key], labels.npy or a text file "
                   "(default: the data set's 'label' array or its class folders)")
    p.add_argument("--metric", default="top1,top5",
                   help="comma-separated: top1, top5, psnr, ssim, cos (default top1,top5)")
    p.add_argument("--vs", help="a second (usually float) model to evaluate on the same samples")
    p.add_argument("--reference", help="model whose outputs psnr/ssim/cos compare against")
    p.add_argument("--num", type=int, help="use the first NUM samples")
    p.add_argument("--output-name", help="which model output to score (default: the first)")
    p.add_argument("--threads", type=int, help="engine threads")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_memory_budget_option(p)
    add_parallel_options(p, same="the same up to float rounding")
    p.add_argument("--backend", default="ort", help="engine: ort (default) or openvino")
    add_image_options(p)
    add_json_option(p)

    def run(args: argparse.Namespace) -> int:
        from lowbit import api
        from lowbit.cli.render import console, eval_table, print_json

        report = api.evaluate(args.model, args.data, labels=args.labels,
                              metrics=args.metric, reference=args.reference, vs=args.vs,
                              threads=args.threads, num=args.num, output_name=args.output_name,
                              image_options=image_options(args), backend=args.backend,
                              memory_budget=args.memory_budget, workers=args.workers,
                              cluster=args.cluster, progress=not args.no_progress)
        if args.json:
            print_json(report)
            return 0
        console.print(eval_table(report))
        if report.agreement is not None:
            console.print(f"top-1 agreement: {report.agreement:.2f}%")
        return 0

    p.set_defaults(run=run)
