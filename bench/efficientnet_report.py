"""EfficientNet-Lite0 (real ImageNet weights) through lowbit end to end, against ORT's quantizer.

    python bench/efficientnet_report.py                                   # minmax
    python bench/efficientnet_report.py --method minmax,percentile,kl,mse --per-tensor \\
        --markdown results.md

Steps, all in one process:

1. export the torch model to ONNX (bench/efficientnet_lite0.py), ``lowbit.transform``;
2. for each ``--method``: ``lowbit.calibrate`` on 200 crops of the DEV photos (seed 0),
   ``lowbit.deploy`` INT8 (per-channel weights, uint8 activations; with
   ``--per-tensor`` also per-tensor weights);
3. ORT ``quantize_static`` on the same crops (QDQ, per-channel, U8S8) for each
   ``--ort-method`` (MinMax, Percentile, Entropy). ORT's histogram calibrators keep
   every activation of every sample (~52 MB a sample here), so they get as many
   of the 200 crops as fit in half the free memory; the table says how many;
4. accuracy against F32 on ``--eval`` crops of the REPORT photos (seed 1): top-1
   agreement with its 95 % bootstrap interval over the 7 photos, top-5 overlap
   (|top5 F32 ∩ top5 INT8| / 5, averaged), mean logit cosine; and the named photos'
   top-5, F32 beside the first lowbit INT8;
5. ``lowbit.bench``: F32, the first lowbit INT8 and ORT MinMax INT8 interleaved at
   ``--batches`` (1 and 32), ``--threads`` threads (plus the W4A8 models with
   ``--weight-bits 4``).

``--markdown PATH`` writes the section (provenance header first) to PATH; the headline
section is ``--defaults --method minmax --ort-method minmax``: lowbit's defaults beside
minmax and ORT's MinMax.

Issue 6 parts 3-4, on the first method's table: ``--equalize`` adds per-tensor (and
per-channel) INT8 with cross-layer equalization (ReLU6 pairs bounded by the data, and
the ReLU6→Relu variant with its float model's own agreement), with bias correction too
when ``--bias-correction`` is given; ``--adaround`` adds per-channel INT8 with AdaRound;
``--weight-bits 4`` adds W4A8 (nearest, and AdaRound with ``--adaround``), stored as int8
at the model's opset 17 and as int4 in an opset-21 copy (for size and speed).

Calibration crops come from the 10 DEV photos and the scored crops from the 7 REPORT
photos of bench/splits.py, so no scored crop shares a photo with calibration; with 7
photos the interval is wide. Agreement measures how faithfully INT8 reproduces F32,
not ImageNet accuracy.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lowbit
from efficientnet_lite0 import export_onnx
from lowbit.analysis.bench import BenchComparison, BenchSettings
from lowbit.analysis.kernels import count_kernels
from photos import class_names, named_photos, photo_set, photo_sources
from provenance import header as provenance_header
from splits import REPORT, Interval, bootstrap_interval

log = logging.getLogger("efficientnet_report")

LOWBIT_METHODS = ("minmax", "percentile", "kl", "mse", "auto")
ORT_METHODS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
ACTIVATION_MB_PER_SAMPLE = 52.4  # every float tensor of one batch-1 run (shape inference)


@dataclass(frozen=True)
class Agreement:
    """How closely one model's logits follow F32's on the held-out crops."""

    top1: float  # fraction of crops whose top-1 class is F32's
    top5_overlap: float  # mean |top5 ∩ top5_F32| / 5
    cosine: float  # mean cosine of the logit vectors
    top1_interval: Interval  # top1's 95 % bootstrap interval over the REPORT photos
    cosine_interval: Interval  # the mean cosine's, likewise


@dataclass(frozen=True)
class Variant:
    """One INT8 model and how it was made."""

    label: str
    quantizer: str
    method: str
    granularity: str
    calib_samples: int
    path: Path
    seconds: float  # calibration + quantization wall time


@dataclass(frozen=True)
class Row:
    variant: Variant
    agreement: Agreement
    int_kernels: str


class _ArrayReader(CalibrationDataReader):
    """Feeds ORT's calibrator one batch-1 sample at a time."""

    def __init__(self, images: np.ndarray) -> None:
        self._images = images
        self._iter: Iterator[int] = iter(range(len(images)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        index = next(self._iter, None)
        return None if index is None else {"input": self._images[index:index + 1]}

    def rewind(self) -> None:
        self._iter = iter(range(len(self._images)))


def run_model(path: Path, images: np.ndarray, threads: int, batch: int = 50) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"input": images[i:i + batch]})[0]
                           for i in range(0, len(images), batch)])


