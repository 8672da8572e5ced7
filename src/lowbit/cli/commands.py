"""One function per command: add its arguments, and run it by calling the API."""

from __future__ import annotations

import argparse
from pathlib import Path

from lowbit import api
from lowbit.analysis.bench import BenchSettings, bench_models
from lowbit.analysis.explain import explain_int8
from lowbit.analysis.profile import profile_model
from lowbit.calibration.observers import METHODS
from lowbit.cli import deploy as deploy_command
from lowbit.cli.parsing import parse_floats, parse_ints, parse_shapes
from lowbit.cli.render import (
    bench_table,
    classify_table,
    console,
    deploy_summary,
    eval_table,
    layer_table,
    loss_table,
    report_table,
    validation_table,
)
from lowbit.data import ImageOptions
from lowbit.demo import run_demo_flow
from lowbit.passes import DEFAULT_PASSES


def _transform(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transform", help="import and clean up a model, record its preprocessing",
                       description="Import a model (ONNX, PyTorch, TensorFlow, Keras, TFLite), fix "
                       "its input shapes, move weights held in Constant nodes into initializers, "
                       "remove Identity and Dropout, fold BatchNormalization, run the graph "
                       "passes (--passes), and write it with "
                       "NAME.meta.json beside it (inputs, outputs, source, and the image "
                       "preprocessing given here, which calibrate, eval, classify and report "
                       "then read). With --test-input, also write the exact inputs fed "
                       "(ref_inputs.npz) and the float outputs (ref_outputs.npz) for deploy.")
    p.add_argument("model", help="the float model: ONNX, TorchScript, SavedModel, ...")
    p.add_argument("-o", "--output", required=True, help="where to write the cleaned model "
                   "(work/model.f32.onnx also writes work/model.meta.json)")
    p.add_argument("--input-shapes", help="fix input shapes: [[1,3,224,224]] in input order, "
                   "or NAME:1,3,224,224;NAME2:...")
    p.add_argument("--test-input", metavar="IMG|DATASET",
                   help="an image file (preprocessed with the image options below into one "
                   "sample) or a data set (.npz/.npy/folder) to run the written model on")
    p.add_argument("--reference-output", help="where to write the reference outputs "
                   "(default: ref_outputs.npz beside --output)")
    p.add_argument("--reference-input", help="where to write the inputs fed (default: "
                   "ref_inputs.npz beside --output)")
    add_image_options(p, recorded=True)
    p.add_argument("--fuse-preprocess", action="store_true",
                   help="put mean/scale, the channel order and the layout change into the "
                   "graph: the model then takes uint8 RGB (or gray) pixels, already resized "
                   "and cropped, in --fused-layout")
    p.add_argument("--fused-layout", choices=("nhwc", "nchw"), default="nhwc",
                   help="layout of the uint8 input with --fuse-preprocess (default nhwc, as "
                   "image decoders give pixels)")
    p.add_argument("--inputs", help="import: input tensor names, comma-separated (a frozen "
                   "TensorFlow graph's inputs; names for a PyTorch export's inputs)")
    p.add_argument("--outputs", help="import: output tensor names, comma-separated")
    p.add_argument("--opset", type=int, help="import: target ONNX opset (default 17)")
    p.add_argument("--exporter", choices=("auto", "torchscript", "dynamo"), default="auto",
                   help="import: torch's ONNX exporter for PyTorch models (default auto)")
    p.add_argument("--passes", help="graph passes to run after the clean-up, comma-separated "
                   f"(default: {', '.join(DEFAULT_PASSES)})")
    p.add_argument("--no-optimize", action="store_true",
                   help="run no graph passes beyond the clean-up")

    def run(args: argparse.Namespace) -> int:
        result = api.transform(
            args.model, args.output, input_shapes=parse_shapes(args.input_shapes),
            test_input=args.test_input, reference_output=args.reference_output,
            reference_input=args.reference_input, image_options=image_options(args),
            fuse_preprocess=args.fuse_preprocess, fused_layout=args.fused_layout,
            input_names=_names(args.inputs), output_names=_names(args.outputs),
            opset=args.opset, exporter=args.exporter, optimize=not args.no_optimize,
            passes=args.passes)
        for note in result.imported_notes:
            console.print(f"import: {note}")
        console.print(f"transform: {result.report.summary()}")
        if result.optimized is not None:
            for step in result.optimized.steps:
                console.print(f"  pass {step.name}: {step.nodes_before} → {step.nodes_after} "
                              f"nodes ({step.rewrites} rewrite(s))")
            console.print(f"optimize: {result.optimized.summary()}")
        if result.fused_ops:
            console.print(f"fused preprocessing: {' → '.join(result.fused_ops)}; the model "
                          f"takes {_input_text(result)}")
        console.print(f"wrote {result.path}")
        console.print(f"wrote {result.meta_path}")
        for path in (result.reference_input_path, result.reference_path):
            if path:
                console.print(f"wrote {path}")
        return 0

    p.set_defaults(run=run)


