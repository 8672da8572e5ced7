"""`lowbit transform`: import a model, clean it up, record its preprocessing."""

from __future__ import annotations

import argparse

from lowbit.cli.options import (
    add_data_option,
    add_image_options,
    add_json_option,
    image_options,
    names,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from lowbit.passes import DEFAULT_PASSES

    p.description = ("Import a model (ONNX, PyTorch, TensorFlow, Keras, TFLite), fix "
                       "its input shapes, move weights held in Constant nodes into initializers, "
                       "remove Identity and Dropout, fold BatchNormalization, run the graph "
                       "passes (--passes), and write it with "
                       "NAME.meta.json beside it (inputs, outputs, source, and the image "
                       "preprocessing given here, which calibrate, eval, classify and report "
                       "then read). With --test-data, also write the exact inputs fed "
                       "(ref_inputs.npz) and the float outputs (ref_outputs.npz) for deploy.")
    p.add_argument("model", help="the float model: ONNX, TorchScript, SavedModel, ...")
    p.add_argument("-o", "--output", required=True, help="where to write the cleaned model "
                   "(work/model.f32.onnx also writes work/model.meta.json)")
    p.add_argument("--input-shapes", help="fix input shapes: [[1,3,224,224]] in input order, "
                   "or NAME:1,3,224,224;NAME2:...")
    add_data_option(p, flag="--test-data", old=("--test-input",), dest="test_data",
                    required=False, help="an image file (preprocessed with the image options "
                    "below into one sample) or a data set (.npz/.npy/folder) to run the "
                    "written model on")
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
    add_json_option(p)

    def run(args: argparse.Namespace) -> int:
        from lowbit import api
        from lowbit.cli.parsing import parse_shapes
        from lowbit.cli.render import console

        result = api.transform(
            args.model, args.output, input_shapes=parse_shapes(args.input_shapes),
            test_input=args.test_data, reference_output=args.reference_output,
            reference_input=args.reference_input, image_options=image_options(args),
            fuse_preprocess=args.fuse_preprocess, fused_layout=args.fused_layout,
            input_names=names(args.inputs), output_names=names(args.outputs),
            opset=args.opset, exporter=args.exporter, optimize=not args.no_optimize,
            passes=args.passes)
        if args.json:
            from lowbit.cli.render import print_json

            print_json(result)
            return 0
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


def _input_text(result: object) -> str:
    meta = getattr(result, "meta", None)
    if meta is None:
        return "its inputs"
    parts = []
    for tensor in meta.inputs:
        dims = ",".join(str(d) if isinstance(d, int) else "?" for d in tensor.shape or ())
        parts.append(f"{tensor.name} {tensor.dtype} [{dims}]")
    return ", ".join(parts)
