"""Issue 6's accuracy table: lowbit's INT8 configurations against ONNX Runtime and NNCF.

    python bench/issue6_accuracy.py --markdown BENCHMARKS.md           # all models, all rows
    python bench/issue6_accuracy.py --models mnist_resnet --no-nncf     # one model, quicker
    python bench/issue6_accuracy.py --lowbit auto,auto+bc --ort '' --no-nncf --no-speed

Models (``--models``):

- ``efficientnet_lite0``: real ImageNet weights (bench/efficientnet_lite0.py); calibration
  on 200 crops of the DEV photos (seed 0); scored against F32 on ``--eval`` (300) crops
  of the 7 REPORT photos (seed 1; bench/splits.py): top-1 agreement and top-5 overlap
  (|top5 ∩ top5_F32| / 5);
- ``mnist_mobilenetv2``, ``mnist_resnet``: trained on real MNIST digits
  (bench/mnist_models.py); calibration on the demo's 200 training digits; scored on
  the 500 REPORT digits of the 1,000 held out (bench/splits.py, by index: the writers
  are not known): true top-1 and top-1 agreement with F32.

Rows, all from the same F32 file (``lowbit.transform``'s output, BN folded) and the
same 200 calibration samples:

- ORT ``quantize_static`` QDQ, per-channel int8 weights, uint8 activations, MinMax /
  Entropy / Percentile, with ``reduce_range=True`` (7-bit weights), since this CPU (x86,
  AVX2, no VNNI) saturates full-range U8S8 products; ORT MinMax once more without it to
  show the effect. ORT's histogram calibrators hold every activation of every sample
  in memory; here they are fed 20 samples per ``collect_data`` call (ORT merges the
  histograms between calls), so all 200 samples fit in memory;
- NNCF ``nncf.quantize`` (ONNX backend, defaults: preset PERFORMANCE, fast bias
  correction, overflow fix on the first layer only), and with
  ``OverflowFix.ENABLE`` (7-bit weights everywhere, the analogue of reduce_range);
- lowbit (``--lowbit``): the calibration methods minmax, percentile, kl, mse, auto
  (bias correction off, to compare calibration alone); ``default``: ``lowbit calibrate``
  and ``lowbit deploy`` with their defaults (auto, and bias correction from the mean
  inputs the table stores); auto + bias correction measured on 32 samples
  (``auto+bc``); and the options other parts of issue 6 add to ``lowbit.deploy``:
  equalize (``+eq``), adaround (``+ada``), per-tensor weights (``pt``); ``default 7-bit``
  and ``default+ada 7-bit`` force ``--weight-range reduced`` (7-bit weights everywhere,
  lowbit's default on a CPU without VNNI before paired weights).

Speed: ``lowbit.analysis.bench.bench_models`` times F32 and one model of each distinct
INT8 graph interleaved in one process at batch 8 (EfficientNet) or 32 (MNIST); rows
whose graphs differ only in constant values (scales, zero points, weights: every
calibration method) run the same kernels on the same shapes and share their group's
figure, so each timed model gets more repeats. The machine is shared: speed ratios
are noisy, accuracy figures are not. File size in MB.

The summary compares, per model, agreement with F32 (the issue's promise: INT8 agrees
with float at least as well as the best of ORT's calibrators and NNCF) and, as the
finer measure, the logits' SQNR against F32.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import logging
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization import calibrate as ort_calibrate

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lowbit
from lowbit.analysis.bench import BenchSettings, bench_models
from lowbit.analysis.kernels import count_kernels
from lowbit.io.model import input_specs, load_model
from splits import REPORT, digit_indices

log = logging.getLogger("issue6_accuracy")

MODELS = ("efficientnet_lite0", "mnist_mobilenetv2", "mnist_resnet")
ORT_METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
ORT_CHUNK = 20


@dataclass(frozen=True)
class LowbitConfig:
    """One lowbit row: a calibration method and deploy keyword arguments."""

    label: str
    method: str
    deploy: dict[str, object] = field(default_factory=dict)
    needs: tuple[str, ...] = ()  # lowbit.deploy parameters this row needs


def lowbit_configs(calib: Path) -> dict[str, LowbitConfig]:
    """Every lowbit row by its --lowbit key; calib is the calibration data set. The
    method rows turn bias correction off (``bias_correction=False``) so that they compare
    calibration alone; ``default`` is ``lowbit calibrate`` + ``lowbit deploy`` as they
    come (auto, bias correction from the table's input means)."""
    off = {"bias_correction": False}
    base = {m: LowbitConfig(f"lowbit {m}", m, off) for m in ("minmax", "percentile", "kl",
                                                           "mse", "auto")}
    return {
        **base,
        "default": LowbitConfig(DEFAULT_LABEL, "auto"),
        "auto+bc": LowbitConfig("lowbit auto + bias correction (32 samples)", "auto",
                                {"bias_correction": calib}),
        "auto+eq": LowbitConfig("lowbit auto + equalize", "auto",
                                {"equalize": calib, **off}, needs=("equalize",)),
        "auto+eq+bc": LowbitConfig("lowbit auto + equalize + bias correction (32 samples)",
                                   "auto", {"equalize": calib, "bias_correction": calib},
                                   needs=("equalize",)),
        "default+ada": LowbitConfig("lowbit default + adaround", "auto", {"adaround": calib},
                                    needs=("adaround",)),
        "default 7-bit": LowbitConfig("lowbit default, 7-bit weights (--weight-range reduced)",
                                      "auto", {"weight_range": "reduced"}),
        "default+ada 7-bit": LowbitConfig("lowbit default + adaround, 7-bit weights", "auto",
                                          {"adaround": calib, "weight_range": "reduced"},
                                          needs=("adaround",)),
        "w4a8": LowbitConfig("lowbit W4A8 default (--weight-bits 4)", "auto",
                             {"weight_bits": 4}),
        "w4a8 auto": LowbitConfig("lowbit W4A8 auto, no bias correction", "auto",
                                  {"weight_bits": 4, **off}),
        "w4a8+ada": LowbitConfig("lowbit W4A8 default + adaround", "auto",
                                 {"weight_bits": 4, "adaround": calib}, needs=("adaround",)),
        "pt auto": LowbitConfig("lowbit auto, per-tensor", "auto",
                                {"per_channel": False, **off}),
        "pt default": LowbitConfig("lowbit default, per-tensor", "auto",
                                   {"per_channel": False}),
        "pt auto+eq": LowbitConfig("lowbit auto, per-tensor + equalize", "auto",
                                   {"per_channel": False, "equalize": calib, **off},
                                   needs=("equalize",)),
        "pt auto+eq+bc": LowbitConfig("lowbit auto, per-tensor + equalize + bias correction "
                                      "(32 samples)", "auto",
                                      {"per_channel": False, "equalize": calib,
                                       "bias_correction": calib}, needs=("equalize",)),
    }


DEFAULT_LABEL = "lowbit default (auto + bias correction from the table)"
DEFAULT_LOWBIT = ("minmax", "percentile", "kl", "mse", "auto", "default", "auto+bc",
                  "auto+eq", "auto+eq+bc", "default+ada", "default 7-bit", "default+ada 7-bit",
                  "w4a8", "w4a8 auto", "w4a8+ada",
                  "pt auto", "pt default", "pt auto+eq", "pt auto+eq+bc")


@dataclass(frozen=True)
class Bench:
    """One model's files: the F32 model, the calibration and evaluation data."""

    name: str
    f32: Path
    calib: np.ndarray  # (200, ...) float32
    calib_npz: Path
    eval: np.ndarray
    labels: np.ndarray | None  # true labels, for a true top-1
    batch: int


@dataclass(frozen=True)
class Variant:
    label: str
    path: Path | None  # None: the row failed, see note
    seconds: float
    note: str = ""


@dataclass(frozen=True)
class Scores:
    top1: float | None  # true top-1 (labels), or None
    agree: float  # top-1 agreement with F32
    top5: float  # mean |top5 ∩ top5_F32| / 5
    sqnr: float  # logits vs F32, dB


# ---------------------------------------------------------------- models and data


def efficientnet(out: Path, calib_count: int, eval_count: int) -> Bench:
    from efficientnet_lite0 import export_onnx
    from photos import photo_set

    f32 = lowbit.transform(export_onnx(out / "efficientnet_lite0.onnx"),
                           out / "efficientnet_lite0.f32.onnx").path
    calib = photo_set(calib_count, seed=0, split="dev")
    npz = out / "efficientnet_calib.npz"
    np.savez(npz, input=calib)
    held_out = photo_set(eval_count, seed=1, split="report")
    return Bench("efficientnet_lite0", f32, calib, npz, held_out, None, 8)


def mnist(name: str, out: Path, cache: Path | None) -> Bench:
    from mnist_models import prepare

    model = prepare(cache, names=(name,))[name]
    f32 = lowbit.transform(model.onnx, out / f"{name}.f32.onnx").path
    report = digit_indices(REPORT)  # the 500 REPORT digits of the 1,000 held out
    with np.load(model.calib) as c, np.load(model.test) as t:
        calib, test, labels = c["input"], t["input"][report], t["label"][report]
    return Bench(name, f32, calib, model.calib, test, labels, 32)


# ---------------------------------------------------------------- quantizers


class _Reader(CalibrationDataReader):
    def __init__(self, name: str, samples: Sequence[np.ndarray]) -> None:
        self._name, self._samples = name, samples
        self._iter: Iterator[np.ndarray] = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        item = next(self._iter, None)
        return None if item is None else {self._name: item}

    def rewind(self) -> None:
        self._iter = iter(self._samples)


@contextlib.contextmanager
def _chunked_histograms(chunk: int) -> Iterator[None]:
    """Make ORT's histogram calibrators read the data ``chunk`` samples per collect_data
    call: their histograms merge between calls, and memory holds ``chunk`` samples'
    activations instead of all of them."""
    original = ort_calibrate.HistogramCalibrater.collect_data

    def collect(self: ort_calibrate.HistogramCalibrater, reader: CalibrationDataReader) -> None:
        while True:
            items = []
            while len(items) < chunk and (item := reader.get_next()):
                items.append(item)
            if not items:
                return
            original(self, _ListReader(items))

    ort_calibrate.HistogramCalibrater.collect_data = collect  # type: ignore[method-assign]
    try:
        yield
    finally:
        ort_calibrate.HistogramCalibrater.collect_data = original  # type: ignore[method-assign]


class _ListReader(CalibrationDataReader):
    def __init__(self, items: list[dict[str, np.ndarray]]) -> None:
        self._items = iter(items)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def ort_variant(bench: Bench, method: str, reduce_range: bool, out: Path,
                int4: bool = False) -> Variant:
    """ORT ``quantize_static`` QDQ, per channel; ``int4`` gives W4A8 (QInt4 weights, which
    ORT stores as int4 DequantizeLinear, com.microsoft below opset 21)."""
    suffix = "" if reduce_range else ", full-range weights"
    label = (f"ORT {method} W4A8 (QInt4 weights)" if int4
             else f"ORT {method}{' reduce_range' if reduce_range else suffix}")
    kind = "w4a8" if int4 else "int8"
    path = out / f"{bench.name}.ort.{method}{'.rr' if reduce_range else ''}.{kind}.onnx"
    name = input_specs(load_model(bench.f32))[0].name
    samples = [bench.calib[i:i + 1] for i in range(len(bench.calib))]
    start = time.perf_counter()
    with _chunked_histograms(ORT_CHUNK), contextlib.redirect_stdout(sys.stderr):
        quantize_static(str(bench.f32), str(path), _Reader(name, samples),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt4 if int4 else QuantType.QInt8,
                        calibrate_method=ORT_METHODS[method])
    return Variant(label, path, time.perf_counter() - start)


def nncf_variant(bench: Bench, overflow_fix: str, out: Path) -> Variant:
    label = f"NNCF{' overflow_fix=enable' if overflow_fix == 'enable' else ''}"
    try:
        import nncf
    except ImportError as err:
        return Variant(label, None, 0.0, f"nncf not importable: {err}")
    name = input_specs(load_model(bench.f32))[0].name
    path = out / f"{bench.name}.nncf.{overflow_fix}.int8.onnx"
    start = time.perf_counter()
    try:
        advanced = nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix(overflow_fix))
        dataset = nncf.Dataset([bench.calib[i:i + 1] for i in range(len(bench.calib))],
                               lambda x: {name: x})
        quantized = nncf.quantize(onnx.load(str(bench.f32)), dataset,
                                  subset_size=len(bench.calib), advanced_parameters=advanced)
        onnx.save(quantized, str(path))
    except Exception as err:  # noqa: BLE001 - the exact error goes into the table's notes
        log.warning("NNCF failed: %s", traceback.format_exc())
        return Variant(label, None, time.perf_counter() - start,
                       f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    return Variant(label, path, time.perf_counter() - start)


def lowbit_variant(bench: Bench, key: str, config: LowbitConfig, out: Path,
                   tables: dict[str, tuple[Path, float]]) -> Variant:
    from lowbit.recipe.options import OPTIONS  # deploy's keywords (it takes **options)

    missing = [p for p in config.needs if p not in OPTIONS]
    if missing:
        return Variant(config.label, None, 0.0, f"lowbit.deploy has no {', '.join(missing)} yet")
    if config.method not in tables:
        start = time.perf_counter()
        table_path = out / f"{bench.name}.{config.method}.calib"
        lowbit.calibrate(bench.f32, bench.calib_npz, num=len(bench.calib),
                         method=config.method, output=table_path, progress=False)
        tables[config.method] = (table_path, time.perf_counter() - start)
    table_path, calib_seconds = tables[config.method]
    path = out / f"{bench.name}.lowbit.{key.replace(' ', '_').replace('+', '_')}.int8.onnx"
    start = time.perf_counter()
    result = lowbit.deploy(bench.f32, quantize="INT8", calibration_table=table_path,
                           output=path, **config.deploy)  # type: ignore[arg-type]
    note = "; ".join(n if len(n) <= 110 else n[:107] + "…" for n in result.notes
                     if not n.startswith(("weights: ", "activation ranges")))
    return Variant(config.label, path, calib_seconds + time.perf_counter() - start, note)


# ---------------------------------------------------------------- scoring


def run_model(path: Path, x: np.ndarray, batch: int = 50) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + batch]})[0]
                           for i in range(0, len(x), batch)]).astype(np.float64)