def _names(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(part.strip() for part in text.split(","))


def _input_text(result: api.TransformResult) -> str:
    if result.meta is None:
        return "its inputs"
    parts = []
    for tensor in result.meta.inputs:
        dims = ",".join(str(d) if isinstance(d, int) else "?" for d in tensor.shape or ())
        parts.append(f"{tensor.name} {tensor.dtype} [{dims}]")
    return ", ".join(parts)


def _calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="observe activation ranges over a data set",
                       description="Stream a data set through the model and write the "
                       "calibration table (lines 'tensor threshold min max'). Memory depends on "
                       "the number of tensors and bins, never on the number of samples.")
    p.add_argument("model", help="the float ONNX model")
    p.add_argument("--dataset", required=True, help=".npz (one array per input, first axis = "
                   "samples), .npy, a folder of .npz/.npy samples, or a folder of images")
    p.add_argument("-o", "--output", required=True, help="the calibration table to write")
    p.add_argument("--num", type=int, help="use the first NUM samples (default: all)")
    p.add_argument("--method", default="auto", choices=METHODS,
                   help="how to choose each tensor's range (default: auto, the candidate "
                   "threshold with the least quantization error per tensor)")
    p.add_argument("--percentile", type=float, default=99.99,
                   help="percentile of |x| for --method percentile (default 99.99)")
    p.add_argument("--bins", type=int, default=2048, help="histogram bins (default 2048)")
    p.add_argument("--input-shapes", help="fix input shapes, as for transform")
    add_image_options(p)
    p.add_argument("--threads", type=int, help="ONNX Runtime threads")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--check-samples", type=int, default=32, metavar="N",
                   help="auto: build the INT8 model for 5 blends between auto's thresholds "
                   "and minmax and keep the one with the best output SQNR on the first N "
                   "samples (default 32; 0 skips the check)")
    p.add_argument("--no-input-means", action="store_true",
                   help="leave out each Conv/Gemm's mean input (the table's "
                   "#lowbit_input_means section), from which deploy corrects biases "
                   "without data")
    p.add_argument("--no-channel-ranges", action="store_true",
                   help="leave out the per-channel min/max of each MatMul/Gemm input (the "
                   "table's #lowbit_channel_ranges section), from which deploy applies "
                   "SmoothQuant to transformers without data")

    def run(args: argparse.Namespace) -> int:
        table = api.calibrate(
            args.model, args.dataset, num=args.num, method=args.method,
            percentile=args.percentile, bins=args.bins, output=args.output,
            input_shapes=parse_shapes(args.input_shapes), image_options=image_options(args),
            threads=args.threads, progress=not args.no_progress,
            input_means=not args.no_input_means, channel_ranges=not args.no_channel_ranges,
            check_samples=args.check_samples)
        console.print(f"calibrated {len(table.ranges)} tensors on {table.num_samples} samples "
                      f"({table.method}); wrote {args.output}")
        for name, reason in table.skipped.items():
            console.print(f"  {name} will stay float: {reason}")
        return 0

    p.set_defaults(run=run)


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


