"""The commands, by name: each one's one-line help and the module that adds its options.

    COMMANDS["deploy"].module             # "lowbit.cli.deploy"
    add_command(subparsers, COMMANDS["deploy"])

``lowbit --help`` lists the commands from this table alone; a command's module (and
whatever it imports) loads only when that command runs or prints its own help.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    module: str  # defines add_arguments(parser): options, description, set_defaults(run=...)


COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("quantize", "the whole flow in one command: transform, calibrate, deploy, "
            "validate, report", "lowbit.cli.quantize"),
    Command("transform", "import and clean up a model, record its preprocessing",
            "lowbit.cli.transform"),
    Command("calibrate", "observe activation ranges over a data set", "lowbit.cli.calibrate"),
    Command("qtable", "rank ops by quantization sensitivity; search the fewest float ops "
            "that meet a target", "lowbit.cli.qtable"),
    Command("deploy", "quantize a model as a recipe says and validate it against float",
            "lowbit.cli.deploy"),
    Command("compare", "compare two models layer by layer on the same inputs",
            "lowbit.cli.compare"),
    Command("eval", "accuracy on a data set: top-1/top-5, PSNR/SSIM or cosine",
            "lowbit.cli.evaluate"),
    Command("classify", "the top classes of one image, drawn on the image",
            "lowbit.cli.classify"),
    Command("bench", "measure latency and throughput on ONNX Runtime or OpenVINO",
            "lowbit.cli.bench"),
    Command("explain", "INT8 speed advisor: which ops ORT runs as integer kernels, and why "
            "the others stay float", "lowbit.cli.explain"),
    Command("report", "one table of size | accuracy | speed per precision, as Markdown and "
            "a self-contained HTML page", "lowbit.cli.report"),
    Command("info", "what a model is and how lowbit made it", "lowbit.cli.info"),
    Command("package", "bundle a deployed model for the target: ORT format or OpenVINO IR, "
            "run by lowbit-run", "lowbit.cli.package"),
    Command("demo", "run the whole flow on the MNIST model shipped with lowbit",
            "lowbit.cli.demo"),
    Command("train", "train an MNIST CNN in FP32 and BF16, profile, deploy", "lowbit.cli.train"),
)}


def add_command(sub: argparse._SubParsersAction, command: Command, *,
                full: bool = True) -> argparse.ArgumentParser:
    """The command's parser: with every option (``full``), or only its name and help."""
    if not full:
        return sub.add_parser(command.name, help=command.help, description=command.help)
    module = importlib.import_module(command.module)
    if not hasattr(module, "add_arguments"):  # a module that makes its own parser
        module.register(sub)
        return sub.choices[command.name]
    parser: argparse.ArgumentParser = sub.add_parser(command.name, help=command.help,
                                                     description=command.help)
    module.add_arguments(parser)
    return parser