def score(reference: np.ndarray, logits: np.ndarray, labels: np.ndarray | None) -> Scores:
    top5_ref = np.argsort(-reference, axis=1)[:, :5]
    top5 = np.argsort(-logits, axis=1)[:, :5]
    overlap = float(np.mean([len(set(a) & set(b)) / 5
                             for a, b in zip(top5_ref, top5, strict=True)]))
    sqnr = 10 * np.log10((reference ** 2).sum() / max(((reference - logits) ** 2).sum(), 1e-30))
    top1 = None if labels is None else float((logits.argmax(1) == labels).mean())
    return Scores(top1, float((reference.argmax(1) == logits.argmax(1)).mean()), overlap,
                  float(sqnr))


def structure_key(path: Path) -> str:
    """A digest of the graph without its constant values or tensor names: models with
    equal keys run the same kernels on the same shapes (they differ in scales, zero
    points, weights, and in which equal scales one initializer serves)."""
    graph = onnx.load(str(path)).graph
    ids = {init.name: f"c{init.data_type}:{tuple(init.dims)}" for init in graph.initializer}
    ids.update((value.name, f"in{i}") for i, value in enumerate(graph.input))
    parts = []
    for index, node in enumerate(graph.node):
        attrs = sorted((a.name, str(onnx.helper.get_attribute_value(a)))
                       for a in node.attribute if node.op_type != "Constant")
        parts.append((node.domain, node.op_type, tuple(attrs),
                      tuple(ids.get(name, name) for name in node.input)))
        ids.update((name, f"n{index}:{k}") for k, name in enumerate(node.output))
    return hashlib.sha1(repr(parts).encode()).hexdigest()


