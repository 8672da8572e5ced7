"""Graph passes: node counts and speed before/after lowbit's optimisation, at ORT's levels.

    python bench/graph_passes.py                                   # all three models
    python bench/graph_passes.py --models resnet18 --batches 1,16 --repeats 8
    python bench/graph_passes.py --markdown results.md             # append the tables

Models: ResNet-18 and MobileNetV2 (bench/models.py, random weights, BN kept) and
EfficientNet-Lite0 (bench/efficientnet_lite0.py, real weights, exported by torch
*without* that script's own Pad folding, so the export's shape chains are left for
the passes). Each model comes three ways:

* ``raw``: as built or exported;
* ``canonical``: lowbit.passes.canonicalize (what ``lowbit transform --no-optimize``
  writes: constants lifted, Identity/Dropout removed, BN folded);
* ``optimized``: canonicalize, then lowbit.passes.optimize with DEFAULT_PASSES (what
  ``lowbit transform`` writes). Where optimize changes nothing the two are one graph,
  timed once ("canonical = optimized").

F32: each is timed at ORT_DISABLE_ALL, ORT_ENABLE_BASIC and ORT_ENABLE_ALL, all
sessions of a model interleaved in one process (lowbit.analysis.bench, medians), so the
ratios between levels and variants hold on a loaded machine. The same table gives
the node count ORT itself ends with at ENABLE_ALL, and how many of the model's
Conv+Relu/Clip pairs ORT turns into FusedConv (the conv-activation question).

INT8: calibrate (min/max, photo crops) and deploy the canonical and the optimised
model (the speed guard off: it would keep float an INT8 model slower than float),
and time the two INT8 models interleaved at ENABLE_ALL; cosine of each INT8
model's logits to F32's on held-out crops.

Horizontal fusion (``--horizontal``): an Inception-style block (four 1x1 Convs on one
input) and a Q/K/V projection (three MatMuls on one input), each before and after
``fuse_horizontal``, timed interleaved at ENABLE_ALL.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import sys
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lowbit.analysis.bench import BenchComparison, BenchSettings, BenchVariant, bench_models
from lowbit.analysis.kernels import count_kernels
from lowbit.passes import canonicalize, optimize
from lowbit.runtime.ort import ORT_LEVELS
from models import BUILDERS, photo_crops, save
from provenance import cpu

log = logging.getLogger("graph_passes")

LEVELS = ("disable", "basic", "all")
VARIANTS = ("raw", "canonical", "optimized")
MODELS = ("resnet18", "mobilenet_v2", "efficientnet_lite0")


def build_raw(name: str, out: Path) -> Path:
    path = out / f"{name}.raw.onnx"
    if name in BUILDERS:
        return save(BUILDERS[name](), path)
    import torch

    import efficientnet_lite0

    model = efficientnet_lite0.build()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), str(path), dynamo=False,
                          opset_version=17, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    proto = onnx.load(str(path))
    proto.ir_version = min(proto.ir_version, 8)
    onnx.save(proto, str(path))
    return path


def build_variants(name: str, out: Path) -> tuple[dict[str, Path], str, bool]:
    raw = build_raw(name, out)
    canonical, _ = canonicalize(onnx.load(str(raw)))
    canonical_path = out / f"{name}.canonical.onnx"
    onnx.save(canonical, str(canonical_path))
    result = optimize(canonical)
    optimized_path = out / f"{name}.optimized.onnx"
    onnx.save(result.model, str(optimized_path))
    changed = any(step.rewrites for step in result.steps)
    paths = {"raw": raw, "canonical": canonical_path, "optimized": optimized_path}
    return paths, result.summary(), changed


def ort_graph(path: Path, level: str, threads: int) -> onnx.ModelProto:
    """The graph ORT ends with at ``level`` (SessionOptions.optimized_model_filepath)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # ORT warns that NCHWc graphs are machine-specific
    options.graph_optimization_level = ORT_LEVELS[level]
    options.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "optimized.onnx"
        options.optimized_model_filepath = str(target)
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return onnx.load(str(target), load_external_data=False)


def conv_count(model: onnx.ModelProto) -> int:
    return sum(1 for n in model.graph.node if n.op_type == "Conv")


