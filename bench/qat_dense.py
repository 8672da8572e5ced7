"""Quantization-aware training on the dense-output stand-ins: PTQ, QAT on the outputs alone,
and QAT with feature distillation, at W4A8 and INT8.

    python bench/qat_dense.py --markdown bench/results/qat_dense.md    # onet and rnet
    python bench/qat_dense.py --models onet --bits 4 --steps 50          # quicker

Models: bench/dense_models.py's MTCNN O-Net and R-Net with their real weights (PReLU
throughout; three and two outputs: face probability, box regression, and O-Net's
landmarks), ``lowbit.transform``-ed; data bench/dense_data.py's face-candidate windows
(half LFW patches, half photo squares).

Split: calibration on 200 DEV windows (seed 0), training windows fresh each step from the
DEV side (seeds 10000 + step), every figure on ``--eval`` (400) REPORT windows (seed 1),
whose LFW people and photos no DEV window shares.

Rows per width (``--bits``): ``PTQ``: ``lowbit deploy`` with its defaults (speed guard off:
the student is deploy's graph), the start of both QAT rows; ``QAT, outputs``:
``lowbit.qat.distill`` towards the float model's outputs (KL on the face probability, an
[N, 2] output; relative MSE on the others); ``QAT + features``: also towards every inner
tensor student and float both compute (``lowbit.qat.shared_features``) at
``DistillSettings``' default feature weight. Both: ``--steps`` steps of ``--batch``
windows, each weight's learning rate 0.003 of its quantization step, 8 warm-up steps, one
torch thread. Exported and scored as ONNX Runtime runs them.

Measured: per output, SQNR (dB) against F32 over all REPORT windows; face top-1
agreement with F32; train time (wall, on the machine as it was).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lowbit
from provenance import cpu, header

log = logging.getLogger("qat_dense")
SIZES = {"onet": 48, "rnet": 24}


@dataclass(frozen=True)
class Row:
    bits: int
    method: str
    outputs: list[np.ndarray]
    seconds: float | None = None
    note: str = ""


def run_model(path: Path, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [np.asarray(v, np.float64) for v in session.run(None, {"input": x})]


def sqnr_db(reference: np.ndarray, value: np.ndarray) -> float:
    noise = float(((reference - value) ** 2).sum())
    return float(10 * np.log10((reference ** 2).sum() / max(noise, 1e-30)))


def windows(name: str, split: object, batch: int, first_seed: int = 10_000
            ) -> Iterator[dict[str, np.ndarray]]:
    from dense_data import face_crops

    seed = first_seed
    while True:
        yield {"input": face_crops(split, batch, seed, SIZES[name])}
        seed += 1


def measure(name: str, args: argparse.Namespace, out: Path) -> tuple[list[np.ndarray],
                                                                    list[Row], list[str]]:
    import torch

    import lowbit.qat as lq
    from dense_data import DEV, REPORT, face_crops
    from dense_models import STAND_INS, export

    f32 = lowbit.transform(export(name, out), out / f"{name}.f32.onnx").path
    calib = out / f"{name}.calib.npz"
    np.savez(calib, input=face_crops(DEV, 200, 0, SIZES[name]))
    table = out / f"{name}.calib"
    lowbit.calibrate(f32, calib, output=table, progress=False)
    report = face_crops(REPORT, args.eval, 1, SIZES[name])
    reference = run_model(f32, report)
    rows: list[Row] = []
    torch.set_num_threads(1)
    for bits in (int(b) for b in args.bits.split(",")):
        ptq = lowbit.deploy(f32, calibration_table=table, output=out / f"{name}.w{bits}.onnx",
                            weight_bits=bits, speed="off").path
        rows.append(Row(bits, "PTQ", run_model(ptq, report)))
        for features in (False, True):
            student, teacher = lq.from_deployed(ptq, f32), lq.teacher_of(f32)
            taps = lq.shared_features(student, teacher) if features else []
            student.tap(taps)
            teacher.tap(taps)
            settings = lq.DistillSettings(steps=args.steps, step_learning_rate=0.003, warmup=8,
                                          threads=1, log_every=max(args.steps // 4, 1))
            report_ = lq.distill(student, teacher, windows(name, DEV, args.batch), settings)
            student.tap([])
            label = "QAT + features" if features else "QAT, outputs"
            path = lq.export(student, out / f"{name}.w{bits}.{'feat' if features else 'out'}"
                             ".onnx", report_)
            log.info("%s W%dA8 %s: %s", name, bits, label, report_.summary())
            rows.append(Row(bits, label, run_model(path, report), report_.seconds,
                            f"{len(taps)} inner tensors, weight "
                            f"{settings.feature_weight:g}" if features else ""))
    return reference, rows, list(STAND_INS[name].outputs)


def table(name: str, reference: list[np.ndarray], rows: list[Row], outputs: list[str],
          args: argparse.Namespace) -> str:
    columns = " | ".join(f"{o} SQNR dB" for o in outputs)
    lines = [(f"**{name}** — {args.eval} REPORT windows; QAT: {args.steps} steps × "
              f"{args.batch} DEV windows"), "",
             f"| weights | method | face top-1 agree % | {columns} | train s | notes |",
             "|---|---|---|" + "---|" * len(outputs) + "---|---|"]
    for row in rows:
        agree = 100 * float(np.mean(reference[0].argmax(1) == row.outputs[0].argmax(1)))
        sqnr = " | ".join(f"{sqnr_db(r, v):.1f}" for r, v in zip(reference, row.outputs,
                                                                  strict=True))
        seconds = "-" if row.seconds is None else f"{row.seconds:.0f}"
        lines.append(f"| {'W4A8' if row.bits == 4 else 'INT8'} | {row.method} | {agree:.1f} | "
                     f"{sqnr} | {seconds} | {row.note} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="onet,rnet",
                        help=f"comma-separated, from {', '.join(SIZES)} (default onet,rnet)")
    parser.add_argument("--bits", default="4,8", help="weight widths (4, 8 or 4,8)")
    parser.add_argument("--steps", type=int, default=200, help="QAT steps (default 200)")
    parser.add_argument("--batch", type=int, default=32, help="windows per step (default 32)")
    parser.add_argument("--eval", type=int, default=400, help="REPORT windows (default 400)")
    parser.add_argument("--markdown", type=Path, help="write the header and tables here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(names) - set(SIZES))
    if unknown:
        raise SystemExit(f"unknown model(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(SIZES)}")
    title = f"### qat_dense {datetime.date.today().isoformat()} — {cpu()[0]}, ORT {ort.__version__}"
    parts = [title]
    with tempfile.TemporaryDirectory(prefix="qat-dense-") as tmp:
        for name in names:
            reference, rows, outputs = measure(name, args, Path(tmp))
            parts.append(table(name, reference, rows, outputs, args))
    text = "\n\n".join(parts)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(header() + "\n\n" + text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
