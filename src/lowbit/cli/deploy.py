"""`lowbit deploy`: flags → a recipe → the API, and printing.

    lowbit deploy work/model.f32.onnx --calibration-table work/model.calib -o m.int8.onnx
    lowbit deploy work/model.f32.onnx --recipe int8.toml --smooth 0.7 -o m.int8.onnx
    lowbit deploy work/model.f32.onnx --recipe int8.toml --print-recipe     # nothing run
    lowbit deploy work/model.f32.onnx --recipe-from m.int8.onnx -o again.int8.onnx

Every recipe flag's default is a ``Default`` that prints as the default, so a flag the
user typed and one left alone are told apart: typed flags override --recipe's file.
"""

from __future__ import annotations

import argparse
from typing import Any

from lowbit.cli.options import (
    Default,
    add_data_option,
    add_json_option,
    add_memory_budget_option,
    add_parallel_options,
    add_weight_range,
)
from lowbit.errors import RecipeError, UsageError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Rewrite the model as a recipe says — INT8 QDQ (ONNX "
                       "Runtime fuses it into integer kernels; a qtable keeps chosen ops at "
                       "F32/F16/BF16), F16/BF16 or W4 (4-bit weight-only MatMuls) — write it "
                       "with its provenance (lowbit info shows it), and with --test-data "
                       "compare its outputs with the reference. The recipe comes from these "
                       "flags, from --recipe FILE (flags given here override it) or from "
                       "--recipe-from MODEL. Exit code 1 when a tolerance fails (the model is "
                     "still written).")
    p.add_argument("model", help="the float ONNX model, or a QDQ model that arrives "
                   "quantized (its scales kept, or --requantize)")
    p.add_argument("-o", "--output", help="the model to write (required unless --print-recipe)")
    plan = p.add_argument_group("the recipe")
    plan.add_argument("--recipe", metavar="FILE", help="read the recipe from a TOML file "
                      "(--print-recipe writes one); flags given here override its settings")
    plan.add_argument("--recipe-from", metavar="MODEL",
                      help="re-run the recipe recorded in a model lowbit deployed, and say "
                      "whether the new model is bit-identical to it")
    plan.add_argument("--print-recipe", action="store_true",
                      help="print the effective recipe (defaults included) as TOML and stop")
    _D = Default
    p.add_argument("--quantize", default=_D("INT8"), type=str.upper,
                   choices=("INT8", "F16", "BF16", "W4"),
                   help="target precision (W4: 4-bit weight-only MatMuls as ONNX Runtime's "
                   "MatMulNBits, activations stay float)")
    p.add_argument("--calibration-table", default=_D(None),
                   help="table written by calibrate (needed for INT8)")
    p.add_argument("--quantize-table", default=_D(None),
                   help="INT8 only: mixed precision from a qtable of 'op_name PRECISION' lines "
                   "(F32, F16, BF16) keeping those ops out of INT8")
    add_data_option(p, flag="--test-data", old=("--test-input",), dest="test_input",
                    required=False, default=_D(None), help="data set to validate on")
    p.add_argument("--test-reference", default=_D(None),
                   help="reference outputs (.npz); default: run the float model on "
                   "--test-data")
    p.add_argument("--float-model", metavar="MODEL", default=_D(None),
                   help="the float original of a model that arrives quantized (a QDQ model "
                   "from ONNX Runtime's quantizer, NNCF or lowbit.qat): its outputs on "
                   "--test-data are the reference")
    p.add_argument("--requantize", action="store_true", default=_D(False),
                   help="a model that arrives quantized: strip its Q/DQ (weights "
                   "dequantized) and quantize the float graph again with lowbit's rules "
                   "and --calibration-table, instead of keeping its scales")
    p.add_argument("--float-weights", action="store_true", default=_D(False),
                   help="with --requantize and --float-model: take the weights and biases "
                   "from the float original (matched by node name and shape) instead of "
                   "dequantizing the rounded ones; for a model quantized after training, "
                   "not a QAT export whose weights were trained quantized")
    p.add_argument("--tolerance", default=_D("0.99,0.90"),
                   help="minimum cosine,euclidean similarity per output")
    p.add_argument("--activation", choices=("uint8", "int8"), default=_D("uint8"),
                   help="activation type: uint8 asymmetric (fastest on ORT CPU) or int8 "
                   "symmetric")
    p.add_argument("--per-tensor", action="store_true", default=_D(False),
                   help="one weight scale per tensor instead of per output channel")
    p.add_argument("--format", choices=("qdq", "qoperator"), default=_D("qdq"),
                   help="qdq or qoperator (QLinearConv/QLinearMatMul)")
    p.add_argument("--float-method", choices=("cast", "full"), default=_D("cast"),
                   help="F16/BF16: cast (weights stay F32, Casts into the low type) or full "
                   "(weights stored in the low type, half the file)")
    p.add_argument("--method", dest="float_method", choices=("cast", "full"),
                   default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # the old name
    p.add_argument("--no-keep-io-types", action="store_true", default=_D(False),
                   help="F16/BF16: make the model's inputs and outputs the low type too")
    p.add_argument("--keep-float", default=_D(None),
                   help="F16/BF16: op types or node names to keep F32 (replaces the default "
                   "Softmax,LogSoftmax,LayerNormalization,ReduceMean,...)")
    correction = p.add_mutually_exclusive_group()
    correction.add_argument("--bias-correction", metavar="DATASET", default=_D(None),
                            help="INT8: remove the per-channel mean shift that weight rounding "
                            "causes, measured on the first 32 samples of DATASET (default: "
                            "from the mean inputs the calibration table holds)")
    correction.add_argument("--no-bias-correction", action="store_true", default=_D(False),
                            help="INT8: keep the biases as they are")
    p.add_argument("--backend", default=_D("ort"), help="engine for validation: ort or "
                   "openvino (the openvino extra: pip install '.[openvino]')")
    p.add_argument("--input-shapes", default=_D(None),
                   help="fix input shapes, as for transform")
    add_memory_budget_option(p, default=_D(None))
    p.add_argument("--target", metavar="METRIC=VALUE", default=_D(None),
                   help="INT8: reach this agreement with float on --calibration-data "
                   "(cos=0.995: mean output cosine; sqnr=30: output SQNR in dB; "
                   "top1-drop=0.5: points of top-1, with labels; auto: cos=0.995 for a model "
                   "with a dense output map, else cos=0.999), climbing from the defaults "
                   "through AdaRound (with torch) to the fewest ops kept float; exit 1 when "
                   "it cannot be met (the closest model is written). With --speed guard, a "
                   "model with no INT8 gain on this CPU ships F32, which meets any target, "
                   "and nothing is searched")
    p.add_argument("--speed", choices=("guard", "off"), default=_D("guard"),
                   help="INT8: guard times the INT8 model against float on this machine and "
                   "keeps float the INT8 islands that make it slower (Q/DQ edges around "
                   "tiny convs), or the whole model where no INT8 configuration reaches "
                   "float's speed; off skips the timing")
    p.add_argument("--speed-batch", type=int, metavar="N", default=_D(None),
                   help="INT8 speed guard: time at this batch size only, the one the model "
                   "will run at (INT8's gain over float changes with the batch); the model's "
                   "batch dimension must be free (default: batch 1, and 8 where one run is "
                   "quick)")
    add_weight_range(p, _D("auto"))
    _weight_only(p)
    add_parallel_options(p, what="samples of --algorithm gptq's statistics",
                         same="the same up to float rounding")
    _transformer(p)
    _conv_accuracy(p)
    add_json_option(p)
    p.set_defaults(run=_run)


def _weight_only(p: argparse.ArgumentParser) -> None:
    D = Default
    group = p.add_argument_group("W4 (4-bit weight-only MatMul, --quantize W4)")
    p.add_argument("--calibration-data", metavar="DATASET", default=D(None),
                   help="inputs like those the model will see, for every algorithm that "
                   "needs data and is not given its own: --algorithm gptq, --smooth, "
                   "--adaround, --equalize (first 128 samples)")
    group.add_argument("--block-size", type=int, default=D(32),
                       help="rows of K that share one scale (16, 32, 64, 128 or 256)")
    group.add_argument("--algorithm", choices=("rtn", "gptq"), default=D("rtn"),
                       help="rtn: round to nearest (no data); gptq: compensate rounding with "
                       "input statistics from --calibration-data")
    group.add_argument("--float-embeddings", action="store_true", default=D(False),
                       help="keep large embedding tables (a Gather's constant [V, H]) float; "
                       "by default they are stored int8 per hidden channel")
    group.add_argument("--symmetric-weights", action="store_true", default=D(False),
                       help="no zero points (codes -7..7) instead of a 4-bit zero point per "
                       "block")
    group.add_argument("--act-order", action="store_true", default=D(False),
                       help="gptq: quantize the inputs with most energy first")


def _transformer(p: argparse.ArgumentParser) -> None:
    D = Default
    group = p.add_argument_group("transformers (INT8; LayerNorm, Softmax, GELU stay float)")
    group.add_argument("--quantize-attention", action="store_true", default=D(False),
                       help="also quantize the run-time x run-time attention MatMuls "
                       "(Q·Kᵀ and softmax·V); float by default")
    group.add_argument("--dynamic", action="store_true", default=D(False),
                       help="quantize activations at run time (DynamicQuantizeLinear → "
                       "MatMulInteger); weights int8 offline; no --calibration-table needed")
    group.add_argument("--smooth", metavar="ALPHA|auto|off", default=D("default"),
                       help="SmoothQuant before INT8: move activation outliers into the "
                       "weights with strength ALPHA in [0, 1] (0.5 in the paper), from the "
                       "calibration table's channel ranges or --smooth-data; auto: the best "
                       "of 0.3..0.8 by output SQNR (needs --smooth-data or "
                       "--calibration-data); off: none. default: α 0.8 from the table for a "
                       "transformer's static INT8, off otherwise")
    group.add_argument("--smooth-data", metavar="DATASET", default=D(None),
                       help="--smooth: samples (e.g. the calibration data; first 128) for the "
                       "per-channel maxima and the re-calibration of the smoothed tensors "
                       "(default: --calibration-data)")


def _conv_accuracy(p: argparse.ArgumentParser) -> None:
    D = Default
    group = p.add_argument_group("INT8 accuracy: equalization, AdaRound, 4-bit weights")
    group.add_argument("--equalize", nargs="?", const=True, default=D(False), metavar="DATASET",
                       help="cross-layer equalization of Conv→Conv pairs (incl. depthwise) "
                       "before quantizing, so one weight scale suits every channel (helps "
                       "--per-tensor most); the ranges it changes are re-measured on DATASET "
                       "(default: the --adaround, --bias-correction or --calibration-data "
                       "data) with the table's method and sample count")
    group.add_argument("--equalize-relu6", choices=("bound", "relu"), default=D("bound"),
                       help="pairs through ReLU6: bound equalizes only channels that stay "
                       "below 6 on the data, so the function is kept; relu replaces ReLU6 by "
                       "Relu first, which changes the function")
    group.add_argument("--adaround", nargs="?", const=True, default=D(None), metavar="DATASET",
                       help="learn each weight's rounding up or down (AdaRound) on the first "
                       "128 samples of DATASET (default: --calibration-data), layer by layer; "
                       "minutes on CPU; needs the torch extra (pip install torch==2.13.0, "
                       "then pip install '.[torch]')")
    group.add_argument("--adaround-iterations", type=int, default=D(1000), metavar="N",
                       help="--adaround: optimisation steps per layer (fewer is faster and "
                       "rounds less well)")
    group.add_argument("--weight-bits", type=int, choices=(4, 8), default=D(8),
                       help="INT8 weights at 8 bits or 4 (W4A8: −7..7 per channel, "
                       "clipped for the least squared error, depthwise Conv weights 8-bit, "
                       "activations 8-bit; stored as int4 at opset 21+, else int8)")


#: flags whose name is not the keyword's with dashes
_FLAGS = {"per_channel": "--per-tensor", "keep_io_types": "--no-keep-io-types",
          "model": "MODEL", "output": "-o", "test_input": "--test-data"}


def flag_for(field_name: str) -> str:
    """The flag that sets a recipe field (``smooth.alpha`` → ``--smooth``)."""
    from lowbit.recipe.options import keyword_for

    keyword = keyword_for(field_name)
    return _FLAGS.get(keyword, "--" + keyword.replace("_", "-"))


def recipe_options(args: argparse.Namespace) -> dict[str, Any]:
    """The flags the user typed, as deploy's keywords (lowbit.recipe.options)."""
    from lowbit.cli.parsing import parse_shapes

    given = {k: v for k, v in vars(args).items() if not isinstance(v, Default)}
    options: dict[str, Any] = {}
    renames: dict[str, tuple[str, Any]] = {
        "per_tensor": ("per_channel", lambda v: not v),
        "no_keep_io_types": ("keep_io_types", lambda v: not v),
        "no_bias_correction": ("bias_correction", lambda v: False if v else None),
        "input_shapes": ("input_shapes", parse_shapes),
        "keep_float": ("keep_float", lambda v: None if v is None else tuple(
            part.strip() for part in v.split(",") if part.strip()))}
    from lowbit.recipe.options import OPTIONS

    for dest, value in given.items():
        if dest in renames:
            keyword, convert = renames[dest]
            options[keyword] = convert(value)
        elif dest in OPTIONS:
            options[dest] = value
    return options


def _run(args: argparse.Namespace) -> int:
    from lowbit import api
    from lowbit.cli.render import console, deploy_summary, validation_table
    from lowbit.outputs import check_distinct
    from lowbit.recipe import Recipe, recipe_text
    from lowbit.recipe.document import read_recipe_document

    if args.recipe and args.recipe_from:
        raise UsageError("--recipe and --recipe-from both give a recipe; choose one")
    try:
        options = recipe_options(args)
        if args.print_recipe:
            base = read_recipe_document(args.recipe) if args.recipe else \
                _recorded(args.recipe_from)
            console.print(recipe_text(Recipe.from_options(base, **options)), markup=False,
                          end="")
            return 0
        if args.output is None:
            raise UsageError("-o/--output is required (the model to write), unless "
                             "--print-recipe")
        check_distinct({"--recipe": args.recipe, "--recipe-from": args.recipe_from},
                       {"-o": args.output})
        rerun = None
        parallel = {"workers": args.workers, "cluster": args.cluster}  # not recipe settings
        if args.recipe_from:
            rerun = api.rerun(args.model, output=args.output, recipe_from=args.recipe_from,
                              **parallel, **options)
            result = rerun.result
        else:
            if args.recipe:  # the file's settings with the flags over them, checked once
                plan = Recipe.from_options(read_recipe_document(args.recipe), **options)
                result = api.deploy(args.model, output=args.output, recipe=plan, **parallel)
            else:
                result = api.deploy(args.model, output=args.output, **parallel, **options)
    except RecipeError as err:
        raise err.renamed(flag_for) from None
    if args.json:
        from lowbit.cli.render import print_json

        extra = {} if rerun is None else {"identical": rerun.identical,
                                          "differences": rerun.differences}
        print_json(result, passed=result.passed, **extra)
        return 0 if result.passed else 1
    deploy_summary(result)
    console.print(f"wrote {result.path}")
    if rerun is not None:
        _print_rerun(rerun, console)
    if result.validation is not None:
        console.print(validation_table(result.validation))
        if not result.validation.passed:
            names = ", ".join(c.name for c in result.validation.failed)
            console.print(f"[red]validation FAILED[/red] for {names}; the model was written "
                          f"to {result.path} anyway")
            return 1
    if result.problem is not None:
        console.print(f"[red]FAILED[/red]: {result.problem}; the model was written to "
                      f"{result.path} anyway", markup=True, soft_wrap=True)
        return 1
    return 0


def _recorded(model: str | None) -> Any:
    if model is None:
        return None
    from lowbit.io.model import load_model
    from lowbit.recipe.provenance import read_provenance

    found = read_provenance(load_model(model, check=False), model)
    if found.recipe is None:
        raise UsageError(f"{model} records no lowbit recipe")
    return found.recipe


def _print_rerun(rerun: Any, console: Any) -> None:
    if rerun.identical:
        console.print(f"bit-identical to {rerun.recorded_from} (same graph SHA-256)")
    else:
        console.print(f"[yellow]differs from {rerun.recorded_from}[/yellow]: the graphs' "
                      "SHA-256 differ")
    for line in rerun.differences:
        console.print(f"  {line}", markup=False)