# ---------------------------------------------------------------- tables


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


@dataclass
class ModelResult:
    bench: Bench
    variants: list[Variant]
    scores: dict[str, Scores]
    speed: dict[str, tuple[float, float]]  # label -> (median ms, speed-up vs F32)
    sizes: dict[str, float]
    kernels: dict[str, str]
    f32_scores: Scores
    graph_group: dict[str, int]  # label -> which distinct INT8 graph (shared speed figure)


def model_table(result: ModelResult) -> str:
    bench = result.bench
    labelled = bench.labels is not None
    header = ["model", *(["top-1 %"] if labelled else []), "agree with F32 %",
              *([] if labelled else ["top-5 overlap %"]), "logit SQNR dB", "size MB",
              f"b{bench.batch} ms", "speed-up", "graph", "int kernels", "make s", "notes"]
    rows = []
    f32 = result.f32_scores
    rows.append(["F32", *([f"{100 * f32.top1:.1f}"] if labelled and f32.top1 is not None
                          else []), "100.0", *([] if labelled else ["100.0"]), "-",
                 f"{result.sizes.get('F32', 0):.2f}", _ms(result.speed.get("F32")), "1.00x",
                 "-", "-", "-", ""])
    for v in result.variants:
        s = result.scores.get(v.label)
        if s is None:
            rows.append([v.label, *(["-"] if labelled else []), "-",
                         *([] if labelled else ["-"]), "-", "-", "-", "-", "-", "-",
                         f"{v.seconds:.1f}", f"failed: {v.note}" if v.path is None else v.note])
            continue
        speed = result.speed.get(v.label)
        rows.append([v.label, *([f"{100 * s.top1:.1f}"] if labelled and s.top1 is not None
                                else []), f"{100 * s.agree:.1f}",
                     *([] if labelled else [f"{100 * s.top5:.1f}"]), f"{s.sqnr:.1f}",
                     f"{result.sizes.get(v.label, 0):.2f}", _ms(speed),
                     f"{speed[1]:.2f}x" if speed else "-",
                     f"g{result.graph_group[v.label]}", result.kernels.get(v.label, "-"),
                     f"{v.seconds:.1f}", v.note])
    return markdown_table(header, rows)