def _fused_activation(node: onnx.NodeProto) -> bool:
    """A FusedConv, or an NCHWc Conv, carrying an activation ORT fused into it."""
    return node.op_type in ("FusedConv", "Conv") and node.domain.startswith("com.microsoft") \
        and any(a.name == "activation" for a in node.attribute)


@dataclass(frozen=True)
class FloatRow:
    model: str
    variant: str
    nodes: int
    ort_nodes: int
    fused_conv: str
    timings: dict[str, tuple[float, float]]  # level -> (b1 median ms, big-batch img/s)


def bench_float(name: str, paths: dict[str, Path], args: argparse.Namespace,
                changed: bool) -> list[FloatRow]:
    # When optimize changed nothing, canonical and optimized are one graph: time it once.
    variants = [v for v in args.variants
                if changed or v != "canonical" or "optimized" not in args.variants]
    entries = [(v, level) for level in args.levels for v in variants]
    settings = BenchSettings(batches=tuple(args.batches), threads=args.threads,
                             warmup=args.warmup, repeats=args.repeats)
    print(f"[{name}] F32: {len(entries)} sessions interleaved ...", flush=True)
    comparison = bench_models([BenchVariant(paths[v], ort_optimization=level)
                               for v, level in entries], settings)
    rows = []
    small, big = args.batches[0], args.batches[-1]
    for variant in variants:
        proto = onnx.load(str(paths[variant]))
        ort_all = ort_graph(paths[variant], "all", args.threads)
        convs = conv_count(proto)
        fused = sum(1 for n in ort_all.graph.node if _fused_activation(n))
        timings = {}
        for level in args.levels:
            result = comparison.results[entries.index((variant, level))]
            timings[level] = (result.timing(small).median_ms, result.timing(big).throughput)
        label = (variant if changed or variant != "optimized" or "canonical" not in args.variants
                 else "canonical = optimized")
        rows.append(FloatRow(name, label, len(proto.graph.node), len(ort_all.graph.node),
                             f"{fused}/{convs}", timings))
    return rows


@dataclass(frozen=True)
class Int8Row:
    model: str
    variant: str
    nodes: int
    b1_ms: float
    big_throughput: float
    kernels: str
    cosine: float


def bench_int8(name: str, paths: dict[str, Path], args: argparse.Namespace,
               calib_npz: Path, held_out: np.ndarray, changed: bool) -> list[Int8Row]:
    import lowbit

    out: Path = args.out_dir
    int8: dict[str, Path] = {}
    variants = ("canonical", "optimized") if changed else ("optimized",)
    for variant in variants:
        table = out / f"{name}.{variant}.calib"
        int8[variant] = out / f"{name}.{variant}.int8.onnx"
        lowbit.calibrate(paths[variant], calib_npz, method="minmax", output=table,
                         progress=False)
        # The speed guard off: this compares INT8 graphs. On, it shipped the canonical
        # Lite0 F32 (its INT8, pads not folded into the convs, ran slower than float).
        lowbit.deploy(paths[variant], quantize="INT8", calibration_table=table,
                      output=int8[variant], speed="off")
    settings = BenchSettings(batches=tuple(args.batches), threads=args.threads,
                             warmup=args.warmup, repeats=args.repeats)
    print(f"[{name}] INT8: {' vs '.join(variants)} interleaved ...", flush=True)
    comparison = bench_models([int8[v] for v in variants], settings)
    reference = _run(paths["raw"], held_out, args.threads)
    rows = []
    small, big = args.batches[0], args.batches[-1]
    for index, variant in enumerate(variants):
        kernels = count_kernels(int8[variant], threads=args.threads)
        result = comparison.results[index]
        rows.append(Int8Row(
            name, variant if changed else "canonical = optimized",
            len(onnx.load(str(int8[variant])).graph.node),
            result.timing(small).median_ms, result.timing(big).throughput,
            f"{kernels.integer_compute}/{kernels.integer_compute + kernels.float_compute}",
            _mean_cosine(_run(int8[variant], held_out, args.threads), reference)))
    return rows


def _run(path: Path, images: np.ndarray, threads: int) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


def _mean_cosine(out: np.ndarray, ref: np.ndarray) -> float:
    a = out.reshape(len(out), -1).astype(np.float64)
    b = ref.reshape(len(ref), -1).astype(np.float64)
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).mean())


