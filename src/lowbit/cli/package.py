"""`lowbit package`: the deployed model as a bundle for lowbit-run, or as OpenVINO IR."""

from __future__ import annotations

import argparse

from lowbit.cli.options import add_data_option, add_json_option

FORMATS = ("ort", "openvino", "tvm")  # lowbit.api.package.FORMATS, without importing it
TARGET_PLATFORMS = ("amd64", "arm", "host")  # lowbit.runtime.ort_format.TARGET_PLATFORMS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Write MODEL as one file for the target: a bundle (a zip: the model in ONNX Runtime's "
        "ORT format for --target-platform, the meta file with its preprocessing, the precision "
        "and validation, class names, a manifest of SHA-256 checksums) that the lowbit-run "
        "command runs with only onnxruntime, numpy and Pillow installed; or, with --format "
        "openvino, OpenVINO IR (.xml + .bin, weights kept in their precision); or, with --format "
        "tvm (experimental, the tvm extra), a shared library compiled by Apache TVM for --target, "
        "timed beside ONNX Runtime. The packaged "
        "model itself is validated on --test-data against --test-reference, or on what deploy "
        "recorded in MODEL (against the float model); exit 1 when it misses the tolerance "
        "(the file is still written).")
    p.add_argument("model", help="the model to package: deploy's output (or any ONNX model)")
    p.add_argument("-o", "--output", required=True,
                   help="the bundle to write (model.lowbit), or the .xml for --format openvino")
    p.add_argument("--format", choices=FORMATS, default="ort",
                   help="ort: a bundle for lowbit-run; openvino: OpenVINO IR; tvm: a shared "
                   "library compiled by Apache TVM (experimental, untuned)")
    p.add_argument("--target-platform", choices=TARGET_PLATFORMS,
                   help="CPUs the bundle runs on: amd64 or arm (any CPU of the family; a QDQ "
                   "model's integer-kernel fusions are saved in the file and replayed at load), "
                   "or host (every ONNX Runtime optimization for this CPU, such as the NCHWc "
                   "layout of float convolutions; lowbit-run refuses it on a CPU that lays "
                   "blocks out differently) (default: this machine's family, amd64 or arm)")
    p.add_argument("--target", default="llvm",
                   help="TVM's target for --format tvm: llvm, or a JSON object such as "
                   "'{\"kind\": \"llvm\", \"mcpu\": \"skylake\"}' (CPUs only)")
    add_data_option(p, flag="--test-data", old=("--test-input",), dest="test_input",
                    required=False, help="validate on this data set (default: deploy's, "
                    "recorded in MODEL)")
    p.add_argument("--test-reference", metavar="NPZ",
                   help="the outputs to compare with (default: deploy's reference, else the "
                   "float model's outputs)")
    p.add_argument("--tolerance", help="cosine,euclid (default: deploy's, else 0.99,0.90)")
    p.add_argument("--labels", help="class names, one per line (default: ImageNet-1k's for a "
                   "1000-score output, else none)")
    p.add_argument("--threads", type=int, help="threads for the validation runs")
    add_json_option(p)

    def run(args: argparse.Namespace) -> int:
        from lowbit import api
        from lowbit.cli.render import console, print_json, validation_table

        result = api.package(args.model, args.output, format=args.format,
                             target_platform=args.target_platform, test_input=args.test_input,
                             test_reference=args.test_reference, tolerance=args.tolerance,
                             labels=args.labels, threads=args.threads, target=args.target)
        if args.json:
            print_json(result, passed=result.passed)
            return 0 if result.passed else 1
        how = {"ort": f"ORT format, {result.target_platform}, {result.optimization_style} "
                      f"optimizations", "openvino": "OpenVINO IR",
               "tvm": "Apache TVM shared library"}[result.format]
        console.print(f"packaged {result.precision} model ({how}): "
                      f"{_size(result.source_bytes)} .onnx → {_size(result.package_bytes)}")
        for name, size in result.members:
            console.print(f"  {name:<12} {size:>12,} bytes", markup=False)
        if result.validation is not None:
            console.print(validation_table(
                result.validation, f"validation on {result.validation_data} against "
                f"{result.validated_against}"))
        if result.conversion_error is not None:
            console.print(f"packaged vs .onnx outputs: max |diff| {result.conversion_error:.3g}")
        for note in result.notes:
            console.print(f"note: {note}", soft_wrap=True, markup=False)
        for path in result.files:
            console.print(f"wrote {path}")
        if not result.passed:
            console.print("[red]validation FAILED[/red]: the packaged model misses the "
                          "tolerance")
        return 0 if result.passed else 1

    p.set_defaults(run=run)


def _size(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"