def _ms(speed: tuple[float, float] | None) -> str:
    return f"{speed[0]:.2f}" if speed else "-"


def summary_table(results: Sequence[ModelResult], default_label: str) -> str:
    """Per model: the best ORT/NNCF row against lowbit's default and its best row, by
    agreement with F32 and by logit SQNR."""
    header = ["model", "best ORT / NNCF: agree %, SQNR dB", "lowbit default: agree %, SQNR dB",
              "best lowbit (SQNR)", "default ≥ best other (agree, SQNR)"]
    rows = []
    for r in results:
        others = {k: s for k, s in r.scores.items() if not k.startswith("lowbit")}
        ours = {k: s for k, s in r.scores.items() if k.startswith("lowbit")}
        if not others or not ours:
            continue
        best_other = max(others, key=lambda k: (others[k].agree, others[k].sqnr))
        best_sqnr = max(others.values(), key=lambda s: s.sqnr)
        best_ours = max(ours, key=lambda k: ours[k].sqnr)
        default = ours.get(default_label)
        verdict = "-"
        if default is not None:
            verdict = (f"{'yes' if default.agree >= others[best_other].agree else 'no'}, "
                       f"{'yes' if default.sqnr >= best_sqnr.sqnr else 'no'}")
        rows.append([r.bench.name,
                     (f"{100 * others[best_other].agree:.1f} ({best_other}), "
                     f"{best_sqnr.sqnr:.1f}"),
                     "-" if default is None else
                     f"{100 * default.agree:.1f}, {default.sqnr:.1f}",
                     f"{ours[best_ours].sqnr:.1f} ({best_ours})", verdict])
    return markdown_table(header, rows)