def inception_block(batch: str = "N") -> onnx.ModelProto:
    """GoogLeNet's inception(3a) 1x1 convs: 192 channels at 28x28 into 64, 96, 16 and 32."""
    rng = np.random.default_rng(0)
    widths = (64, 96, 16, 32)
    nodes, inits = [], []
    for i, width in enumerate(widths):
        w = (rng.standard_normal((width, 192, 1, 1)) * 0.07).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"),
                  numpy_helper.from_array(np.zeros(width, np.float32), f"b{i}")]
        nodes += [helper.make_node("Conv", ["x", f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}"),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
    nodes.append(helper.make_node("Concat", [f"r{i}" for i in range(4)], ["y"], axis=1))
    graph = helper.make_graph(
        nodes, "inception", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                           [batch, 192, 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, sum(widths), 28, 28])],
        inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def qkv_block(batch: str = "N", seq: int = 128, dim: int = 384) -> onnx.ModelProto:
    """BERT-small-style Q/K/V projections: three 384x384 MatMuls (+bias) on one input."""
    rng = np.random.default_rng(1)
    nodes, inits, outs = [], [], []
    for name in ("q", "k", "v"):
        inits += [numpy_helper.from_array((rng.standard_normal((dim, dim)) * 0.05)
                                          .astype(np.float32), f"w_{name}"),
                  numpy_helper.from_array(np.zeros(dim, np.float32), f"b_{name}")]
        nodes += [helper.make_node("MatMul", ["x", f"w_{name}"], [f"{name}_mm"]),
                  helper.make_node("Add", [f"{name}_mm", f"b_{name}"], [name])]
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, seq, dim]))
    graph = helper.make_graph(nodes, "qkv", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [batch, seq, dim])], outs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def bench_horizontal(args: argparse.Namespace) -> list[tuple[str, str, int, float, float]]:
    rows = []
    settings = BenchSettings(batches=tuple(args.batches), threads=args.threads,
                             warmup=args.warmup, repeats=args.horizontal_repeats)
    for name, model in (("inception 1x1 x4", inception_block()), ("Q/K/V MatMul x3", qkv_block())):
        plain = optimize(model, [])
        fused = optimize(model, ["fuse_horizontal", "eliminate_concat"])
        stem = args.out_dir / name.split()[0].replace("/", "")
        paths = [stem.with_suffix(".plain.onnx"), stem.with_suffix(".fused.onnx")]
        onnx.save(plain.model, str(paths[0]))
        onnx.save(fused.model, str(paths[1]))
        print(f"[horizontal] {name}: {fused.summary()}", flush=True)
        comparison: BenchComparison = bench_models(paths, settings)
        for label, result, proto in zip(("separate", "fused"), comparison.results,
                                        (plain.model, fused.model), strict=True):
            rows.append((name, label, len(proto.graph.node),
                         result.timing(args.batches[0]).median_ms,
                         result.timing(args.batches[-1]).throughput))
    return rows


