"""INT8 speed: lowbit's INT8 against F32 and against ONNX Runtime's own quantizer, one process.

    python bench/int8_speed.py                                  # resnet18 and mobilenet_v2
    python bench/int8_speed.py --models resnet18 --repeats 10 --markdown results.md

For each model: build it (bench/models.py, random weights, BN kept), run
``lowbit.transform`` (folds BN) to get the F32 model both quantizers start from,
calibrate on crops of real photos (min/max), and quantize twice:

* lowbit: ``lowbit.calibrate`` + ``lowbit.deploy(quantize="INT8")``;
* ORT: ``onnxruntime.quantization.quantize_static`` (QDQ, per-channel int8 weights,
  uint8 activations, MinMax), after ORT's ``quant_pre_process`` as ORT advises.

The three models are timed interleaved (lowbit.analysis.bench) so noise hits all
alike; the table gives sizes, batch-1 latency, batch-32 throughput and the
speed-up over F32, plus which conv/matmul/gemm ORT actually runs as integer
kernels and the mean cosine of each INT8 model's logits to F32's on 32 held-out
crops.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lowbit.analysis.bench import BenchResult, BenchSettings, bench_models
from lowbit.analysis.kernels import count_kernels
from models import BUILDERS, photo_crops, save
from provenance import cpu

log = logging.getLogger("int8_speed")


@dataclass(frozen=True)
class Row:
    model: str
    precision: str
    result: BenchResult
    speedup_b32: float
    kernels: str
    cosine: float | None


class _NpzReader(CalibrationDataReader):
    """Feeds ORT's calibrator one batch-1 sample at a time."""

    def __init__(self, images: np.ndarray, input_name: str = "input") -> None:
        self._images = images
        self._name = input_name
        self._iter: Iterator[int] = iter(range(len(images)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        index = next(self._iter, None)
        return None if index is None else {self._name: self._images[index:index + 1]}

    def rewind(self) -> None:
        self._iter = iter(range(len(self._images)))


def make_f32(src: Path, dst: Path) -> str:
    """lowbit.transform (folds BN); until it exists, ORT's basic level folds Conv+BN."""
    import lowbit

    transform = getattr(lowbit, "transform", None)
    if transform is not None:
        transform(src, dst)
        return "lowbit.transform"
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    return "ORT basic optimisation (lowbit.transform not available)"


def quantize_lowbit(f32: Path, calib_npz: Path, out_dir: Path) -> Path | None:
    import lowbit

    if not all(hasattr(lowbit, f) for f in ("calibrate", "deploy")):
        log.warning("lowbit.calibrate / lowbit.deploy not available: skipping lowbit INT8")
        return None
    table = out_dir / f"{f32.stem}.calib"
    int8 = out_dir / f"{f32.stem.removesuffix('.f32')}.lowbit.int8.onnx"
    lowbit.calibrate(f32, calib_npz, method="minmax", output=table)
    lowbit.deploy(f32, quantize="INT8", calibration_table=table, output=int8)
    return int8


def quantize_ort(f32: Path, images: np.ndarray, out_dir: Path, preprocess: bool) -> Path:
    source = f32
    if preprocess:
        source = out_dir / f"{f32.stem}.ortprep.onnx"
        quant_pre_process(str(f32), str(source))
    int8 = out_dir / f"{f32.stem.removesuffix('.f32')}.ort.int8.onnx"
    quantize_static(
        str(source), str(int8), _NpzReader(images),
        quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    return int8


def mean_cosine(model: Path, reference: np.ndarray, images: np.ndarray, threads: int) -> float:
    session = ort.InferenceSession(str(model), _options(threads),
                                   providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": images})[0].reshape(len(images), -1).astype(np.float64)
    ref = reference.reshape(len(images), -1).astype(np.float64)
    cos = (out * ref).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1))
    return float(cos.mean())


def _options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return options


def bench_one(name: str, args: argparse.Namespace, calib: np.ndarray, calib_npz: Path,
              held_out: np.ndarray) -> list[Row]:
    out_dir: Path = args.out_dir
    src = save(BUILDERS[name](), out_dir / f"{name}.onnx")
    f32 = out_dir / f"{name}.f32.onnx"
    how = make_f32(src, f32)
    print(f"[{name}] F32 model by {how}: {f32}")
    int8_lowbit = quantize_lowbit(f32, calib_npz, out_dir)
    int8_ort = quantize_ort(f32, calib, out_dir, preprocess=args.ort_preprocess)
    entries: list[tuple[str, Path]] = [("F32", f32), ("ORT", int8_ort)]
    if int8_lowbit is not None:
        entries.insert(0, ("lowbit", int8_lowbit))
    settings = BenchSettings(batches=(1, 32), threads=args.threads, repeats=args.repeats)
    print(f"[{name}] timing {', '.join(label for label, _ in entries)} interleaved ...")
    comparison = bench_models([p for _, p in entries], settings)
    f32_index = [label for label, _ in entries].index("F32")
    f32_session = ort.InferenceSession(str(f32), _options(args.threads),
                                       providers=["CPUExecutionProvider"])
    reference = f32_session.run(None, {"input": held_out})[0]
    rows = []
    for index, (label, path) in enumerate(entries):
        is_int8 = label != "F32"
        kernels = count_kernels(path, threads=args.threads)
        rows.append(Row(
            model=name,
            precision=f"{label} INT8" if is_int8 else "F32",
            result=comparison.results[index],
            speedup_b32=comparison.ratio(32, index, f32_index),
            kernels=f"{kernels.integer_compute}/{kernels.integer_compute + kernels.float_compute}",
            cosine=mean_cosine(path, reference, held_out, args.threads) if is_int8 else None,
        ))
        if is_int8:
            print(f"[{name}] {label} INT8 kernels: {kernels.summary()}; integer {kernels.integer}"
                  f"; float {kernels.float}")
    return rows


HEADER = ("model", "precision", "size MB", "b1 median ms", "b32 throughput img/s",
          "speed-up vs F32 (b32)", "int kernels", "cos vs F32")


def table_cells(row: Row) -> tuple[str, ...]:
    b1 = row.result.timing(1)
    b32 = row.result.timing(32)
    return (row.model, row.precision, f"{row.result.size_bytes / 1e6:.1f}",
            f"{b1.median_ms:.2f}", f"{b32.throughput:.1f}", f"{row.speedup_b32:.2f}x",
            row.kernels, "-" if row.cosine is None else f"{row.cosine:.4f}")


def format_text(rows: list[Row]) -> str:
    cells = [HEADER, *(table_cells(r) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def format_markdown(rows: list[Row], args: argparse.Namespace) -> str:
    lines = [
        (f"### int8_speed {datetime.date.today()} — {cpu()[0]}, ORT {ort.__version__}, "
         f"{args.threads} threads, {args.repeats} repeats, "
         f"{args.calib_samples} calibration crops"),
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(table_cells(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,mobilenet_v2")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calib-samples", type=int, default=200)
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None,
                        help="append the table to this Markdown file")
    parser.add_argument("--no-ort-preprocess", dest="ort_preprocess", action="store_false",
                        help="skip onnxruntime's quant_pre_process before quantize_static")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.out_dir is None:
        args.out_dir = Path(tempfile.mkdtemp(prefix="lowbit-int8-speed-"))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {sorted(BUILDERS)}")

    calib = photo_crops(args.calib_samples, seed=0)
    held_out = photo_crops(32, seed=12345, split="report")
    calib_npz = args.out_dir / "calib.npz"
    np.savez(calib_npz, input=calib)
    print(f"outputs in {args.out_dir}; ORT quant_pre_process: "
          f"{'on' if args.ort_preprocess else 'off'}")

    rows: list[Row] = []
    for name in names:
        rows += bench_one(name, args, calib, calib_npz, held_out)
    print()
    print(format_text(rows))
    if args.markdown is not None:
        with args.markdown.open("a") as handle:
            handle.write(format_markdown(rows, args) + "\n")
        print(f"appended to {args.markdown}")


if __name__ == "__main__":
    main()
