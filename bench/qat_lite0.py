"""Quantization-aware training against post-training quantization on EfficientNet-Lite0:
W4A8 and INT8, agreement with float on photo crops, train time, speed.

    python bench/qat_lite0.py --markdown bench/results/qat.md         # both widths, defaults
    python bench/qat_lite0.py --bits 4 --steps 40 --eval 200 --no-adaround
    python bench/qat_lite0.py --bits 4 --reuse --out-dir work   # PTQ models made before
    python bench/qat_lite0.py --bits 4 --evaluate dev --steps 100      # tune on DEV only
    python bench/qat_lite0.py --bits 4 --evaluate dev --holdout-photos 2   # ... on unseen photos

Model: EfficientNet-Lite0 with its real ImageNet weights (bench/efficientnet_lite0.py),
``lowbit.transform``-ed (BN folded). Every figure is measured against that F32 model.

Split (bench/splits.py, by source photo): calibration (200 crops, seed 0), AdaRound's
data (the same file) and the QAT student's training crops (fresh crops each step, seeds
10000 + step) come from the 10 DEV photos; ``--evaluate dev`` scores on 200 other DEV
crops (seed 2) for tuning; the published rows score on ``--eval`` (300) crops of the 7
REPORT photos (seed 1), as bench/issue6_accuracy.py does, with a 95 % bootstrap interval
over the photos (7 photos: the crops are not independent trials). The student trains on
views of the same photos ``--evaluate dev`` scores, so that score says how well it fits
those photos, not how it does on others; ``--holdout-photos N`` keeps the last N DEV
photos out of its training crops and scores ``--evaluate dev`` on them alone (calibration
and AdaRound still see all ten). Each step's crops turn through the training photos, so a
batch smaller than the photo count still sees every photo in turn (before 2026-12-06 a
batch of 8 was cut from the first 8 of the ten DEV photos only). Two tuning knobs were
tried there and are off by default: ``--mixup A`` blends each crop with another of its
batch (λ ~ Beta(A, A)), ``--extra-photos`` adds bundled images in neither split
(microscopy, graphics) to the training photos; ``--temperature`` sets the KL loss's
softmax temperature (1; 3 did no better there, nor did ``--loss mse``).

Rows, per weight width (``--bits``: 4 = W4A8, 8 = INT8):

- ``PTQ default``: ``lowbit deploy`` with its defaults (auto calibration, bias correction
  from the table);
- ``PTQ + AdaRound``: the same with ``--adaround`` on the calibration crops (1000
  iterations per layer), unless ``--no-adaround``;
- ``QAT from ...``: ``lowbit.qat.from_deployed`` on the best PTQ model of that width (the
  AdaRound one where it ran, else the default; ``--qat-start default`` forces the default):
  the same Q/DQ pairs, grids, scales and integers as the student's start;
  ``lowbit.qat.distill`` towards the float model's logits (computed by ONNX Runtime; with
  ``--feature-weight W`` also towards the inner tensors both compute,
  ``lowbit.qat.shared_features``, at weight W) on fresh DEV crops (no labels; ``--steps`` × ``--batch`` samples, Adam with cosine decay),
  exported and passed through ``lowbit deploy`` (which keeps its scales and validates it
  against F32 on 32 REPORT crops). The train time is the distillation's wall time
  (``--threads`` torch threads on this shared machine).

The markdown (``--markdown``) is rewritten after each width, so a run cut short keeps the
widths it finished.

Agreement: top-1 of the model equals F32's top-1; top-5 overlap |top5 ∩ top5_F32| / 5;
logit SQNR against F32. Speed: F32, the PTQ default and the QAT model timed interleaved
at batch ``--speed-batch`` (bench_models, 2 threads): QAT keeps the PTQ graph, so its
kernels are the same (the column shows the measured ratio).
"""

from __future__ import annotations

import argparse
import datetime
import logging
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lowbit
from lowbit.analysis.bench import BenchSettings, bench_models
from lowbit.analysis.kernels import count_kernels
from photos import photo_set, photo_sources
from provenance import cpu, header
from splits import DEV, REPORT, Split, bootstrap_interval

log = logging.getLogger("qat_lite0")


@dataclass(frozen=True)
class Row:
    label: str
    bits: int
    path: Path
    seconds: float  # making it: deploy (+ AdaRound) or the distillation
    note: str = ""


@dataclass(frozen=True)
class Scores:
    agree: np.ndarray  # per crop: 1.0 where top-1 equals F32's
    top5: float
    sqnr: float