# ---------------------------------------------------------------- driver


def measure(bench: Bench, args: argparse.Namespace, out: Path) -> ModelResult:
    variants: list[Variant] = []
    for method in args.ort:
        variants.append(_guard(lambda m=method: ort_variant(bench, m, True, out),
                               f"ORT {method} reduce_range"))
    if "minmax" in args.ort:
        variants.append(_guard(lambda: ort_variant(bench, "minmax", False, out),
                               "ORT minmax, full-range weights"))
    for method in args.ort_w4:
        variants.append(_guard(lambda m=method: ort_variant(bench, m, False, out, int4=True),
                               f"ORT {method} W4A8"))
    if args.nncf:
        variants.append(nncf_variant(bench, "first_layer_only", out))
        variants.append(nncf_variant(bench, "enable", out))
    configs = lowbit_configs(bench.calib_npz)
    tables: dict[str, tuple[Path, float]] = {}
    for key in args.lowbit:
        variants.append(_guard(lambda k=key: lowbit_variant(bench, k, configs[k], out, tables),
                               configs[key].label))
    for v in variants:
        log.info("%s: %s %.1f s %s", bench.name, v.label, v.seconds, v.note)

    reference = run_model(bench.f32, bench.eval)
    f32_scores = score(reference, reference, bench.labels)
    ok = [v for v in variants if v.path is not None]
    scores = {v.label: score(reference, run_model(v.path, bench.eval), bench.labels)
              for v in ok if v.path}
    kernels = {}
    for v in ok:
        assert v.path is not None
        count = count_kernels(v.path, threads=2)
        kernels[v.label] = f"{count.integer_compute}/{count.integer_compute + count.float_compute}"
    sizes = {"F32": bench.f32.stat().st_size / 1e6}
    sizes.update({v.label: v.path.stat().st_size / 1e6 for v in ok if v.path})
    speed: dict[str, tuple[float, float]] = {}
    groups: dict[str, list[Variant]] = {}
    for v in ok:
        assert v.path is not None
        groups.setdefault(structure_key(v.path), []).append(v)
    if args.speed:
        timed = [members[0] for members in groups.values()]
        comparison = bench_models([bench.f32, *[v.path for v in timed if v.path]],
                                  BenchSettings(batches=(bench.batch,), threads=2,
                                                repeats=args.repeats, warmup=2),
                                  progress=False)
        speed["F32"] = (comparison.results[0].timing(bench.batch).median_ms, 1.0)
        for index, (first, members) in enumerate(zip(timed, groups.values(), strict=True)):
            figure = (comparison.results[index + 1].timing(bench.batch).median_ms,
                      comparison.ratio(bench.batch, index + 1, 0))
            for member in members:
                speed[member.label] = figure
    group_of = {v.label: i + 1 for i, members in enumerate(groups.values()) for v in members}
    return ModelResult(bench, variants, scores, speed, sizes, kernels, f32_scores, group_of)