def agreement(reference: np.ndarray, logits: np.ndarray) -> Agreement:
    top5_ref = np.argsort(-reference, axis=1)[:, :5]
    top5 = np.argsort(-logits, axis=1)[:, :5]
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(top5_ref, top5, strict=True)])
    ref64, out64 = reference.astype(np.float64), logits.astype(np.float64)
    cos = (ref64 * out64).sum(1) / (np.linalg.norm(ref64, axis=1) * np.linalg.norm(out64, axis=1))
    agree = (top5_ref[:, 0] == top5[:, 0]).astype(np.float64)
    sources = photo_sources(len(agree), "report")
    return Agreement(float(agree.mean()), float(overlap), float(cos.mean()),
                     bootstrap_interval(agree, sources), bootstrap_interval(cos, sources))


def default_variant(f32: Path, calib_npz: Path, samples: int, out: Path) -> Variant:
    """lowbit's defaults: ``lowbit calibrate`` (method auto) and ``lowbit deploy`` with
    nothing else given (bias correction from the table, this CPU's weight grids)."""
    start = time.perf_counter()
    table = out / "lite0.default.calib"
    lowbit.calibrate(f32, calib_npz, num=samples, output=table, progress=False)
    path = out / "lite0.lowbit.default.int8.onnx"
    lowbit.deploy(f32, calibration_table=table, output=path)
    seconds = time.perf_counter() - start
    log.info("lowbit defaults: %.1f s", seconds)
    return Variant("lowbit defaults", "lowbit", "auto", "defaults", samples, path, seconds)


def lowbit_variants(f32: Path, calib_npz: Path, methods: list[str], per_tensor: bool,
                    samples: int, out: Path, bias_correction: bool = False) -> list[Variant]:
    variants = []
    for method in methods:
        start = time.perf_counter()
        table = out / f"lite0.{method}.calib"
        lowbit.calibrate(f32, calib_npz, num=samples, method=method, output=table,
                         progress=False)
        calib_seconds = time.perf_counter() - start
        granularities = (True, False) if per_tensor else (True,)
        corrections = (False, True) if bias_correction else (False,)
        for per_channel, corrected in ((g, c) for g in granularities for c in corrections):
            gran = "per-channel" if per_channel else "per-tensor"
            if corrected:
                gran += " + bias correction"
            start = time.perf_counter()
            path = out / f"lite0.lowbit.{method}.{gran.replace(' ', '_')}.int8.onnx"
            lowbit.deploy(f32, quantize="INT8", calibration_table=table, output=path,
                          per_channel=per_channel,
                          bias_correction=calib_npz if corrected else False)
            seconds = calib_seconds + time.perf_counter() - start
            variants.append(Variant(f"lowbit {method} {gran}", "lowbit", method, gran, samples,
                                    path, seconds))
            log.info("lowbit %s %s: %.1f s", method, gran, seconds)
    return variants