def run_model(path: Path, x: np.ndarray, batch: int = 25) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + batch]})[0]
                           for i in range(0, len(x), batch)]).astype(np.float64)


def score(reference: np.ndarray, logits: np.ndarray) -> Scores:
    top5_ref = np.argsort(-reference, axis=1)[:, :5]
    top5 = np.argsort(-logits, axis=1)[:, :5]
    overlap = float(np.mean([len(set(a) & set(b)) / 5
                             for a, b in zip(top5_ref, top5, strict=True)]))
    sqnr = 10 * np.log10((reference ** 2).sum() / max(((reference - logits) ** 2).sum(), 1e-30))
    return Scores((reference.argmax(1) == logits.argmax(1)).astype(np.float64), overlap,
                  float(sqnr))


def training_crops(batch: int, photos: Split, first_seed: int = 10_000,
                   mixup: float = 0.0) -> Iterator[np.ndarray]:
    """Fresh crops of ``photos`` for every step (scale, position, flip drawn from the seed).
    ``mixup`` > 0: each crop blended with another crop of the batch, λ ~ Beta(mixup, mixup)
    (teacher and student see the same blend)."""
    seed, names = first_seed, photos.photos
    while True:
        # photo_set cuts crop i from photo i mod the count: the first photo turns each
        # step, so a batch smaller than the photo count still sees every photo in turn
        turn = (seed - first_seed) * batch % len(names)
        crops = photo_set(batch, seed=seed,
                          split=replace(photos, photos=names[turn:] + names[:turn]))
        if mixup > 0:
            rng = np.random.default_rng(seed)
            lam = rng.beta(mixup, mixup, size=(batch, 1, 1, 1)).astype(np.float32)
            crops = lam * crops + (1 - lam) * crops[rng.permutation(batch)]
        yield crops
        seed += 1


def dev_parts(holdout: int) -> tuple[Split, Split]:
    """The DEV photos QAT trains on and those ``--evaluate dev`` scores: all ten for both,
    or the last ``holdout`` kept out of training and scored alone."""
    if not 0 <= holdout < len(DEV.photos):
        raise SystemExit(f"--holdout-photos must be 0 to {len(DEV.photos) - 1}")
    if not holdout:
        return DEV, DEV
    return (replace(DEV, photos=DEV.photos[:-holdout]),
            replace(DEV, photos=DEV.photos[-holdout:]))


def ptq(f32: Path, table: Path, calib: Path, bits: int, adaround: bool, out: Path,
        reuse: bool = False) -> Row:
    label = "PTQ + AdaRound" if adaround else "PTQ default"
    path = out / f"lite0.w{bits}.{'ada' if adaround else 'default'}.onnx"
    if reuse and path.is_file():
        made = path.with_suffix(".seconds")
        seconds = float(made.read_text()) if made.is_file() else float("nan")
        return Row(label, bits, path, seconds, "made by an earlier run (--reuse)")
    start = time.perf_counter()
    extra = {"adaround": calib} if adaround else {}
    result = lowbit.deploy(f32, calibration_table=table, output=path, weight_bits=bits,
                           speed="off", **extra)
    note = next((n for n in result.notes if n.startswith("adaround")), "")
    seconds = time.perf_counter() - start
    path.with_suffix(".seconds").write_text(f"{seconds:.1f}\n")
    return Row(label, bits, path, seconds, note[:90])


class OrtTeacher:
    """The float model's logits by ONNX Runtime (no gradient needed; faster than torch's
    interpreter of the same graph)."""

    def __init__(self, f32: Path, threads: int, taps: Sequence[str] = ()) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        model = onnx.load(f32)
        for name in taps:  # inner tensors for feature distillation, after the outputs
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
        self.session = ort.InferenceSession(model.SerializeToString(), options,
                                            providers=["CPUExecutionProvider"])

    def __call__(self, feeds: dict) -> list:
        import torch

        return [torch.from_numpy(out) for out in self.session.run(
            None, {name: value.numpy() for name, value in feeds.items()})]


