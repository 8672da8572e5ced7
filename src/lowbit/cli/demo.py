"""`lowbit demo`: the whole flow on the MNIST model shipped with lowbit."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    from lowbit.calibration.observers import METHODS

    p.description = ("transform → calibrate → deploy (validated on 100 held-out "
                       "digits) → report (accuracy on 1,000 held-out digits, speed at batch 1 "
                       "and 32, layer-by-layer compare) → package (the INT8 model as "
                       "model.lowbit, run by lowbit-run on one digit), on a LeNet-shaped MNIST "
                       "CNN that ships with the package, ending with a precision | size | "
                       "accuracy | speed table. The data sets and every stage's file stay in "
                       "--workdir.")
    p.add_argument("--workdir", default="lowbit-demo", help="folder for the files each stage "
                   "writes (default ./lowbit-demo)")
    p.add_argument("--method", default="auto", choices=METHODS,
                   help="calibration method (default auto)")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per batch size in the "
                   "report stage")

    def run(args: argparse.Namespace) -> int:
        from lowbit import api
        from lowbit.cli.render import console, deploy_summary, report_table, validation_table
        from lowbit.demo import run_demo_flow

        def deployed(result: api.DeployResult) -> None:
            deploy_summary(result)
            if result.validation is not None:
                console.print(validation_table(result.validation))

        result = run_demo_flow(Path(args.workdir), method=args.method, repeats=args.repeats,
                               on_stage=console.print, on_deployed=deployed)
        console.print(report_table(result.report.rows))
        console.print(f"report: {result.report.files.html} and {result.report.files.markdown}")
        console.print(f"files of every stage are in {result.workdir}/")
        if not result.deploy.passed:
            console.print("[red]validation FAILED[/red]: the INT8 model misses the tolerance "
                          "(try another --method)")
        bundled = result.package is None or result.package.passed
        if not bundled:
            console.print("[red]validation FAILED[/red]: the bundled INT8 model misses the "
                          "tolerance")
        return 0 if result.deploy.passed and bundled else 1

    p.set_defaults(run=run)