def accuracy_variants(f32: Path, calib_npz: Path, method: str, samples: int, out: Path,
                      args: argparse.Namespace) -> list[Variant]:
    """Equalization, AdaRound and W4A8 variants (issue 6 parts 3-4) on one method's table."""
    table = out / f"lite0.{method}.calib"
    wanted: list[tuple[str, dict]] = []
    if args.equalize:
        wanted += [("per-tensor + CLE", {"per_channel": False, "equalize": calib_npz}),
                   ("per-tensor + CLE (ReLU6→Relu)", {"per_channel": False, "equalize": calib_npz,
                                                          "equalize_relu6": "relu"}),
                   ("per-channel + CLE", {"equalize": calib_npz})]
        if args.bias_correction:
            wanted += [("per-tensor + CLE + bias correction",
                        {"per_channel": False, "equalize": calib_npz, "bias_correction": calib_npz})]
    if args.adaround:
        wanted += [("per-channel + AdaRound", {"adaround": calib_npz})]
        if args.bias_correction:
            wanted += [("per-channel + AdaRound + bias correction",
                        {"adaround": calib_npz, "bias_correction": calib_npz})]
    if args.weight_bits == 4:
        wanted += [("W4A8 per-channel", {"weight_bits": 4})]
        if args.bias_correction:
            wanted += [("W4A8 per-channel + bias correction",
                        {"weight_bits": 4, "bias_correction": calib_npz})]
        if args.adaround:
            wanted += [("W4A8 per-channel + AdaRound", {"weight_bits": 4, "adaround": calib_npz})]
            if args.bias_correction:
                wanted += [("W4A8 per-channel + AdaRound + bias correction",
                            {"weight_bits": 4, "adaround": calib_npz,
                             "bias_correction": calib_npz})]
    variants = []
    for label, options in wanted:
        start = time.perf_counter()
        path = out / f"lite0.lowbit.{method}.{_slug(label)}.onnx"
        options = {"bias_correction": False, **options}  # each algorithm alone unless asked
        result = lowbit.deploy(f32, quantize="INT8", calibration_table=table, output=path,
                               adaround_iterations=args.adaround_iterations, **options)
        seconds = time.perf_counter() - start
        for note in result.notes:
            log.info("  %s: %s", label, note)
        variants.append(Variant(f"lowbit {method} {label}", "lowbit", method, label, samples,
                                path, seconds))
        log.info("lowbit %s %s: %.1f s", method, label, seconds)
    if args.weight_bits == 4:
        variants.append(_int4_copy(f32, table, out, method, samples))
    return variants


def _int4_copy(f32: Path, table: Path, out: Path, method: str, samples: int) -> Variant:
    """W4A8 of an opset-21 copy of the model: the weights are then stored as int4."""
    import onnx
    from onnx import version_converter

    opset21 = out / "lite0.f32.opset21.onnx"
    converted = version_converter.convert_version(onnx.load(str(f32)), 21)
    converted.ir_version = 10
    onnx.save(converted, str(opset21))
    start = time.perf_counter()
    path = out / f"lite0.lowbit.{method}.w4a8_int4.onnx"
    lowbit.deploy(opset21, quantize="INT8", calibration_table=table, output=path, weight_bits=4,
                  bias_correction=False)
    label = "W4A8 per-channel, int4 storage (opset 21)"
    return Variant(f"lowbit {method} {label}", "lowbit", method, label, samples, path,
                   time.perf_counter() - start)


def relu_float_variant(f32: Path, calib_npz: Path, out: Path) -> Variant:
    """The float model after ReLU6→Relu + CLE, to show what that replacement alone costs."""
    import onnx

    from lowbit.quantize.prepare.equalize import EqualizeSettings, equalize_layers

    model, _ = equalize_layers(onnx.load(str(f32)), EqualizeSettings(relu6="relu"))
    path = out / "lite0.f32.relu_cle.onnx"
    onnx.save(model, str(path))
    return Variant("F32 after ReLU6→Relu + CLE (no quantization)", "float", "-", "-", 0, path,
                   0.0)


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label).strip("_").lower()


def ort_variants(f32: Path, calib: np.ndarray, methods: list[str], out: Path) -> list[Variant]:
    variants = []
    for method in methods:
        count = len(calib) if method == "minmax" else _histogram_samples(len(calib))
        if count == 0:
            log.warning("ORT %s skipped: not enough free memory for even 8 samples", method)
            continue
        path = out / f"lite0.ort.{method}.int8.onnx"
        start = time.perf_counter()
        quantize_static(str(f32), str(path), _ArrayReader(calib[:count]),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=ORT_METHODS[method])
        seconds = time.perf_counter() - start
        variants.append(Variant(f"ORT {method} per-channel", "ORT", method, "per-channel",
                                count, path, seconds))
        log.info("ORT %s (%d samples): %.1f s", method, count, seconds)
    return variants


def _histogram_samples(wanted: int) -> int:
    """As many samples as ORT's histogram calibrators can hold in half the free memory
    (it keeps each activation, then concatenates them: about twice the raw size)."""
    fit = int(_available_mb() * 0.5 / (2 * ACTIVATION_MB_PER_SAMPLE))
    return min(wanted, fit) if fit >= 8 else 0


