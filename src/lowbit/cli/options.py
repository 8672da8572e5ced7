"""Options several commands share, spelled the same everywhere.

    add_data_option(p, help="samples to calibrate on")    # --data (old: --dataset, hidden)
    add_json_option(p)                                     # --json: the result as JSON
    add_image_options(p); image_options(args)              # --mean/--scale/... → ImageOptions
    add_weight_range(p)
    add_memory_budget_option(p)                            # --memory-budget SIZE

A data set is ``--data`` in every command (deploy's are ``--test-data`` and
``--calibration-data``); the spellings of earlier releases still parse but are hidden
from --help. This module imports nothing heavy: ``lowbit --help`` builds parsers only.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lowbit.data import ImageOptions


class Default:
    """An option's default that is not a value the user gave (prints as the value), so a
    typed flag and one left alone are told apart (deploy: typed flags override --recipe)."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __str__(self) -> str:
        return str(self.value)


def add_data_option(p: argparse.ArgumentParser, *, help: str, required: bool = True,
                    flag: str = "--data", old: Sequence[str] = ("--dataset",),
                    dest: str = "data", **kwargs: object) -> None:
    """``flag`` (default --data) with the older spellings ``old`` as hidden aliases."""
    group = p.add_mutually_exclusive_group(required=required)
    group.add_argument(flag, dest=dest, metavar="DATASET", help=help, **kwargs)  # type: ignore[arg-type]
    for spelling in old:
        group.add_argument(spelling, dest=dest, help=argparse.SUPPRESS,
                           **kwargs)  # type: ignore[arg-type]


def add_memory_budget_option(p: argparse.ArgumentParser, **kwargs: object) -> None:
    """--memory-budget SIZE: what a batch of samples may hold (lowbit.runtime.memory)."""
    p.add_argument("--memory-budget", metavar="SIZE", help="memory a batch of samples may "
                   "use, e.g. 512M or 2G (default: 768M, at most half the free memory); "
                   "the batch shrinks as the inputs grow", **kwargs)  # type: ignore[arg-type]


def add_parallel_options(p: argparse.ArgumentParser, *, what: str = "samples",
                         same: str = "the same",
                         default: str = "1, this process with all cores") -> None:
    """--workers N and --cluster {ray,local}: run ``what`` as shards (lowbit.parallel);
    the result is ``same`` whatever N (eval and compare: up to float rounding)."""
    p.add_argument("--workers", type=int, metavar="N",
                   help=f"run the {what} as shards on N worker processes (default: {default}"
                   "; with --cluster: the cluster's CPUs); the result "
                   f"is {same} whatever N")
    p.add_argument("--cluster", choices=("ray", "local"),
                   help="run the workers on Ray: 'ray' joins the cluster RAY_ADDRESS names, "
                   "'local' starts one on this machine (needs the ray extra)")


def add_json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print the result as one JSON document instead of tables (for CI)")


def add_image_options(p: argparse.ArgumentParser, *, recorded: bool = False) -> None:
    # transform records these in the meta file; every other command reads that file when
    # none of them is given, and any of them given replaces it as a whole.
    what = "image preprocessing (recorded in the meta file)" if recorded else \
        "image data (any of these replaces the preprocessing in the model's meta file)"
    group = p.add_argument_group(what)
    group.add_argument("--mean", help="per-channel mean, e.g. 123.675,116.28,103.53 "
                       "(value = (pixel - mean) * scale)")
    group.add_argument("--scale", help="per-channel scale, e.g. 0.0171,0.0175,0.0174")
    group.add_argument("--pixel-format", choices=("rgb", "bgr", "gray"),
                       help="channel order the model wants (default rgb)")
    group.add_argument("--resize", help="N: resize the shorter side to N; H,W: resize to "
                       "H,W; default: straight to the crop size")
    group.add_argument("--crop", help="H,W (or N) of the centre crop after --resize (default: "
                       "the input's height and width; another size is resized to it)")
    group.add_argument("--keep-aspect-ratio", action="store_true", default=None,
                       help="with --resize H,W or no --resize: fit the image inside keeping "
                       "its aspect ratio and pad with black (letterbox)")
    group.add_argument("--layout", choices=("nchw", "nhwc"),
                       help="the model input's layout (default: told from its shape)")


def image_options(args: argparse.Namespace) -> ImageOptions | None:
    from lowbit.cli.parsing import parse_floats, parse_ints
    from lowbit.data import ImageOptions

    given = (args.mean, args.scale, args.pixel_format, args.resize, args.crop,
             args.keep_aspect_ratio, args.layout)
    if all(value is None for value in given):
        return None
    return ImageOptions(mean=parse_floats(args.mean, "--mean") or (0.0,),
                        scale=parse_floats(args.scale, "--scale") or (1.0,),
                        pixel_format=args.pixel_format or "rgb",
                        resize=parse_ints(args.resize, "--resize") if args.resize else None,
                        crop=parse_ints(args.crop, "--crop") if args.crop else None,
                        keep_aspect_ratio=bool(args.keep_aspect_ratio),
                        layout=args.layout or "auto")


def add_weight_range(p: argparse.ArgumentParser, default: object = "auto") -> None:
    p.add_argument("--weight-range", choices=("auto", "full", "reduced", "paired"),
                   default=default,
                   help="INT8 weights: full (−127..127), reduced (7 bits, −63..63: x86 CPUs "
                   "without VNNI saturate with full-range weights), paired (MatMul, Gemm, "
                   "Conv weights 8 bits with each pair of K rows 2i, 2i+1 summing to at most "
                   "128, which those CPUs add exactly; depthwise Conv full range) or auto "
                   "(full where ONNX Runtime's kernels here are exact, else paired where its "
                   "probes confirm the layout, else reduced)")


def names(text: str | None) -> tuple[str, ...] | None:
    """Comma-separated names, stripped (None stays None)."""
    if text is None:
        return None
    return tuple(part.strip() for part in text.split(",") if part.strip())
