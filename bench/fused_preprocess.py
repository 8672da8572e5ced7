"""--fuse-preprocess on EfficientNet-Lite0 (real weights): what it costs in accuracy and time.

    python bench/fused_preprocess.py                      # 64 calibration crops, 200 held out
    python bench/fused_preprocess.py --eval 100 --repeats 20 --markdown fused.md

Steps, in one process:

1. export the torch model (bench/efficientnet_lite0.py) and ``lowbit.transform`` it twice
   with EfficientNet-Lite's preprocessing (mean 127, scale 1/128, resize 256, crop 224):
   plain (float NCHW input) and with ``fuse_preprocess=True`` (uint8 NHWC input);
2. ``lowbit.calibrate`` (minmax) each on the same ``--calib`` photo crops (seed 0), as
   float crops and as the uint8 pixels they came from, and ``lowbit.deploy`` INT8;
3. accuracy against plain F32 on ``--eval`` held-out crops (seed 1): top-1 agreement and
   mean logit cosine, for the fused F32 and both INT8 models;
4. ``lowbit.bench``: the four models interleaved at batch 1 and 8, model time only (the
   fused ones include their in-graph Cast/Transpose/Sub/Mul); then the preprocessing
   alone, interleaved: the numpy normalisation the plain models need ((x - 127) / 128 and
   HWC→CHW of a 224x224x3 uint8 crop) against the fused graph's prefix on ORT.

The held-out crops are new views of the seven calibration photos (bench/photos.py), so
agreement measures how faithfully a variant reproduces F32, not ImageNet accuracy.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import efficientnet_lite0 as lite0
import lowbit
import photos
from lowbit.data import ImageOptions
from lowbit.data.fuse_preprocess import fuse_preprocess
from lowbit.runtime.ort import create_session

OPTIONS = ImageOptions(mean=(photos.MEAN,), scale=(1 / photos.SCALE,), pixel_format="rgb",
                       resize=(photos.RESIZE,), crop=(photos.SIZE, photos.SIZE))


def to_pixels(crops: np.ndarray) -> np.ndarray:
    """Float crops (N,3,224,224) back to the uint8 NHWC pixels they were made from."""
    return np.clip(np.round(crops * photos.SCALE + photos.MEAN), 0, 255).astype(
        np.uint8).transpose(0, 2, 3, 1).copy()


def logits(model: Path, inputs: np.ndarray) -> np.ndarray:
    session = create_session(model)
    return np.concatenate([session.run(None, {"input": inputs[i:i + 1]})[0]
                           for i in range(len(inputs))])


def cosines(a: np.ndarray, b: np.ndarray) -> float:
    dots = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(dots.mean())


def preprocess_ms(repeats: int, threads: int) -> tuple[float, float]:
    """Median ms per 224x224 image: numpy's (x - 127) / 128 + HWC→CHW, and the fused
    graph's Cast/Transpose/Sub/Mul alone (on an Identity model), interleaved."""
    size = photos.SIZE
    identity = helper.make_model(helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])], "identity",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, size, size])]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    fused = fuse_preprocess(identity, OPTIONS).model
    session = create_session(fused, threads=threads)
    pixels = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), np.uint8)
    numpy_times, graph_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        x = ((pixels.astype(np.float32) - photos.MEAN) / photos.SCALE).transpose(0, 3, 1, 2)
        np.ascontiguousarray(x)
        numpy_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        session.run(None, {"input": pixels})
        graph_times.append(time.perf_counter() - start)
    return float(np.median(numpy_times) * 1000), float(np.median(graph_times) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calib", type=int, default=64, help="calibration crops (default 64)")
    parser.add_argument("--eval", type=int, default=200, help="held-out crops (default 200)")
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per batch size")
    parser.add_argument("--threads", type=int, default=2, help="ORT threads (default 2)")
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lowbit-fused-"))
    source = lite0.export_onnx(work / "lite0.onnx")
    plain = lowbit.transform(source, work / "plain.f32.onnx", image_options=OPTIONS).path
    fused = lowbit.transform(source, work / "fused.f32.onnx", image_options=OPTIONS,
                             fuse_preprocess=True).path
    calib = photos.photo_set(args.calib, seed=0, split="dev")
    np.savez(work / "plain_calib.npz", input=calib)
    np.savez(work / "fused_calib.npz", input=to_pixels(calib))
    int8 = {}
    for name, model in (("plain", plain), ("fused", fused)):
        table = lowbit.calibrate(model, work / f"{name}_calib.npz", method="minmax",
                                 output=work / f"{name}.calib", progress=False)
        result = lowbit.deploy(model, calibration_table=table, output=work / f"{name}.int8.onnx")
        assert result.advice is not None
        print(f"{name} INT8: {result.advice.summary()}; left float: "
              f"{', '.join(f'{d.op_type} {d.name}' for d in result.left_float) or 'none'}")
        int8[name] = result.path

    held_out = photos.photo_set(args.eval, seed=1, split="report")
    pixels = to_pixels(held_out)
    reference = logits(plain, held_out)
    rows = []
    for label, model, inputs in (("F32 fused", fused, pixels),
                                 ("INT8", int8["plain"], held_out),
                                 ("INT8 fused", int8["fused"], pixels)):
        out = logits(model, inputs)
        agree = float((out.argmax(1) == reference.argmax(1)).mean() * 100)
        rows.append(f"| {label} | {agree:.1f} | {cosines(reference, out):.5f} |")

    settings = lowbit.BenchSettings(batches=(1, 8), threads=args.threads, repeats=args.repeats)
    comparison = lowbit.bench([plain, fused, int8["plain"], int8["fused"]], settings,
                              progress=False)
    names = ("F32", "F32 fused", "INT8", "INT8 fused")
    speed = []
    for name, result in zip(names, comparison.results, strict=True):
        b1, b8 = result.timing(1), result.timing(8)
        speed.append(f"| {name} | {b1.median_ms:.2f} | {b8.median_ms:.2f} | "
                     f"{b8.throughput:.1f} |")
    numpy_ms, graph_ms = preprocess_ms(300, args.threads)

    lines = [
        (f"{datetime.date.today().isoformat()}, ORT {ort.__version__}, {args.threads} "
         f"threads, 2 shared cores (timings interleaved, medians of {args.repeats} runs); "
         f"{args.calib} calibration crops, {args.eval} held-out crops"),
        "",
        "| variant (vs plain F32) | top-1 agreement % | mean logit cosine |",
        "|---|---|---|",
        *rows,
        "",
        "| model | latency b1 ms | latency b8 ms | throughput b8 /s |",
        "|---|---|---|---|",
        *speed,
        "",
        (f"preprocessing alone, per 224x224 image (interleaved, median of 300): numpy "
         f"(x - 127) / 128 + HWC→CHW {numpy_ms:.3f} ms; the fused graph's "
         f"Cast/Transpose/Sub/Mul on ORT {graph_ms:.3f} ms"),
    ]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