def _available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def accuracy_rows(variants: list[Variant], reference: np.ndarray, held_out: np.ndarray,
                  threads: int) -> list[Row]:
    rows = []
    for variant in variants:
        logits = run_model(variant.path, held_out, threads)
        kernels = count_kernels(variant.path, threads=threads)
        total = kernels.integer_compute + kernels.float_compute
        rows.append(Row(variant, agreement(reference, logits),
                        f"{kernels.integer_compute}/{total}"))
    return rows


def named_top5(f32: Path, int8: Path, threads: int) -> list[tuple[str, str, str]]:
    names = class_names()
    lines = []
    for photo, x in named_photos().items():
        cells = []
        for path in (f32, int8):
            logits = run_model(path, x, threads)[0].astype(np.float64)
            prob = np.exp(logits - logits.max())
            prob /= prob.sum()
            cells.append(", ".join(f"{names[i]} {prob[i]:.2f}" for i in np.argsort(-logits)[:5]))
        lines.append((photo, cells[0], cells[1]))
    return lines


def markdown_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def accuracy_table(rows: list[Row], held_out: int) -> str:
    photos = len(REPORT.photos)
    header = ("INT8 model", "calib samples", f"top-1 agree ({held_out})",
              f"95 % CI ({photos} photos)", "top-5 overlap", "logit cos",
              f"logit cos 95 % CI ({photos} photos)", "int kernels",
              "calib+quant s")
    cells = [(r.variant.label, str(r.variant.calib_samples), f"{100 * r.agreement.top1:.1f} %",
              (f"{100 * r.agreement.top1_interval.low:.1f}–"
              f"{100 * r.agreement.top1_interval.high:.1f} %"),
              f"{100 * r.agreement.top5_overlap:.1f} %", f"{r.agreement.cosine:.4f}",
              (f"{r.agreement.cosine_interval.low:.4f}–"
               f"{r.agreement.cosine_interval.high:.4f}"),
              r.int_kernels, f"{r.variant.seconds:.1f}") for r in rows]
    return markdown_table(header, cells)


def speed_table(labels: list[str], comparison: BenchComparison, batches: tuple[int, ...]) -> str:
    header = ("model", "size MB", *(f"b{b} median ms" for b in batches),
              *(f"b{b} img/s" for b in batches), *(f"speed-up b{b}" for b in batches))
    f32 = labels.index("F32")
    cells = []
    for index, (label, result) in enumerate(zip(labels, comparison.results, strict=True)):
        cells.append((label, f"{result.size_bytes / 1e6:.1f}",
                      *(f"{result.timing(b).median_ms:.2f}" for b in batches),
                      *(f"{result.timing(b).throughput:.1f}" for b in batches),
                      *(f"{comparison.ratio(b, index, f32):.2f}x" for b in batches)))
    return markdown_table(header, cells)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="minmax",
                        help=f"lowbit calibration method(s), comma-separated, from "
                             f"{','.join(LOWBIT_METHODS)}; the first is benched")
    parser.add_argument("--ort-method", default="minmax,percentile,entropy",
                        help="ORT calibration method(s), comma-separated; '' for none")
    parser.add_argument("--bias-correction", action="store_true",
                        help="also deploy lowbit INT8 with --bias-correction (calibration data)")
    parser.add_argument("--per-tensor", action="store_true",
                        help="also deploy lowbit INT8 with per-tensor weight scales")
    parser.add_argument("--equalize", action="store_true",
                        help="also deploy with cross-layer equalization (per-tensor, "
                             "per-channel, ReLU6→Relu; + bias correction with --bias-correction)")
    parser.add_argument("--adaround", action="store_true",
                        help="also deploy per-channel INT8 (and W4A8) with AdaRound")
    parser.add_argument("--adaround-iterations", type=int, default=1000,
                        help="AdaRound steps per layer")
    parser.add_argument("--weight-bits", type=int, choices=(4, 8), default=8,
                        help="4: also deploy W4A8 (int8 storage, and int4 at opset 21)")
    parser.add_argument("--defaults", action="store_true",
                        help="add a first row: lowbit's defaults (calibrate, deploy, nothing "
                        "else given)")
    parser.add_argument("--calib", type=int, default=200, help="calibration crops (seed 0)")
    parser.add_argument("--eval", type=int, default=300, help="held-out crops (seed 1)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="1,32", help="batch sizes timed, comma-separated")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None,
                        help="write the section (provenance header first) to this file")
    args = parser.parse_args()
    args.methods = _choices(parser, args.method, LOWBIT_METHODS, "--method")
    args.ort_methods = _choices(parser, args.ort_method, tuple(ORT_METHODS), "--ort-method")
    if not args.methods:
        parser.error("--method needs at least one method")
    return args