def qat(f32: Path, start: Row, bits: int, args: argparse.Namespace, check: Path,
        out: Path, photos: Split) -> Row:
    """Distil the PTQ model ``start`` (its Q/DQ pairs, grids, scales and integers) towards
    the float model's logits on fresh DEV crops."""
    import lowbit.qat as lq

    student = lq.from_deployed(start.path, f32)
    taps = lq.shared_features(student, onnx.load(f32)) if args.feature_weight else []
    student.tap(taps)
    settings = lq.DistillSettings(steps=args.steps, learning_rate=args.lr,
                                  step_learning_rate=args.step_lr or None, warmup=args.warmup,
                                  scale_learning_rate=args.scale_lr, threads=args.threads,
                                  loss=args.loss, temperature=args.temperature,
                                  log_every=max(args.steps // 10, 1),
                                  feature_weight=args.feature_weight)
    report = lq.distill(student, OrtTeacher(f32, args.threads, taps),
                        training_crops(args.batch, photos, mixup=args.mixup), settings)
    student.tap([])
    log.info("W%dA8 %s", bits, report.summary())
    exported = lq.export(student, out / f"lite0.w{bits}.qat.raw.onnx", report)
    path = out / f"lite0.w{bits}.qat.onnx"
    kept = lowbit.deploy(exported, output=path, float_model=f32, test_input=check)
    history = ", ".join(f"{loss:.3g}" for _, loss in report.history[::max(
        len(report.history) // 4, 1)])
    return Row(f"QAT from {start.label}", bits, path, report.seconds,
               f"{report.steps} steps × {args.batch} crops; loss {history}; deploy "
               f"{'kept its scales' if kept.steps == ('keep_scales',) else kept.steps}, "
               f"validation {'passed' if kept.passed else 'FAILED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", default="4,8", help="weight widths to run (4, 8 or 4,8)")
    parser.add_argument("--steps", type=int, default=300, help="QAT steps (default 300)")
    parser.add_argument("--batch", type=int, default=8, help="QAT crops per step (default 8)")
    parser.add_argument("--step-lr", type=float, default=0.003,
                        help="QAT learning rate of each weight and bias as a fraction of its "
                        "quantization step (Adam; default 0.003; 0: use --lr)")
    parser.add_argument("--warmup", type=int, default=8,
                        help="QAT steps of linear learning-rate warm-up (default 8)")
    parser.add_argument("--lr", type=float, default=1e-4,
                        help="absolute QAT learning rate of weights and biases, with "
                        "--step-lr 0 (Adam; default 1e-4)")
    parser.add_argument("--scale-lr", type=float, default=1e-3,
                        help="QAT learning rate of the log-scales (default 1e-3)")
    parser.add_argument("--loss", default="auto", help="distillation loss: auto, kl, mse")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="softmax temperature of the KL loss (default 1)")
    parser.add_argument("--feature-weight", type=float, default=0.0,
                        help="also match the inner tensors student and F32 share "
                        "(lowbit.qat.shared_features), at this weight (default 0: logits only)")
    parser.add_argument("--mixup", type=float, default=0.0,
                        help="blend each QAT crop with another of its batch, λ ~ Beta(A, A) "
                        "(default 0: off)")
    parser.add_argument("--extra-photos", default="",
                        help="comma-separated skimage.data images in neither split added to "
                        "QAT's unlabeled training photos (default none)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for QAT (default 1: on a loaded 2-core machine "
                        "torch's spinning threads slow each other down)")
    parser.add_argument("--eval", type=int, default=300, help="evaluation crops (default 300)")
    parser.add_argument("--evaluate", choices=("report", "dev"), default="report",
                        help="score on REPORT crops (published) or other DEV crops (tuning)")
    parser.add_argument("--holdout-photos", type=int, default=0,
                        help="keep the last N DEV photos out of QAT's training crops and score "
                        "--evaluate dev on them alone (default 0: train and tune on all ten)")
    parser.add_argument("--no-adaround", action="store_true", help="skip the AdaRound rows")
    parser.add_argument("--adaround-bits", default="4,8",
                        help="the widths that get an AdaRound row (default 4,8)")
    parser.add_argument("--qat-start", choices=("best", "default"), default="best",
                        help="the PTQ model QAT starts from: AdaRound's where it ran "
                        "(best) or the default")
    parser.add_argument("--no-speed", action="store_true", help="skip the timing")
    parser.add_argument("--speed-batch", type=int, default=8)
    parser.add_argument("--out-dir", type=Path, help="keep the models here")
    parser.add_argument("--reuse", action="store_true",
                        help="take PTQ models already in --out-dir (from an earlier run with the "
                        "same settings) instead of making them again; their make time is read "
                        "from <model>.seconds where that exists")
    parser.add_argument("--markdown", type=Path,
                        help="write the provenance header and the table to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from efficientnet_lite0 import export_onnx

    with tempfile.TemporaryDirectory(prefix="qat-lite0-") as tmp:
        out = args.out_dir or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        f32, calib, table = out / "lite0.f32.onnx", out / "calib.npz", out / "lite0.calib"
        if not (args.reuse and f32.is_file() and table.is_file()):
            f32 = lowbit.transform(export_onnx(out / "lite0.onnx"), f32).path
            np.savez(calib, input=photo_set(200, seed=0, split="dev"))
            lowbit.calibrate(f32, calib, output=table, progress=False)
        check = out / "check.npz"
        np.savez(check, input=photo_set(32, seed=7, split="report"))
        train_photos, tune_photos = dev_parts(args.holdout_photos)
        extra = tuple(name for name in args.extra_photos.split(",") if name)
        train_photos = replace(train_photos, photos=train_photos.photos + extra)
        scored = REPORT if args.evaluate == "report" else tune_photos
        seed, count = (1, args.eval) if args.evaluate == "report" else (2, min(args.eval, 200))
        crops = photo_set(count, seed=seed, split=scored)
        reference = run_model(f32, crops)
        ada_bits = set() if args.no_adaround else {int(b) for b in args.adaround_bits.split(",")}
        rows: list[Row] = []
        scores: dict[Path, Scores] = {}
        for bits in (int(b) for b in args.bits.split(",")):
            start = ptq(f32, table, calib, bits, False, out, args.reuse)
            rows.append(start)
            if bits in ada_bits:
                rows.append(ptq(f32, table, calib, bits, True, out, args.reuse))
                if args.qat_start == "best":
                    start = rows[-1]
            rows.append(qat(f32, start, bits, args, check, out, train_photos))
            for row in rows:
                scores.setdefault(row.path, score(reference, run_model(row.path, crops)))
            text = table_text(rows, scores, {}, f32, args, count, scored)
            if args.markdown:  # what is finished so far, in case the run is cut short
                write_markdown(args.markdown, text)
        speed = {} if args.no_speed else timings(f32, rows, args.speed_batch)
        text = table_text(rows, scores, speed, f32, args, count, scored)
        print(text)
        if args.markdown:
            write_markdown(args.markdown, text)


def write_markdown(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header() + "\n\n" + text + "\n", encoding="utf-8")


def timings(f32: Path, rows: list[Row], batch: int) -> dict[Path, float]:
    """Median ms at ``batch`` of F32 and every row, interleaved."""
    paths = [f32, *(row.path for row in rows)]
    comparison = bench_models(paths, BenchSettings(batches=(batch,), threads=2, repeats=30),
                              progress=False)
    return {path: result.timing(batch).median_ms
            for path, result in zip(paths, comparison.results, strict=True)}


def table_text(rows: list[Row], scores: dict[Path, Scores], speed: dict[Path, float],
               f32: Path, args: argparse.Namespace, count: int, scored: Split) -> str:
    day = datetime.date.today().isoformat()
    split = ("REPORT" if args.evaluate == "report" else "DEV (tuning)" if scored is DEV
             else f"DEV (tuning) photos kept out of training ({', '.join(scored.photos)})")
    lines = [(f"### qat_lite0 {day} — {cpu()[0]}, ORT {ort.__version__}, "
              f"{count} {split} crops; QAT: {args.steps} steps × {args.batch} DEV crops, "
              f"{f'feature weight {args.feature_weight:g}, ' if args.feature_weight else ''}"
              f"{f'lr {args.step_lr:g} of a step' if args.step_lr else f'lr {args.lr:g}'} / scales "
              f"{args.scale_lr:g}, warm-up {args.warmup} steps, loss {args.loss}, torch threads "
              f"{args.threads}"), "",
             ("| weights | method | agree with F32 % [95 % CI over photos] | top-5 overlap % | "
              "logit SQNR dB | int kernels | "
              f"b{args.speed_batch} ms | vs F32 | make s | notes |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    base = speed.get(f32)
    sources = photo_sources(count, scored)
    for row in rows:
        s = scores[row.path]
        interval = bootstrap_interval(s.agree, sources=sources)
        kernels = count_kernels(row.path)
        ms = speed.get(row.path)
        timing = f"{ms:.1f} | {base / ms:.2f}x" if ms and base else "- | -"
        lines.append(f"| {'W4A8' if row.bits == 4 else 'INT8'} | {row.label} | "
                     f"{100 * interval.value:.1f} [{100 * interval.low:.1f}, "
                     f"{100 * interval.high:.1f}] | {100 * s.top5:.1f} | {s.sqnr:.1f} | "
                     f"{kernels.integer_compute}/{kernels.integer_compute + kernels.float_compute}"
                     f" | {timing} | {row.seconds:.0f} | {row.note} |")
    if base:
        lines.append(f"\nF32: b{args.speed_batch} {base:.1f} ms.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
