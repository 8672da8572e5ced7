"""INT8 on all-MiniLM-L6-v2: lowbit static / SmoothQuant / dynamic against ONNX Runtime's quantizers.

    python bench/minilm_int8.py --workdir /tmp/minilm_int8 --markdown results.md
    python bench/minilm_int8.py --workdir /tmp/minilm_report --repeats 10 \
        --only lowbit-static-auto,lowbit-auto-no-smooth,lowbit-dynamic,ort-dynamic \
        --markdown bench/results/minilm_report.md           # the headline section
    python bench/minilm_int8.py --only float,lowbit-static,ort-dynamic --repeats 5
    python bench/minilm_int8.py --score-on tuning --no-speed \
        --only lowbit-static-auto,lowbit-table-smooth-0.5,...   # choose α on DEV

The encoder is exported by bench/minilm.py (sequence length 64, dynamic batch) and
cleaned by ``lowbit.transform``; every quantizer starts from that same F32 file.
The 400 sentences of bench/minilm.py are split by sentence (bench/splits.py): 100 DEV
sentences calibrate (every quantizer that calibrates sees exactly those), 100 other DEV
sentences score constants (``--score-on tuning``: how SmoothQuant's α was chosen), and
the 200 REPORT sentences give every published figure (``--score-on report``, the
default). For each variant the table gives the mean-pooled, L2-normalised sentence
embedding's cosine to F32's (mean, its 95 % bootstrap interval over the sentences, and
min), the file size, how many of the 48 MatMuls ORT runs as integer kernels, and the
speed ratio to F32 at ``--batches`` (1 and 32), all variants timed interleaved in one
process (lowbit.analysis.bench, medians; ``--no-speed`` leaves the timing out).
``--markdown PATH`` writes the section (provenance header first) to PATH; files kept
by ``--reuse`` are listed in it.

``lowbit-static-auto`` is lowbit's defaults (``lowbit calibrate`` with method auto, then
``lowbit deploy``: SmoothQuant at α 0.8 from the table's channel ranges, paired 8-bit
MatMul weights on a CPU without VNNI); ``lowbit-auto-no-smooth`` (``--smooth off``, on
a table calibrated with ``--check-unsmoothed``, as a user deploying it would),
``lowbit-auto-7bit`` (``--weight-range reduced``) and ``lowbit-auto-7bit-no-smooth`` (both:
the defaults before either existed) take them apart; ``lowbit-table-smooth-A`` smooths
at α = A from the table; ``lowbit-static`` is the defaults on a minmax table.

ORT variants use ``reduce_range=True`` (7-bit weights), as lowbit does on a CPU
without VNNI (``QuantizeSettings.weight_qmax`` = 63 there): with full-range weights,
ORT's uint8×int8 kernels saturate on such CPUs, which would be an unfair handicap.
``per_channel=True`` for both ORT quantizers (lowbit is per output column too). ORT's
``quantize_static`` runs in QDQ format with uint8 activations, on the canonical model
without ``quant_pre_process`` (the model already has static shapes apart from the
batch), once with its default op types (MatMul, Add, Mul, … as it sees fit) and once
with ``op_types_to_quantize=["MatMul"]`` (what lowbit quantizes in a transformer).
Its Entropy and Percentile calibrators build a histogram over each tensor's range;
with default op types they also calibrate the (1 − mask)·finfo.min tensor and fail
(numpy: "Too many bins for data range"), which the table's footnote records.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lowbit
import minilm
from lowbit.analysis.bench import BenchSettings, bench_models
from lowbit.analysis.explain import explain_int8
from lowbit.errors import LowbitError
from provenance import header as provenance_header
from splits import bootstrap_interval

log = logging.getLogger("minilm_int8")
CALIBRATION_SENTENCES = 100


@dataclass(frozen=True)
class Variant:
    name: str
    path: Path
    seconds: float
    note: str = ""


def _lowbit_variants(work: Path, f32: Path, calib: Path) -> dict[str, Callable[[], Variant]]:
    tables: dict[tuple[str, bool], Path] = {}

    def table(method: str, unsmoothed: bool) -> Path:
        """The table a user would calibrate for the deploy: for --smooth off, auto's
        output check scores its blends on the unsmoothed model (--check-unsmoothed)."""
        unsmoothed = unsmoothed and method == "auto"
        if (method, unsmoothed) not in tables:
            path = work / f"minilm.{method}{'.unsmoothed' if unsmoothed else ''}.calib"
            lowbit.calibrate(f32, calib, method=method, output=path, progress=False,
                             check_unsmoothed=unsmoothed)
            tables[method, unsmoothed] = path
        return tables[method, unsmoothed]

    def deploy(name: str, **kwargs: object) -> Callable[[], Variant]:
        def build() -> Variant:
            start = time.perf_counter()
            options = dict(kwargs)
            method = str(options.pop("method", "minmax"))
            if not options.get("dynamic"):
                options["calibration_table"] = table(method, options.get("smooth") == "off")
            out = work / f"{name}.onnx"
            result = lowbit.deploy(f32, output=out, **options)  # type: ignore[arg-type]
            notes = [n for n in result.notes if n.startswith("SmoothQuant")]
            return Variant(name, out, time.perf_counter() - start, "; ".join(notes))
        return build

    return {
        "lowbit-static": deploy("lowbit-static"),
        "lowbit-static-auto": deploy("lowbit-static-auto", method="auto"),
        "lowbit-auto-no-smooth": deploy("lowbit-auto-no-smooth", method="auto", smooth="off"),
        "lowbit-auto-7bit": deploy("lowbit-auto-7bit", method="auto", weight_range="reduced"),
        "lowbit-auto-7bit-no-smooth": deploy("lowbit-auto-7bit-no-smooth", method="auto",
                                             weight_range="reduced", smooth="off"),
        "lowbit-static-attention": deploy("lowbit-static-attention", quantize_attention=True),
        **{f"lowbit-table-smooth-{a}": deploy(f"lowbit-table-smooth-{a}", method="auto",
                                              smooth=a)
           for a in ("0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1.0")},
        "lowbit-smooth-0.5": deploy("lowbit-smooth-0.5", smooth="0.5", smooth_data=calib),
        "lowbit-smooth-auto": deploy("lowbit-smooth-auto", smooth="auto", smooth_data=calib),
        "lowbit-dynamic": deploy("lowbit-dynamic", dynamic=True),
        "lowbit-static-full-range": deploy("lowbit-static-full-range", weight_range="full"),
        "lowbit-dynamic-full-range": deploy("lowbit-dynamic-full-range", dynamic=True,
                                            weight_range="full"),
        "lowbit-dynamic-smooth-auto": deploy("lowbit-dynamic-smooth-auto", dynamic=True,
                                             smooth="auto", smooth_data=calib),
        "lowbit-w4a8": deploy("lowbit-w4a8", method="auto", weight_bits=4),
        "lowbit-w4a8-smooth-auto": deploy("lowbit-w4a8-smooth-auto", method="auto",
                                          weight_bits=4, smooth="auto", smooth_data=calib),
    }


def _ort_variants(work: Path, f32: Path, calib_arrays: dict[str, np.ndarray]
                  ) -> dict[str, Callable[[], Variant]]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rows = iter(range(len(calib_arrays["input_ids"])))

        def get_next(self) -> dict[str, np.ndarray] | None:
            i = next(self.rows, None)
            return None if i is None else {k: v[i:i + 1] for k, v in calib_arrays.items()}

    def static(method: CalibrationMethod, name: str, matmul_only: bool
               ) -> Callable[[], Variant]:
        def build() -> Variant:
            start = time.perf_counter()
            out = work / f"{name}.onnx"
            quantize_static(str(f32), str(out), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, reduce_range=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=method,
                            op_types_to_quantize=["MatMul"] if matmul_only else None)
            return Variant(name, out, time.perf_counter() - start)
        return build

    def dynamic() -> Variant:
        start = time.perf_counter()
        out = work / "ort-dynamic.onnx"
        quantize_dynamic(str(f32), str(out), per_channel=True, reduce_range=True,
                         weight_type=QuantType.QInt8)
        return Variant("ort-dynamic", out, time.perf_counter() - start)

    return {
        "ort-dynamic": dynamic,
        "ort-static-minmax": static(CalibrationMethod.MinMax, "ort-static-minmax", False),
        "ort-static-entropy": static(CalibrationMethod.Entropy, "ort-static-entropy", False),
        "ort-static-minmax-matmul": static(CalibrationMethod.MinMax, "ort-static-minmax-matmul",
                                           True),
        "ort-static-entropy-matmul": static(CalibrationMethod.Entropy,
                                            "ort-static-entropy-matmul", True),
        "ort-static-percentile-matmul": static(CalibrationMethod.Percentile,
                                               "ort-static-percentile-matmul", True),
    }


def _nncf_variants(work: Path, f32: Path, calib_arrays: dict[str, np.ndarray]
                   ) -> dict[str, Callable[[], Variant]]:
    """NNCF's post-training quantization (ONNX backend) on the same 100 sentences:
    its defaults, and ``model_type=TRANSFORMER`` (its transformer scheme: SmoothQuant,
    LayerNorm/Softmax kept float)."""
    def build(name: str, transformer: bool) -> Callable[[], Variant]:
        def run() -> Variant:
            import nncf
            import onnx

            start = time.perf_counter()
            rows = [{k: v[i:i + 1] for k, v in calib_arrays.items()}
                    for i in range(len(calib_arrays["input_ids"]))]
            options = {"model_type": nncf.ModelType.TRANSFORMER} if transformer else {}
            quantized = nncf.quantize(onnx.load(str(f32)), nncf.Dataset(rows),
                                      subset_size=len(rows), **options)
            out = work / f"{name}.onnx"
            onnx.save(quantized, str(out))
            return Variant(name, out, time.perf_counter() - start)
        return run

    return {"nncf": build("nncf", False), "nncf-transformer": build("nncf-transformer", True)}


def _rows(names: list[str], variants: dict[str, Variant], embeddings: dict[str, np.ndarray],
          kernels: dict[str, str], bench: object | None, batches: tuple[int, ...]
          ) -> Iterator[list[str]]:
    ref = embeddings["float"]
    order = list(variants)
    base = order.index("float")
    for i, name in enumerate(order):
        cos = minilm.cosines(ref, embeddings[name])
        interval = bootstrap_interval(cos.astype(np.float64))  # over sentences
        size = variants[name].path.stat().st_size / 1e6
        speed: list[str] = []
        if bench is not None:
            result = bench.results[i]  # type: ignore[attr-defined]
            speed = [cell for b in batches for cell in (
                f"{result.timing(b).median_ms:.1f}",
                f"{bench.ratio(b, i, base):.2f}x")]  # type: ignore[attr-defined]
        yield [name, f"{cos.mean():.5f}", f"{interval.low:.5f}–{interval.high:.5f}",
               f"{cos.min():.5f}", f"{size:.1f}", kernels[name], *speed,
               variants[name].note]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workdir", default="/tmp/minilm_int8", help="where files go")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per batch")
    parser.add_argument("--threads", type=int, default=2, help="ORT threads")
    parser.add_argument("--only", help="comma-separated variant names (float always runs)")
    parser.add_argument("--batches", default="1,32", help="batch sizes timed, comma-separated")
    parser.add_argument("--markdown", type=Path,
                        help="write the section (provenance header first) to this file")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse variant files already in --workdir (delete one to rebuild)")
    parser.add_argument("--score-on", choices=("report", "tuning"), default="report",
                        help="REPORT sentences (published figures) or the DEV tuning "
                        "sentences (choosing constants); bench/splits.py")
    parser.add_argument("--no-speed", action="store_true", help="leave out the timing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    logging.getLogger("lowbit.quantize.prepare.smoothquant").setLevel(logging.INFO)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    raw = work / "minilm.raw.onnx"
    if not raw.exists():
        minilm.export_minilm(raw)
    f32 = work / "minilm.f32.onnx"
    lowbit.transform(raw, f32)
    calib_texts, eval_texts = minilm.split_sentences(CALIBRATION_SENTENCES)
    if args.score_on == "tuning":
        eval_texts = minilm.tuning_sentences()
    calib = minilm.write_dataset(work / "calib.npz", calib_texts)
    encoded = minilm.tokenize(eval_texts)
    with np.load(calib) as data:
        calib_arrays = {k: data[k] for k in data.files}

    builders: dict[str, Callable[[], Variant]] = {
        "float": lambda: Variant("float", f32, 0.0)}
    builders.update(_lowbit_variants(work, f32, calib))
    builders.update(_ort_variants(work, f32, calib_arrays))
    builders.update(_nncf_variants(work, f32, calib_arrays))
    wanted = ["float"] + [n for n in (args.only or ",".join(builders)).split(",")
                          if n and n != "float"]
    variants: dict[str, Variant] = {}
    failures: list[str] = []
    reused: list[str] = []
    batches = tuple(int(b) for b in args.batches.split(","))
    for name in wanted:
        path, note_file = work / f"{name}.onnx", work / f"{name}.note"
        if args.reuse and name != "float" and path.exists():
            note = note_file.read_text() if note_file.exists() else ""
            variants[name] = Variant(name, path, 0.0, note)
            stamp = datetime.datetime.fromtimestamp(path.stat().st_mtime)
            reused.append(f"{name} ({path}, built {stamp:%Y-%m-%d %H:%M})")
            log.warning("  reusing %s", reused[-1])
            continue
        log.info("building %s", name)
        try:
            variants[name] = builders[name]()
        except Exception as err:  # noqa: BLE001 - an ORT quantizer failing here is a result
            failures.append(f"{name}: {type(err).__name__}: {str(err).splitlines()[0]}")
            log.warning("  %s failed: %s", name, failures[-1])
            continue
        note_file.write_text(variants[name].note)
        log.info("  %s: %.1f s", name, variants[name].seconds)
    embeddings, kernels = {}, {}
    for name, variant in variants.items():
        embeddings[name] = minilm.embed(variant.path, encoded, threads=args.threads)
        try:
            advice = explain_int8(variant.path, profile=False)
        except LowbitError as err:  # e.g. NNCF's default writes an infinite scale here
            kernels[name] = "-"
            failures.append(f"{name}: explain refused it: {str(err).splitlines()[0]}")
            continue
        kernels[name] = f"{sum(op.integer for op in advice.ops)}/{len(advice.ops)}"
    bench = None if args.no_speed else bench_models(
        [v.path for v in variants.values()],
        BenchSettings(batches=batches, threads=args.threads, repeats=args.repeats),
        progress=False)
    header = ["variant", "cos mean", f"95 % CI ({len(eval_texts)} sentences)", "cos min", "MB",
              "int MatMuls", *(cell for b in (() if args.no_speed else batches)
                               for cell in (f"b{b} ms", f"b{b} vs F32")), "note"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |"
              for row in _rows(wanted, variants, embeddings, kernels, bench, batches)]
    cpu = platform.processor() or platform.machine()
    title = (f"all-MiniLM-L6-v2, {datetime.date.today()}, {cpu}, ORT {ort.__version__}, "
             f"{args.threads} threads (a machine shared with other work: read the ratios), "
             + ("no timing (--no-speed), " if args.no_speed else f"{args.repeats} repeats, ")
             + f"{CALIBRATION_SENTENCES} DEV calibration / {len(eval_texts)} "
             f"{args.score_on.upper() if args.score_on == 'report' else 'DEV tuning'} "
             "sentences")
    text = "\n".join([provenance_header(argv), "", title + ".", "", *lines, "",
                      *(f"* failed: {f}" for f in failures),
                      *(f"* reused from an earlier run (--reuse): {r}" for r in reused), ""])
    print(text)
    print("build seconds: " + ", ".join(f"{v.name} {v.seconds:.0f}" for v in variants.values()))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