def _choices(parser: argparse.ArgumentParser, text: str, allowed: tuple[str, ...],
             option: str) -> list[str]:
    chosen = [m.strip().lower() for m in text.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in allowed]
    if unknown:
        parser.error(f"{option}: unknown {unknown}; choose from {', '.join(allowed)}")
    return chosen


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    began = time.perf_counter()
    out = args.out_dir or Path(tempfile.mkdtemp(prefix="lowbit-efficientnet-"))
    out.mkdir(parents=True, exist_ok=True)

    onnx_path = export_onnx(out / "efficientnet_lite0.onnx")
    f32 = lowbit.transform(onnx_path, out / "lite0.f32.onnx").path
    calib = photo_set(args.calib, seed=0, split="dev")
    held_out = photo_set(args.eval, seed=1, split="report")
    calib_npz = out / "calib.npz"
    np.savez(calib_npz, input=calib)
    log.info("model and %d + %d crops ready in %s (%.0f s)", args.calib, args.eval, out,
             time.perf_counter() - began)

    variants = [default_variant(f32, calib_npz, args.calib, out)] if args.defaults else []
    variants += lowbit_variants(f32, calib_npz, args.methods, args.per_tensor, args.calib, out,
                                args.bias_correction)
    variants += accuracy_variants(f32, calib_npz, args.methods[0], args.calib, out, args)
    if args.equalize:
        variants.append(relu_float_variant(f32, calib_npz, out))
    variants += ort_variants(f32, calib, args.ort_methods, out)
    reference = run_model(f32, held_out, args.threads)
    rows = accuracy_rows(variants, reference, held_out, args.threads)
    top5 = named_top5(f32, variants[0].path, args.threads)

    timed = [("F32", f32), (variants[0].label, variants[0].path)]
    timed += [(v.label, v.path) for v in variants if v.quantizer == "ORT" and v.method == "minmax"]
    timed += [(v.label, v.path) for v in variants
              if v.granularity.startswith("W4A8") and "AdaRound" not in v.granularity
              and "bias" not in v.granularity]
    batches = tuple(int(b) for b in args.batches.split(","))
    comparison = lowbit.bench([p for _, p in timed], BenchSettings(
        batches=batches, threads=args.threads, repeats=args.repeats))
    elapsed = time.perf_counter() - began

    report = "\n\n".join([
        provenance_header(),
        (f"EfficientNet-Lite0 (ImageNet weights), {datetime.date.today()}, ORT "
         f"{ort.__version__}, {args.threads} threads, the whole run {elapsed / 60:.1f} min on "
         "a machine shared with other work."),
        (f"Agreement with F32 on {args.eval} crops (seed 1) of the {len(REPORT.photos)} REPORT "
         f"photos ({', '.join(REPORT.photos)}); calibration on {args.calib} crops (seed 0) "
         "of the DEV photos (bench/splits.py). Only 7 photos: the interval is a bootstrap "
         "over photos, not over crops."),
        accuracy_table(rows, args.eval),
        f"Top-5 of the named photos' centre crops, F32 and {variants[0].label}:",
        markdown_table(("photo", "F32", "INT8"), top5),
        (f"Speed (interleaved in one process, {args.repeats} repeats, {args.threads} threads, "
         "medians; the machine was loaded, so read the ratios):"),
        speed_table([label for label, _ in timed], comparison, batches),
    ]) + "\n"
    print()
    print(report)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(report, encoding="utf-8")
        print(f"wrote {args.markdown}")


if __name__ == "__main__":
    main()