def _compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare two models layer by layer on the same inputs",
                       description="Run both models on --inputs, pair their tensors (a "
                       "quantized tensor's DequantizeLinear output with the float tensor it "
                       "stands for, a folded BN or removed Relu under its own name) and report "
                       "cosine, euclidean similarity, SQNR, max error and status (EQUAL, CLOSE, "
                       "SIMILAR, FAILED) per tensor in graph order. Exit code 1 when a tensor "
                       "fails the tolerance.")
    p.add_argument("reference", help="the reference model (usually float)")
    p.add_argument("test", help="the model to check (e.g. the INT8 one)")
    p.add_argument("--inputs", required=True, help="data set to run both models on")
    p.add_argument("--tolerance", default="0.99,0.90", help="cosine,euclid (default 0.99,0.90)")
    p.add_argument("--csv", help="also write the table as CSV")
    p.add_argument("--plot", help="also draw SQNR and cosine per layer (PNG)")
    p.add_argument("--dump", help="write every compared tensor of both models to this folder "
                   "(reference.npz, test.npz; keys 'tensor:sample')")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    def run(args: argparse.Namespace) -> int:
        report = api.compare(args.reference, args.test, args.inputs, tolerance=args.tolerance,
                             csv=args.csv, plot=args.plot, dump=args.dump,
                             progress=not args.no_progress)
        console.print(layer_table(report))
        if report.unpaired:
            console.print(f"{report.unpaired} reference tensors have no partner in the test "
                          "model (e.g. a conv output before a folded BN or a removed "
                          "Relu) and were not compared")
        first = report.first_failure
        if first is not None:
            console.print(f"[red]first FAILED tensor: {first.name} ({first.op_type})[/red]")
        console.print(report.summary())
        for what, path in (("CSV", args.csv), ("plot", args.plot), ("tensors", args.dump)):
            if path:
                console.print(f"wrote {what}: {path}")
        return 0 if report.passed else 1

    p.set_defaults(run=run)


def _bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure latency and throughput on ONNX Runtime or "
                       "OpenVINO",
                       description="Time a model at each batch size (median and p90 over "
                       "repeated runs after warm-up). With --vs, both models run interleaved "
                       "in one process and the speed-up is printed.")
    p.add_argument("model", help="the model to time")
    p.add_argument("--vs", help="a second model to compare with (e.g. the float original)")
    p.add_argument("--batch", default="1,32", help="batch sizes (default 1,32)")
    p.add_argument("--threads", type=int, help="engine threads (ONNX Runtime: intra-op)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up runs (default 3)")
    p.add_argument("--repeats", type=int, default=20, help="timed runs (default 20)")
    p.add_argument("--backend", default="ort", help="engine: ort (default) or openvino")
    p.add_argument("--precision", type=str.upper, choices=("F32", "BF16", "F16"),
                   help="ask the engine to compute a float model in this precision (OpenVINO: "
                   "BF16 on AVX512-BF16/AMX CPUs; lowbit sets F32 explicitly otherwise)")
    p.add_argument("--profile", action="store_true",
                   help="also print ORT's per-op time table (op type | ms | calls | share) for "
                   "the optimized graph it really runs, at each batch size (always ONNX "
                   "Runtime, whatever --backend)")

    def run(args: argparse.Namespace) -> int:
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
        console.print(bench_table(comparison))
        if args.vs:
            for batch in settings.batches:
                console.print(f"batch {batch}: {Path(args.model).name} is "
                              f"{comparison.ratio(batch):.2f}x the throughput of "
                              f"{Path(args.vs).name}")
        return 0

    p.set_defaults(run=run)


def _eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="accuracy on a data set: top-1/top-5, PSNR/SSIM or cosine",
                       description="Run the model over a data set and score it: top1/top5 "
                       "for classifiers (labels from an npz array, a folder-per-class image "
                       "tree or a labels file), psnr/ssim for image-to-image models and cos "
                       "(output cosine) against --reference or --vs. With --vs REF both models "
                       "run on the same samples and the drop and top-1 agreement are printed.")
    p.add_argument("model", help="the model to evaluate")
    p.add_argument("--dataset", required=True, help="data set (.npz/.npy/folder/images)")
    p.add_argument("--labels", help="labels: labels.npz[:key], labels.npy or a text file "
                   "(default: the data set's 'label' array or its class folders)")
    p.add_argument("--metric", default="top1,top5",
                   help="comma-separated: top1, top5, psnr, ssim, cos (default top1,top5)")
    p.add_argument("--vs", help="a second (usually float) model to evaluate on the same samples")
    p.add_argument("--reference", help="model whose outputs psnr/ssim/cos compare against")
    p.add_argument("--num", type=int, help="use the first NUM samples")
    p.add_argument("--output-name", help="which model output to score (default: the first)")
    p.add_argument("--threads", type=int, help="engine threads")
    p.add_argument("--backend", default="ort", help="engine: ort (default) or openvino")
    add_image_options(p)

    def run(args: argparse.Namespace) -> int:
        report = api.evaluate(args.model, args.dataset, labels=args.labels,
                              metrics=args.metric, reference=args.reference, vs=args.vs,
                              threads=args.threads, num=args.num, output_name=args.output_name,
                              image_options=image_options(args), backend=args.backend)
        console.print(eval_table(report))
        if report.agreement is not None:
            console.print(f"top-1 agreement: {report.agreement:.2f}%")
        return 0

    p.set_defaults(run=run)


