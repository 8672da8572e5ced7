"""Quantization-aware training on all-MiniLM-L6-v2: W4A8 and INT8 PTQ against QAT on the
outputs alone and QAT with feature distillation, by sentence-embedding cosine to F32.

    python bench/qat_minilm.py --markdown bench/results/qat_minilm.md
    python bench/qat_minilm.py --bits 4 --steps 40 --score-on tuning     # tune on DEV only

The encoder is bench/minilm.py's export (sequence length 64, dynamic batch), cleaned by
``lowbit.transform``; PTQ is ``lowbit calibrate`` on the 100 DEV calibration sentences
then ``lowbit deploy`` with its defaults (SmoothQuant α 0.8 from the table; speed guard
off, so the student is deploy's graph) at ``--weight-bits`` 4 or 8. The QAT rows start
from that model (``lowbit.qat.from_deployed``) and distil towards F32's token outputs
(relative MSE over the real tokens: ``token_mask="attention_mask"``, unless ``--no-mask``)
with ``lowbit.qat.distill``: ``--steps`` steps of ``--batch`` sentences,
each weight's learning rate ``--step-lr`` of its quantization step, 8 warm-up steps, two
torch threads; ``QAT + features`` also matches the inner float tensors both compute
(``lowbit.qat.shared_features``) at ``DistillSettings``' default weight.

Split (bench/splits.py, by sentence): with ``--score-on report`` (the default, every
published figure) QAT trains on the 200 DEV sentences (calibration and tuning halves) and
is scored on the 200 REPORT sentences; with ``--score-on tuning`` it trains on the 100
calibration sentences and is scored on the 100 tuning ones (how the steps were chosen).

Measured: the mean-pooled, L2-normalised sentence embedding's cosine to F32's (mean with
its 95 % bootstrap interval over the sentences, and the worst sentence); how many MatMuls
ONNX Runtime runs as integer kernels (QAT keeps the PTQ graph, so its kernels and speed);
the distillation's wall time.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lowbit
from lowbit.analysis.kernels import count_kernels
from minilm import (
    cosines,
    embed,
    export_minilm,
    split_sentences,
    tokenize,
    tuning_sentences,
    write_dataset,
)
from provenance import cpu, header
from splits import bootstrap_interval

log = logging.getLogger("qat_minilm")


@dataclass(frozen=True)
class Row:
    bits: int
    method: str
    path: Path
    seconds: float | None = None
    note: str = ""


def distilled(f32: Path, ptq: Path, train: dict[str, np.ndarray], features: bool,
              args: argparse.Namespace, out: Path) -> tuple[Path, float, str]:
    import lowbit.qat as lq

    student, teacher = lq.from_deployed(ptq, f32), lq.teacher_of(f32)
    taps = lq.shared_features(student, teacher) if features else []
    student.tap(taps)
    teacher.tap(taps)
    settings = lq.DistillSettings(steps=args.steps, step_learning_rate=args.step_lr,
                                  warmup=8, threads=2, loss="mse",
                                  token_mask=None if args.no_mask else "attention_mask",
                                  log_every=max(args.steps // 5, 1))
    report = lq.distill(student, teacher, lq.batches(train, args.batch), settings)
    student.tap([])
    path = lq.export(student, out / f"{ptq.stem}.{'feat' if features else 'out'}.onnx",
                     report)
    log.info("%s %s: %s", ptq.stem, "features" if features else "outputs", report.summary())
    note = f"{len(taps)} inner tensors, weight {settings.feature_weight:g}; " if taps else ""
    return path, report.seconds, f"{note}loss {report.first_loss:.3g} → {report.last_loss:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", default="4,8", help="weight widths (4, 8 or 4,8)")
    parser.add_argument("--steps", type=int, default=150, help="QAT steps (default 150)")
    parser.add_argument("--batch", type=int, default=16, help="sentences per step (default 16)")
    parser.add_argument("--step-lr", type=float, default=0.003,
                        help="learning rate as a fraction of each weight's step (0.003)")
    parser.add_argument("--score-on", choices=("report", "tuning"), default="report")
    parser.add_argument("--no-mask", action="store_true",
                        help="count the padding tokens in the loss too (default: "
                        "DistillSettings.token_mask='attention_mask')")
    parser.add_argument("--markdown", type=Path, help="write the header and table here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    calib_texts, report_texts = split_sentences()
    tune_texts = tuning_sentences()
    train_texts = calib_texts + tune_texts if args.score_on == "report" else calib_texts
    scored = report_texts if args.score_on == "report" else tune_texts
    with tempfile.TemporaryDirectory(prefix="qat-minilm-") as tmp:
        out = Path(tmp)
        f32 = lowbit.transform(export_minilm(out / "minilm.onnx"), out / "minilm.f32.onnx").path
        inputs = [i.name for i in onnx.load(f32, load_external_data=False).graph.input]
        calib = write_dataset(out / "calib.npz", calib_texts)
        table = out / "minilm.calib"
        lowbit.calibrate(f32, calib, output=table, progress=False)
        train = {k: v for k, v in tokenize(train_texts).items() if k in inputs}
        encoded = tokenize(scored)
        reference = embed(f32, encoded)
        rows: list[Row] = []
        for bits in (int(b) for b in args.bits.split(",")):
            ptq = lowbit.deploy(f32, calibration_table=table, output=out / f"w{bits}.onnx",
                                weight_bits=bits, speed="off").path
            rows.append(Row(bits, "PTQ default", ptq))
            for features in (False, True):
                path, seconds, note = distilled(f32, ptq, train, features, args, out)
                rows.append(Row(bits, "QAT + features" if features else "QAT, outputs",
                                path, seconds, note))
        text = table_text(rows, reference, encoded, args, len(train_texts), len(scored))
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(header() + "\n\n" + text + "\n", encoding="utf-8")


def table_text(rows: list[Row], reference: np.ndarray, encoded: dict[str, np.ndarray],
               args: argparse.Namespace, trained: int, scored: int) -> str:
    split = "REPORT" if args.score_on == "report" else "DEV tuning"
    lines = [(f"### qat_minilm {datetime.date.today().isoformat()} — {cpu()[0]}, ORT "
              f"{ort.__version__}; {scored} {split} sentences; QAT: {args.steps} steps × "
              f"{args.batch} of {trained} DEV sentences, lr {args.step_lr:g} of a step, "
              f"{'padding counted' if args.no_mask else 'padding masked out'}"), "",
             ("| weights | method | embedding cos mean [95 % CI] | cos min | int MatMuls | "
              "train s | notes |"),
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        cos = cosines(reference, embed(row.path, encoded))
        interval = bootstrap_interval(cos)
        kernels = count_kernels(row.path)
        seconds = "-" if row.seconds is None else f"{row.seconds:.0f}"
        lines.append(f"| {'W4A8' if row.bits == 4 else 'INT8'} | {row.method} | "
                     f"{interval.value:.4f} [{interval.low:.4f}, {interval.high:.4f}] | "
                     f"{cos.min():.4f} | {kernels.integer_compute}/"
                     f"{kernels.integer_compute + kernels.float_compute} | {seconds} | "
                     f"{row.note} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