def _guard(make: Callable[[], Variant], label: str) -> Variant:
    start = time.perf_counter()
    try:
        return make()
    except Exception as err:  # noqa: BLE001 - one failing row must not lose the others
        log.warning("%s failed: %s", label, traceback.format_exc())
        return Variant(label, None, time.perf_counter() - start,
                       f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--lowbit", default=",".join(DEFAULT_LOWBIT),
                        help="lowbit rows, comma-separated (default: all); '' for none")
    parser.add_argument("--ort", default="minmax,entropy,percentile",
                        help="ORT calibrators, comma-separated; '' for none")
    parser.add_argument("--ort-w4", default="",
                        help="ORT calibrators to run again with QInt4 weights (W4A8), "
                             "comma-separated")
    parser.add_argument("--no-nncf", dest="nncf", action="store_false", help="skip NNCF")
    parser.add_argument("--no-speed", dest="speed", action="store_false",
                        help="skip the interleaved timing")
    parser.add_argument("--speed-guard", choices=("guard", "off"), default="guard",
                        help="lowbit deploy's speed guard (off: every lowbit row stays INT8 "
                             "even where this CPU runs it slower than float, to compare "
                             "INT8 accuracy)")
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per model")
    parser.add_argument("--eval", type=int, default=300, help="held-out EfficientNet crops")
    parser.add_argument("--default", default=DEFAULT_LABEL,
                        help="the row the summary calls lowbit's default")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="MNIST model cache (bench/mnist_models.py)")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None,
                        help="append the tables to this Markdown file")
    args = parser.parse_args()
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.lowbit = [m.strip() for m in args.lowbit.split(",") if m.strip()]
    args.ort = [m.strip().lower() for m in args.ort.split(",") if m.strip()]
    args.ort_w4 = [m.strip().lower() for m in args.ort_w4.split(",") if m.strip()]
    for values, allowed, option in ((args.models, MODELS, "--models"),
                                    (args.lowbit, DEFAULT_LOWBIT, "--lowbit"),
                                    (args.ort, tuple(ORT_METHODS), "--ort"),
                                    (args.ort_w4, tuple(ORT_METHODS), "--ort-w4")):
        unknown = [v for v in values if v not in allowed]
        if unknown:
            parser.error(f"{option}: unknown {unknown}; choose from {', '.join(allowed)}")
    return args


