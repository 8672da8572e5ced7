"""`lowbit classify`: the top classes of one image."""

from __future__ import annotations

import argparse

from lowbit.cli.options import add_image_options, add_json_option, image_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Preprocess an image as the model's meta file says (or as "
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
    add_json_option(p)

    def run(args: argparse.Namespace) -> int:
        from lowbit import api
        from lowbit.cli.render import classify_table, console, print_json

        result = api.classify(args.model, args.input, labels=args.labels, top=args.top,
                              output=args.output, image_options=image_options(args),
                              backend=args.backend, threads=args.threads,
                              output_name=args.output_name)
        if args.json:
            print_json(result)
            return 0
        console.print(f"{result.image.name} on {result.model.name} ({result.precision}); "
                      f"scores: {result.score_kind}; labels: {result.labels_source}")
        console.print(classify_table(result))
        if result.drawn is not None:
            console.print(f"wrote {result.drawn}")
        return 0

    p.set_defaults(run=run)