def _report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="one table of size | accuracy | speed per precision, as "
                       "Markdown and a self-contained HTML page",
                       description="For each model variant (F32, INT8, …) measure size, top-1/"
                       "top-5 (when the data set has labels), batch-1 latency, batch-N "
                       "throughput, speed-up and output cosine vs F32, and write report.md and "
                       "report.html (with the layer-by-layer plot and bar charts).")
    p.add_argument("models", nargs="+", help="the variants, e.g. model.f32.onnx model.int8.onnx")
    p.add_argument("--dataset", required=True, help="data set to evaluate on")
    p.add_argument("--labels", help="labels, as for eval")
    p.add_argument("-o", "--output", required=True, help="folder to write the report into")
    p.add_argument("--batch", type=int, default=32, help="throughput batch size (default 32)")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per batch size")
    p.add_argument("--num", type=int, help="evaluate on the first NUM samples")
    p.add_argument("--threads", type=int, help="engine threads")
    p.add_argument("--backend", default="ort", help="engine: ort (default) or openvino (runs "
                   "BF16 models, which ORT's CPU provider cannot)")
    add_image_options(p)

    def run(args: argparse.Namespace) -> int:
        result = api.report(args.models, args.dataset, args.output, labels=args.labels,
                            batch=args.batch, repeats=args.repeats, threads=args.threads,
                            num=args.num, backend=args.backend,
                            image_options=image_options(args))
        console.print(report_table(result.rows))
        console.print(f"wrote {result.files.markdown} and {result.files.html}")
        return 0

    p.set_defaults(run=run)


def _classify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="the top classes of one image, drawn on the image",
                       description="Preprocess an image as the model's meta file says (or as "
                       "the image options given say), run the model (F32 or quantized) and "
                       "print the top classes with their scores: the output itself when it "
                       "is already probabilities, else its softmax (the line above the table "
                       "says which). ImageNet-1k class names ship with lowbit and name a "
                       "1000-score output; --labels names any other.")
    p.add_argument("model", help="an ONNX classifier (model.f32.onnx, model.int8.onnx, ...)")
    p.add_argument("--input", required=True, help="the image file")
    p.add_argument("--labels", help="a text file of class names, one per line in class order "
                   "(default: ImageNet-1k for a 1000-score output)")
    p.add_argument("--output", help="also write the image with the top classes drawn on it "
                   "(.jpg, .png)")
    p.add_argument("--top", type=int, default=5, help="how many classes (default 5)")
    p.add_argument("--output-name", help="which model output holds the scores (default: the "
                   "first)")
    p.add_argument("--backend", default="ort", help="engine: ort (default) or openvino")
    p.add_argument("--threads", type=int, help="engine threads")
    add_image_options(p)

    def run(args: argparse.Namespace) -> int:
        result = api.classify(args.model, args.input, labels=args.labels, top=args.top,
                              output=args.output, image_options=image_options(args),
                              backend=args.backend, threads=args.threads,
                              output_name=args.output_name)
        console.print(f"{result.image.name} on {result.model.name} ({result.precision}); "
                      f"scores: {result.score_kind}; labels: {result.labels_source}")
        console.print(classify_table(result))
        if result.drawn is not None:
            console.print(f"wrote {result.drawn}")
        return 0

    p.set_defaults(run=run)


