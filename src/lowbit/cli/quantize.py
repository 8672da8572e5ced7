"""`lowbit quantize`: the whole flow in one command."""

from __future__ import annotations

import argparse

from lowbit.cli.options import (
    Default,
    add_data_option,
    add_image_options,
    add_json_option,
    image_options,
)
from lowbit.errors import RecipeError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Quantize MODEL with the defaults (or --recipe) in one "
                       "command: transform, calibrate on the data, deploy, validate on "
                       "held-out samples of the same data (the last fifth, at most "
                       "--validate), and report accuracy, size and speed. Every stage's file "
                       "is written to the -o folder, so the stage commands can take over. "
                       "Exit code 1 when validation fails (the model is still written).")
    p.add_argument("model", help="the float model (ONNX, or any format transform imports)")
    add_data_option(p, help="samples like those the model will see: .npz (one array per "
                    "input, first axis = samples), .npy, a folder of .npz/.npy samples or of "
                    "images")
    p.add_argument("-o", "--output", required=True, metavar="FOLDER",
                   help="folder for every stage's file (model.f32.onnx, model.calib, "
                   "model.int8.onnx, validate/, report/)")
    p.add_argument("--quantize", type=str.upper, choices=("INT8", "F16", "BF16", "W4"),
                   default=Default("INT8"), help="target precision")
    p.add_argument("--recipe", metavar="FILE", help="deploy with this recipe (TOML, as "
                   "deploy --print-recipe writes)")
    p.add_argument("--tolerance", default=Default("0.99,0.90"),
                   help="minimum cosine,euclidean similarity per output")
    p.add_argument("--num", type=int, default=200, help="most samples to calibrate on")
    p.add_argument("--validate", type=int, default=100,
                   help="most held-out samples to validate and report on")
    p.add_argument("--no-report", action="store_true",
                   help="skip the report stage (its speed runs take the longest)")
    add_image_options(p, recorded=True)
    add_json_option(p)

    def run(args: argparse.Namespace) -> int:
        from lowbit import api
        from lowbit.cli.render import console, deploy_summary, report_table, validation_table
        from lowbit.recipe import read_recipe

        options = {k: v for k, v in (("quantize", args.quantize),
                                     ("tolerance", args.tolerance))
                   if not isinstance(v, Default)}
        try:
            run_ = api.quantize(args.model, args.data, args.output,
                                recipe=read_recipe(args.recipe) if args.recipe else None,
                                num=args.num, validate=args.validate,
                                image_options=image_options(args),
                                report_speed=not args.no_report, on_stage=console.print,
                                **options)
        except RecipeError as err:
            from lowbit.cli.deploy import flag_for

            raise err.renamed(flag_for) from None
        if args.json:
            from lowbit.cli.render import print_json

            print_json(run_, passed=run_.deployed.passed)
            return 0 if run_.deployed.passed else 1
        deploy_summary(run_.deployed)
        if not run_.held_out:
            console.print(f"[yellow]note:[/yellow] the data set has fewer than 8 samples: "
                          f"validation read the {run_.validation_samples} calibration "
                          "samples, not held-out ones")
        if run_.deployed.validation is not None:
            console.print(validation_table(run_.deployed.validation))
        if run_.report is not None:
            console.print(report_table(run_.report.rows))
            console.print(f"wrote {run_.report.files.markdown} and {run_.report.files.html}")
        console.print(f"wrote {run_.deployed.path}")
        return 0 if run_.deployed.passed else 1

    p.set_defaults(run=run)