def markdown(float_rows: list[FloatRow], int8_rows: list[Int8Row],
             horizontal: list[tuple[str, str, int, float, float]], summaries: dict[str, str],
             args: argparse.Namespace) -> str:
    small, big = args.batches[0], args.batches[-1]
    title = (f"### graph_passes {datetime.date.today()} — {cpu()[0]} (2 shared cores), "
             f"ORT {ort.__version__}, {args.threads} threads, {args.repeats} repeats, "
             f"medians of interleaved runs")
    lines = [title, ""]
    for name, summary in summaries.items():
        lines.append(f"* {name}: optimize after canonicalize: {summary}")
    levels = args.levels
    both = "all" in levels and "disable" in levels
    caption = (f"F32 — b{small} median ms / b{big} img/s at each ORT level; in brackets: "
               f"throughput over the model's first row ({args.variants[0]}) at the same level")
    lines += ["", caption, "",
              "| model | variant | nodes | nodes after ORT all | Convs ORT fused an activation "
              "into | " + " | ".join(f"{lvl} b{small} ms | {lvl} b{big} img/s" for lvl in levels)
              + (f" | all / disable (b{big}) |" if both else " |"),
              "|" + "---|" * (5 + 2 * len(levels) + both)]
    first: dict[str, FloatRow] = {}
    for row in float_rows:
        first.setdefault(row.model, row)
    for row in float_rows:
        cells = [row.model, row.variant, str(row.nodes), str(row.ort_nodes), row.fused_conv]
        reference = first[row.model]
        for level in levels:
            ms, tput = row.timings[level]
            ratio = tput / reference.timings[level][1]
            cells += [f"{ms:.2f}", f"{tput:.1f}" + ("" if row is reference
                                                    else f" ({ratio:.2f}x)")]
        if both:
            cells.append(f"{row.timings['all'][1] / row.timings['disable'][1]:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    if int8_rows:
        header = (f"| model | INT8 from | nodes | b{small} ms | b{big} img/s | "
                  "int kernels | cos vs F32 |")
        lines += ["", "INT8 (QDQ, ORT all) — deployed from the canonical vs the optimized F32",
                  "", header, "|---|---|---|---|---|---|---|"]
        for r in int8_rows:
            lines.append(f"| {r.model} | {r.variant} | {r.nodes} | {r.b1_ms:.2f} | "
                         f"{r.big_throughput:.1f} | {r.kernels} | {r.cosine:.4f} |")
    if horizontal:
        lines += ["", f"Horizontal fusion (ORT all, {args.horizontal_repeats} repeats)", "",
                  f"| block | Convs/MatMuls | nodes | b{small} ms | b{big} img/s |",
                  "|---|---|---|---|---|"]
        for block, label, nodes, ms, tput in horizontal:
            lines.append(f"| {block} | {label} | {nodes} | {ms:.2f} | {tput:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batches", default="1,32", help="comma-separated, small then big")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--calib-samples", type=int, default=32)
    parser.add_argument("--levels", default=",".join(LEVELS),
                        help=f"ORT levels to time F32 at (default {','.join(LEVELS)})")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="F32 variants to time, in this order; ratios are over the first "
                        f"(default {','.join(VARIANTS)})")
    parser.add_argument("--skip-int8", action="store_true", help="F32 tables only")
    parser.add_argument("--horizontal", action="store_true",
                        help="also time fuse_horizontal on an Inception block and Q/K/V")
    parser.add_argument("--horizontal-repeats", type=int, default=30,
                        help="timed runs for the (small) horizontal-fusion blocks")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None,
                        help="append the tables to this Markdown file")
    args = parser.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    args.levels = tuple(x.strip() for x in args.levels.split(","))
    args.variants = tuple(x.strip() for x in args.variants.split(","))
    if not set(args.levels) <= set(ORT_LEVELS) or not set(args.variants) <= set(VARIANTS):
        parser.error(f"--levels from {', '.join(ORT_LEVELS)}; --variants from "
                     f"{', '.join(VARIANTS)}")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("lowbit.analysis.bench").setLevel(logging.INFO)  # per-model progress
    if args.out_dir is None:
        args.out_dir = Path(tempfile.mkdtemp(prefix="lowbit-graph-passes-"))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")

    calib_npz = args.out_dir / "calib.npz"
    np.savez(calib_npz, input=photo_crops(args.calib_samples, seed=0))
    held_out = photo_crops(16, seed=12345, split="report")
    float_rows: list[FloatRow] = []
    int8_rows: list[Int8Row] = []
    summaries: dict[str, str] = {}
    for name in names:
        paths, summary, changed = build_variants(name, args.out_dir)
        summaries[name] = summary
        print(f"[{name}] {summary}", flush=True)
        for variant, path in paths.items():
            got = _run(path, held_out[:2], args.threads)
            want = _run(paths["raw"], held_out[:2], args.threads)
            print(f"[{name}] {variant}: {Counter(n.op_type for n in onnx.load(str(path)).graph.node).most_common(6)}"
                  f"; max |Δ logits| vs raw {float(np.abs(got - want).max()):.2e}", flush=True)
        float_rows += bench_float(name, paths, args, changed)
        if not args.skip_int8:
            int8_rows += bench_int8(name, paths, args, calib_npz, held_out, changed)
    horizontal = bench_horizontal(args) if args.horizontal else []
    text = markdown(float_rows, int8_rows, horizontal, summaries, args)
    print()
    print(text)
    if args.markdown is not None:
        with args.markdown.open("a") as handle:
            handle.write(text + "\n")
        print(f"appended to {args.markdown}")


if __name__ == "__main__":
    main()