def _qtable(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("qtable", help="rank ops by quantization sensitivity; search the fewest "
                       "float ops that meet a target",
                       description="Without --target: write a loss table ranking every "
                       "quantizable op by the network output's SQNR against F32 when that op "
                       "alone stays float. With --target cos=0.99 or top1-drop=0.5 (--labels): "
                       "find the smallest set of ops to keep at --fallback so the mixed model "
                       "meets it (checked by running it), print the path taken, and write "
                       "those ops as 'op_name PRECISION' lines for deploy --quantize-table.")
    p.add_argument("model", help="the float ONNX model")
    p.add_argument("--dataset", required=True, help="samples to measure on")
    p.add_argument("--calibration-table", required=True, help="table written by calibrate")
    p.add_argument("-o", "--output", required=True, help="the qtable to write")
    p.add_argument("--num", type=int, default=32, help="samples to use (default 32)")
    p.add_argument("--target", help="cos=VALUE (mean output cosine vs F32) or "
                   "top1-drop=POINTS (needs labels)")
    p.add_argument("--labels", help="labels for top1-drop, as for eval")
    p.add_argument("--fallback", default="F32", choices=("F32", "F16", "BF16"),
                   type=str.upper, help="precision of the ops taken out of INT8 (default F32)")
    p.add_argument("--activation", choices=("uint8", "int8"), default="uint8",
                   help="activation type of the INT8 part")
    deploy_command.add_weight_range(p)

    def run(args: argparse.Namespace) -> int:
        result = api.qtable(args.model, args.dataset, calibration_table=args.calibration_table,
                            output=args.output, num=args.num, target=args.target,
                            labels=args.labels, fallback=args.fallback,
                            activation=args.activation, weight_range=args.weight_range)
        if result.sensitivity is not None:
            console.print(loss_table(result.sensitivity.rows))
            console.print(f"sensitivity: {result.sensitivity.forward_passes:.1f} forward passes "
                          f"(full-model equivalents) on {result.sensitivity.samples} samples")
        if result.search is not None:
            for step in result.search.path:
                console.print(f"  {step.action}: {len(step.added_ops)} float op(s) → "
                              f"{step.metric:.6f} {'meets' if step.met else 'misses'} "
                              f"{args.target}")
            ops = ", ".join(result.search.float_ops) or "none"
            verdict = "met" if result.search.met else "[red]NOT met[/red]"
            console.print(f"target {args.target} {verdict} with {len(result.search.float_ops)} "
                          f"{args.fallback} op(s): {ops}; {result.search.forward_passes:.1f} "
                          "forward passes in all")
        console.print(f"wrote {result.path}")
        return 0 if result.search is None or result.search.met else 1

    p.set_defaults(run=run)


def _explain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="INT8 speed advisor: which ops ORT runs as integer "
                       "kernels, and why the others stay float",
                       description="Read the graph ONNX Runtime really runs after its "
                       "optimizations and report, for every Conv/MatMul/Gemm/ConvTranspose, "
                       "whether it became an integer kernel or fell back to float, with the "
                       "reason, and the share of profiled time spent in float fallbacks.")
    p.add_argument("model", help="a quantized (QDQ or QOperator) ONNX model")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    p.add_argument("--no-profile", action="store_true",
                   help="skip the profiled runs (no time shares)")

    def run(args: argparse.Namespace) -> int:
        advice = explain_int8(args.model, threads=args.threads, profile=not args.no_profile)
        console.print(advice.table(), markup=False, soft_wrap=True)
        return 0

    p.set_defaults(run=run)


def _demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole flow on the MNIST model shipped with lowbit",
                       description="transform → calibrate → deploy (validated on 100 held-out "
                       "digits) → report (accuracy on 1,000 held-out digits, speed at batch 1 "
                       "and 32, layer-by-layer compare), on a LeNet-shaped MNIST CNN that ships "
                       "with the package, ending with a precision | size | accuracy | speed "
                       "table. The data sets and every stage's file stay in --workdir.")
    p.add_argument("--workdir", default="lowbit-demo", help="folder for the files each stage "
                   "writes (default ./lowbit-demo)")
    p.add_argument("--method", default="auto", choices=METHODS,
                   help="calibration method (default auto)")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per batch size in the "
                   "report stage")

    def run(args: argparse.Namespace) -> int:
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
        return 0 if result.deploy.passed else 1

    p.set_defaults(run=run)


REGISTRARS = (_transform, _calibrate, _qtable, deploy_command.register, _compare, _eval,
              _classify, _bench, _explain, _report, _demo, deploy_command.register_quantize,
              deploy_command.register_info)