def main() -> None:
    args = parse_args()
    os.environ["LOWBIT_SPEED"] = args.speed_guard  # every Recipe's speed default
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("nncf", "onnxruntime"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    began = time.perf_counter()
    out = args.out_dir or Path(tempfile.mkdtemp(prefix="lowbit-issue6-"))
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.models:
        bench = (efficientnet(out, 200, args.eval) if name == "efficientnet_lite0"
                 else mnist(name, out, args.cache_dir))
        log.info("%s ready (%.0f s)", name, time.perf_counter() - began)
        results.append(measure(bench, args, out))
    elapsed = time.perf_counter() - began
    command = "python bench/issue6_accuracy.py " + " ".join(sys.argv[1:])
    parts = [(f"### issue6_accuracy {datetime.date.today()} — ORT {ort.__version__}, 2 threads "
              f"on 2 shared cores, {elapsed / 60:.1f} min\n\n`{command.strip()}`")]
    for r in results:
        what = (f"true top-1 and agreement with F32 on the {len(r.bench.eval)} REPORT digits"
                if r.bench.labels is not None else
                f"agreement with F32 on {len(r.bench.eval)} crops of the 7 REPORT photos "
                "(seed 1)")
        parts.append(f"**{r.bench.name}** — {what}; calibration on {len(r.bench.calib)} "
                     f"samples; speed at batch {r.bench.batch}, interleaved, "
                     f"{args.repeats} repeats:\n\n{model_table(r)}")
    parts.append(f"Summary (lowbit default = `{args.default}`):\n\n"
                 f"{summary_table(results, args.default)}")
    report = "\n\n".join(parts) + "\n"
    print(report)
    if args.markdown is not None:
        with args.markdown.open("a") as handle:
            handle.write("\n" + report)
        print(f"appended to {args.markdown}")


if __name__ == "__main__":
    main()
