"""Baseline on the dense-output stand-ins: F32 vs lowbit's default vs ORT quantize_static vs NNCF.

    python bench/dense_baseline.py --json dense.json                      # every model
    python bench/dense_baseline.py --markdown bench/results/dense.md     # the section
    python bench/dense_baseline.py --models pnet,text_direction --num 64 --json dense.json
    python bench/dense_baseline.py --models mobilenet_v2_dyn --no-speed    # memory only

The models are bench/dense_models.py's (MTCNN P/R/O-Net with real weights, an FPN
edge-map decoder on EfficientNet-Lite0's real backbone, a small-conv text-direction
classifier, MobileNetV2 with dynamic H x W fed 640x640); the data bench/dense_data.py's
real photos. Calibration uses ``--num`` DEV samples (seed 0; per-model defaults below);
every figure of fidelity is taken on ``--report`` REPORT samples (seed 1), disjoint
source photos.

Rows, all from the same exported F32 file (bench/dense_quantizers.py says exactly how
each is called): ``lowbit default`` (``lowbit.calibrate`` then ``lowbit.deploy(...,
quantize="INT8")``, nothing else), ``ORT MinMax`` (``quantize_static`` QDQ, per-channel,
``reduce_range`` only where the CPU lacks VNNI), ``NNCF`` (``nncf.quantize`` defaults) and
``NNCF mixed`` (preset MIXED).

Measured per row:

- fidelity on REPORT, per output: mean per-sample cosine (over the whole set where a
  sample is one number) and SQNR (dB, over the whole set) against F32; for a 2-way softmax only the positive class (channel 1: face,
  rotated) is scored, since channel 0 is 1 minus it and its near-1 values flatter the
  cosine. Probability maps (P-Net's face map, the edge map): IoU of the maps thresholded
  at 0.5, pooled over all REPORT pixels. Classifiers (R-Net, O-Net, text direction):
  top-1 agreement with F32, and the true accuracy where labels exist;
- speed vs F32: ORT CPU sessions, 2 intra-op threads, workers stopped when a run
  returns, all rows of a model timed in turns in one process
  (lowbit.analysis.bench.time_interleaved: a few untimed runs after each switch of
  session, then a block of timed ones) on REPORT inputs, median of ``--repeats`` runs, at batch 1 and 8 (32 for the 24/48-pixel and
  48x192 inputs); kernels: conv/gemm ORT runs as integer kernels / all, and the Q/DQ
  nodes left in ORT's optimised graph (each one a float pass over a tensor);
- quantize wall time and peak memory: each quantizer runs alone in a fresh Python
  subprocess (bench/dense_quantizers.py), streaming the calibration npz one sample at
  a time, timed from after its imports to the written model; memory is the child's own
  peak RSS (VmHWM, which starts afresh at exec; ``ru_maxrss`` of RUSAGE_CHILDREN would be
  the largest child so far, not this one) and its RSS before the work (after the
  imports: NNCF's pull in torch). The F32 row: plain inference over the same samples,
  the same way. lowbit's notes split its time into calibrate and deploy.

Each model takes about 1-6 minutes on 2 cores at the default sample counts.

To measure one fixed lowbit while src/ is being edited, run a snapshot of a commit
(the header then names where lowbit came from; the subprocesses inherit PYTHONPATH):

    git archive <commit> src | tar -x -C /tmp/lowbit-snapshot
    PYTHONPATH=/tmp/lowbit-snapshot/src python bench/dense_baseline.py --json dense.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from dense_quantizers import THREADS, cpu_flags, cpu_has_vnni, cpu_model

log = logging.getLogger("dense_baseline")

QUANTIZERS = ("lowbit", "lowbit_target", "ort", "nncf", "nncf_mixed")
LABELS = {"f32": "F32", "lowbit": "lowbit default", "lowbit_target": "lowbit --target auto",
          "ort": "ORT MinMax", "nncf": "NNCF", "nncf_mixed": "NNCF mixed"}
DEFAULT_NUM = {"pnet": 128, "rnet": 200, "onet": 200, "lite0_edges": 100,
               "text_direction": 200, "mobilenet_v2_dyn": 32}
DEFAULT_REPORT = {"mobilenet_v2_dyn": 16, "lite0_edges": 100, "pnet": 64}


# ---------------------------------------------------------------- the parent side


@dataclass
class Row:
    """One quantizer's (or F32's) figures on one model."""

    key: str
    label: str
    path: str | None = None
    seconds: float | None = None
    peak_rss_mb: float | None = None
    start_rss_mb: float | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    outputs: dict[str, dict[str, float]] = field(default_factory=dict)  # output -> metrics
    iou: float | None = None
    agree: float | None = None
    accuracy: float | None = None
    speed: dict[str, dict[str, float]] = field(default_factory=dict)  # "b1" -> ms, speed_up
    kernels: str = "-"
    qdq_left: int | None = None


def quantize_in_child(key: str, model: Path, data: Path, out: Path, timeout: float) -> Row:
    row = Row(key, LABELS[key])
    spec = {"what": key, "model": str(model), "data": str(data), "out": str(out)}
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
    try:
        done = subprocess.run([sys.executable, str(HERE / "dense_quantizers.py"),
                               json.dumps(spec)], capture_output=True, text=True,
                              timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        row.error = f"timed out after {timeout:.0f} s"
        return row
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = [line for line in done.stderr.strip().splitlines() if line.strip()]
        row.error = (f"exit {done.returncode}: {tail[-1] if tail else '(no message)'}")
        log.warning("%s failed on %s:\n%s", key, model.name, done.stderr[-4000:])
        return row
    result = json.loads(lines[-1])
    row.seconds, row.peak_rss_mb = result["seconds"], result["peak_rss_mb"]
    row.start_rss_mb, row.notes = result["start_rss_mb"], result["notes"]
    row.path = str(out) if key != "f32" else str(model)
    return row


def run_outputs(path: Path, x: np.ndarray, batch: int) -> list[np.ndarray]:
    from lowbit.runtime.ort import create_session

    session = create_session(path, threads=THREADS)
    parts = [session.run(None, {"input": x[i:i + batch]}) for i in range(0, len(x), batch)]
    return [np.concatenate(chunks).astype(np.float64) for chunks in zip(*parts, strict=True)]


def cosine(reference: np.ndarray, value: np.ndarray) -> float:
    """Mean per-sample cosine; over the whole set where a sample is one number (a
    classifier's positive-class probability), whose own cosine is always 1."""
    a = reference.reshape(len(reference), -1)
    b = value.reshape(len(value), -1)
    if a.shape[1] == 1:
        a, b = a.reshape(1, -1), b.reshape(1, -1)
    dots = (a * b).sum(1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(np.where(norms > 0, dots / np.maximum(norms, 1e-30), 1.0)))


def sqnr_db(reference: np.ndarray, value: np.ndarray) -> float:
    noise = float(((reference - value) ** 2).sum())
    return float(10 * np.log10((reference ** 2).sum() / max(noise, 1e-30)))


def pooled_iou(reference: np.ndarray, value: np.ndarray, threshold: float = 0.5) -> float:
    a, b = reference > threshold, value > threshold
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def score_row(row: Row, stand_in: Any, reference: list[np.ndarray], values: list[np.ndarray],
              labels: np.ndarray | None) -> None:
    for name, ref, val in zip(stand_in.outputs, reference, values, strict=True):
        scored = name in stand_in.probabilities or name in stand_in.classes
        if scored and ref.shape[1] == 2:
            ref, val = ref[:, 1:], val[:, 1:]  # the positive class of a 2-way softmax
        row.outputs[name] = {"cosine": cosine(ref, val), "sqnr_db": sqnr_db(ref, val)}
        if name in stand_in.probabilities:
            row.iou = pooled_iou(ref, val)
        if name in stand_in.classes:
            row.agree = float((ref.reshape(len(ref), -1).argmax(1) == val.reshape(
                len(val), -1).argmax(1)).mean()) if ref.shape[1] > 1 else float(
                ((ref[:, 0] > 0.5) == (val[:, 0] > 0.5)).mean())
            if labels is not None:
                row.accuracy = accuracy(val, labels)


def accuracy(positive: np.ndarray, labels: np.ndarray) -> float:
    """Share of samples whose positive-class probability is on the side of 0.5 the label
    says (label 1: positive)."""
    return float(((positive.reshape(len(positive), -1)[:, -1] > 0.5).astype(int)
                  == labels).mean())


def graph_counts(path: Path) -> tuple[str, int]:
    """('integer conv-gemm / all conv-gemm', Q/DQ nodes) in the graph ORT optimised."""
    import onnx

    from lowbit.analysis.kernels import count_nodes
    from lowbit.runtime.ort import create_session

    with tempfile.TemporaryDirectory(prefix="dense-kernels-") as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        create_session(path, threads=THREADS, optimized_model_path=optimized)
        graph = onnx.load(str(optimized), load_external_data=False).graph
    counts = count_nodes(graph)
    total = counts.integer_compute + counts.float_compute
    qdq = sum(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in graph.node)
    return f"{counts.integer_compute}/{total}", qdq


def time_rows(rows: list[Row], x: np.ndarray, batches: tuple[int, ...], repeats: int,
              min_seconds: float) -> None:
    """Median ms and speed-up vs F32 (rows[0]) per batch, all rows interleaved; the 10th
    percentile, the minimum and the load average go to the JSON, as a gauge of how
    busy the machine was (on a shared 2-core machine, sub-millisecond runs vary a lot)."""
    from lowbit.analysis.bench import time_interleaved
    from lowbit.runtime.ort import create_session

    timed = [r for r in rows if r.path]
    sessions = [create_session(Path(r.path), threads=THREADS) for r in timed if r.path]
    for batch in batches:
        reps = -(-batch // len(x))
        feed = {"input": np.ascontiguousarray(np.concatenate([x] * reps)[:batch])}
        runners = [lambda s=s, f=feed: s.run(None, f) for s in sessions]
        samples = time_interleaved(runners, warmup=3, repeats=repeats, min_seconds=min_seconds)
        ms = [1000 * np.asarray(times) for times in samples]
        medians = [float(np.median(t)) for t in ms]
        for row, times, median in zip(timed, ms, medians, strict=True):
            row.speed[f"b{batch}"] = {
                "ms": median, "speed_up": medians[0] / median, "runs": len(times),
                "p10_ms": float(np.percentile(times, 10)), "min_ms": float(times.min()),
                "load_average_1min": os.getloadavg()[0]}


def measure_model(name: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from dense_data import DEV, REPORT
    from dense_models import STAND_INS, export

    stand_in = STAND_INS[name]
    began = time.perf_counter()
    model = export(name, args.model_dir or out, args.rebuild)
    num = args.num or DEFAULT_NUM[name]
    report_n = args.report or DEFAULT_REPORT.get(name, 200)
    calib = stand_in.samples(DEV, num, 0)
    report = stand_in.samples(REPORT, report_n, 1)
    data = out / f"{name}.calib.npz"
    np.savez(data, input=calib.x)
    log.info("%s: model and data ready (%.0f s)", name, time.perf_counter() - began)

    rows = [quantize_in_child("f32", model, data, model, args.timeout)]
    for key in args.quantizers:
        rows.append(quantize_in_child(key, model, data, out / f"{name}.{key}.onnx",
                                      args.timeout))
        log.info("%s: %s %s", name, key, rows[-1].error or f"{rows[-1].seconds:.1f} s")
    rows = [r for r in rows if r.error is None] + [r for r in rows if r.error is not None]
    eval_batch = 8 if report.x[0].size > 500_000 else 64
    reference = run_outputs(model, report.x, eval_batch)
    for row in rows:
        if row.path and row.key != "f32":
            score_row(row, stand_in, reference, run_outputs(Path(row.path), report.x,
                                                            eval_batch), report.labels)
            row.kernels, row.qdq_left = graph_counts(Path(row.path))
    if report.labels is not None and stand_in.classes:
        rows[0].accuracy = accuracy(reference[stand_in.outputs.index(stand_in.classes[0])],
                                    report.labels)
    if args.speed:
        time_rows(rows, report.x, stand_in.speed_batches, args.repeats, args.min_seconds)
    log.info("%s: done (%.0f s)", name, time.perf_counter() - began)
    return {"model": name, "input": list(report.x.shape[1:]), "calibration_samples": num,
            "report_samples": report_n, "outputs": list(stand_in.outputs),
            "batches": list(stand_in.speed_batches) if args.speed else [],
            "seconds": time.perf_counter() - began, "rows": [asdict(r) for r in rows]}


# ---------------------------------------------------------------- tables


def model_table(result: dict[str, Any]) -> str:
    rows = result["rows"]
    outputs = result["outputs"]
    ort_seconds = next((r["seconds"] for r in rows if r["key"] == "ort" and r["seconds"]),
                       None)
    f32 = rows[0]
    has_iou = any(r["iou"] is not None for r in rows)
    has_agree = any(r["agree"] is not None for r in rows)
    has_accuracy = f32["accuracy"] is not None
    header = ["row", *[f"{o} cos / SQNR dB" for o in outputs],
              *(["IoU@0.5"] if has_iou else []), *(["top-1 agree %"] if has_agree else []),
              *(["accuracy %"] if has_accuracy else []),
              *[f"b{b} ms (x F32)" for b in result["batches"]],
              "int conv / all", "Q/DQ left", "quantize s", "x ORT s", "peak RSS MB",
              "RSS before MB", "notes"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["label"]]
        for o in outputs:
            metrics = r["outputs"].get(o)
            cells.append(f"{metrics['cosine']:.5f} / {metrics['sqnr_db']:.1f}" if metrics
                         else ("-" if r["key"] == "f32" and not r["error"] else "failed"))
        if has_iou:
            cells.append("-" if r["iou"] is None else f"{r['iou']:.4f}")
        if has_agree:
            cells.append("-" if r["agree"] is None else f"{100 * r['agree']:.1f}")
        if has_accuracy:
            cells.append("-" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}")
        for b in result["batches"]:
            s = r["speed"].get(f"b{b}")
            cells.append(f"{s['ms']:.2f} ({s['speed_up']:.2f}x)" if s else "-")
        cells += [r["kernels"], "-" if r["qdq_left"] is None else str(r["qdq_left"]),
                  "-" if r["seconds"] is None else f"{r['seconds']:.1f}",
                  "-" if r["seconds"] is None or not ort_seconds or r["key"] == "f32"
                  else f"{r['seconds'] / ort_seconds:.2f}",
                  "-" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.0f}",
                  "-" if r["start_rss_mb"] is None else f"{r['start_rss_mb']:.0f}",
                  _notes(r)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _notes(row: dict[str, Any]) -> str:
    if row["error"]:
        return f"failed: {row['error']}"
    if row["key"] == "f32":
        return "F32 inference over the calibration samples (time, RSS)"
    # lowbit's own notes (bias correction, weight grids ...) are in the JSON.
    return "; ".join(n for n in row["notes"] if n.startswith(("calibrate ", "reduce_range")))


def header_text(args: argparse.Namespace) -> str:
    import onnxruntime as ort

    flags = cpu_flags()
    shown = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16")
             if f in flags]
    vnni = "has VNNI: ORT rows use full-range weights" if cpu_has_vnni() else \
        "no VNNI: ORT rows use reduce_range"
    versions = [f"ORT {ort.__version__}"]
    for package in ("lowbit", "nncf", "torch"):
        try:
            versions.append(f"{package} {__import__(package).__version__}")
        except (ImportError, AttributeError):
            versions.append(f"{package} ?")
    return (f"### dense_baseline {datetime.date.today()} — {cpu_model()}, {os.cpu_count()} "
            f"cores, flags {', '.join(shown) or 'none of avx2/avx512/vnni/amx'} ({vnni}); "
            f"{', '.join(versions)} ({source_state()}); {THREADS} threads; median of "
            f"≥ {args.repeats} runs in interleaved blocks (≥ {args.min_seconds:g} s per row)")


def source_state() -> str:
    """The commit lowbit was measured at, and whether src/ differed from it; or, when
    lowbit was imported from elsewhere (a snapshot on PYTHONPATH), from where."""
    import lowbit

    root = HERE.parent
    location = Path(lowbit.__file__).resolve().parent
    if not location.is_relative_to(root / "src"):
        return f"lowbit from {location}"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "commit unknown"
    return f"commit {commit}{', src/ modified' if dirty else ''}"


def parse_args() -> argparse.Namespace:
    from dense_models import STAND_INS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(STAND_INS),
                        help=f"comma-separated, from {', '.join(STAND_INS)}")
    parser.add_argument("--quantizers", default=",".join(QUANTIZERS),
                        help=f"comma-separated, from {', '.join(QUANTIZERS)}")
    parser.add_argument("--num", type=int, default=None,
                        help=f"calibration samples (default per model: {DEFAULT_NUM})")
    parser.add_argument("--report", type=int, default=None,
                        help="REPORT samples scored (default 200; "
                             f"{DEFAULT_REPORT})")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per batch size")
    parser.add_argument("--min-seconds", type=float, default=1.0,
                        help="repeat past --repeats until each row has run this long")
    parser.add_argument("--no-speed", dest="speed", action="store_false")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per quantizer")
    parser.add_argument("--out-dir", type=Path, default=None, help="quantized models, data")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="where the F32 stand-ins are built and kept (default --out-dir)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the F32 models")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="write the section here (provenance header first; overwrites)")
    args = parser.parse_args()
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.quantizers = [q.strip() for q in args.quantizers.split(",") if q.strip()]
    for values, allowed, option in ((args.models, tuple(STAND_INS), "--models"),
                                    (args.quantizers, QUANTIZERS, "--quantizers")):
        unknown = [v for v in values if v not in allowed]
        if unknown:
            parser.error(f"{option}: unknown {unknown}; choose from {', '.join(allowed)}")
    return args


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = args.out_dir or Path(tempfile.mkdtemp(prefix="lowbit-dense-"))
    out.mkdir(parents=True, exist_ok=True)
    results = [measure_model(name, args, out) for name in args.models]
    command = "python bench/dense_baseline.py " + " ".join(sys.argv[1:])
    shared = ("The machine was shared with other jobs while this ran (each model's line "
              "gives the load average while timing): speeds are ratios of interleaved runs, "
              "quantize times each a single run in a fresh process, so read them as ratios, "
              "not absolute figures.")
    parts = [f"{header_text(args)}\n\n`{command.strip()}`\n\n{shared}"]
    for r in results:
        shape = "x".join(str(d) for d in r["input"])
        loads = [s["load_average_1min"] for row in r["rows"] for s in row["speed"].values()]
        load = f"; load average {min(loads):.1f}-{max(loads):.1f} while timing" if loads else ""
        parts.append(f"**{r['model']}** — input {shape}; calibration {r['calibration_samples']} "
                     f"DEV samples, scored on {r['report_samples']} REPORT samples; "
                     f"{r['seconds'] / 60:.1f} min{load}\n\n{model_table(r)}")
    report = "\n\n".join(parts) + "\n"
    print(report)
    if args.markdown is not None:
        from provenance import header

        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(f"{header()}\n\n{report}", encoding="utf-8")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"header": header_text(args), "command": command,
                                         "cpu": cpu_model(), "cpu_flags": sorted(
                                             f for f in cpu_flags()
                                             if "avx" in f or "amx" in f or "vnni" in f),
                                         "models": results}, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
