"""Models that arrive already quantized: ONNX Runtime's and NNCF's QDQ models through
lowbit deploy (scales kept), compare, explain and deploy --requantize.

    python bench/prequantized.py --markdown bench/results/prequantized.md
    python bench/prequantized.py --models mnist --eval 100            # a quick look
    python bench/prequantized.py --out-dir /tmp/pq --reuse            # keep / take the files

Subjects: EfficientNet-Lite0 with its real ImageNet weights (bench/efficientnet_lite0.py)
and the demo's MNIST LeNet (src/lowbit/assets/mnist_lenet.onnx), each ``lowbit.transform``-ed
(BN folded): that F32 file is what every quantizer starts from and what every figure is
measured against. Calibration data is DEV only (bench/splits.py): 200 crops of the 10 DEV
photos (seed 0) for Lite0, the demo's 200 training digits for LeNet. Figures come from
REPORT data only: ``--eval`` crops of the 7 REPORT photos (seed 1; bootstrap over photos)
and the demo's 500 REPORT digits (bootstrap over digits).

Importers (each on the same DEV data, in QDQ format):

- ``ORT MinMax``: ``onnxruntime.quantization.quantize_static``, per-channel int8 weights,
  uint8 activations, MinMax calibration;
- ``NNCF``: ``nncf.quantize`` with its defaults (``subset_size`` = all samples).

One table per lowbit step, a row per imported model, each step as a user would run it:

- ``deploy (kept)``: ``lowbit.deploy(model, float_model=F32, test_input=REPORT)``: the
  scales are checked and kept; the row gives how many initializers (scales, zero points,
  integer weights) differ from the imported file's, deploy's validation (output cosine,
  pass/fail at its default tolerance), top-1 agreement with F32 on REPORT (95 % CI) and
  the integer kernels of the written model (``lowbit explain``);
- ``compare``: ``lowbit.compare(F32, model, REPORT)`` on ``--compare`` samples: how many
  F32 tensors found their quantized partner, how many found none (what the quantizer
  removed, such as a conv's output before the ReLU6 folded into its range), the pairs
  below compare's default tolerance and the least similar pair;
- ``explain``: ``explain_int8(model)``: conv/matmul/gemm ORT runs as integer kernels and,
  for the rest, the reasons explain gives, each counted once with its tensor names left
  out;
- ``deploy --requantize``: Q/DQ stripped, scales re-derived by lowbit's default recipe
  with the calibration table lowbit made of the F32 model on the same DEV data; a row for
  the model as imported, one for the requantized model (fidelity, integer kernels,
  deploy's validation and the time it took) and one with ``--float-weights`` (the float
  original's weights and biases instead of the dequantized ones).

A step lowbit refuses (a zero, negative or non-finite scale: one ``LowbitError`` line
naming the tensor, exit 2 at the command line) is a row with that line. Per subject a
reference row ``lowbit deploy`` from F32 (default recipe, the same table) gives what
``--requantize`` should reach. ``--markdown PATH`` writes the section, provenance header
first.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lowbit
from lowbit.analysis.explain import explain_int8
from lowbit.errors import LowbitError
from lowbit.quantize.int8.imported import strip_qdq
from provenance import cpu, header
from regression_cases import cosines, run
from splits import Interval, bootstrap_interval

log = logging.getLogger("prequantized")
SUBJECTS = ("lite0", "mnist")


@dataclass(frozen=True)
class Subject:
    """A float model, its DEV calibration data and its REPORT evaluation data."""

    name: str
    stem: str  # file names in the output folder
    f32: Path
    calib: np.ndarray  # DEV, [N, ...]
    calib_npz: Path
    report_npz: Path  # REPORT, key "input"
    sources: np.ndarray | None  # each REPORT item's source (a photo); None: each its own
    table: Path  # lowbit's calibration table of f32 on calib
    batch: int  # evaluation batch


@dataclass(frozen=True)
class Imported:
    """A QDQ model another tool made from a subject's F32 file (path None: it failed)."""

    maker: str
    path: Path | None
    seconds: float
    error: str = ""


@dataclass(frozen=True)
class Fidelity:
    """A model against F32 on the REPORT data."""

    agree: Interval  # top-1 agreement %, bootstrap over sources
    cosine: float  # mean per-sample output cosine


@dataclass(frozen=True)
class Table:
    """One markdown table: a title line, its columns (model and maker first) and its rows."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]]

    def refused(self, subject: Subject, maker: str, err: LowbitError) -> None:
        """The row of a step lowbit refused: its one line (exit 2 at the command line)."""
        self.note(subject, maker, f"refused, exit 2: {str(err).splitlines()[0]}")

    def note(self, subject: Subject, maker: str, text: str) -> None:
        """A row that is only ``text`` in the third column."""
        self.rows.append((subject.name, maker, text, *("-",) * (len(self.columns) - 3)))

    def text(self) -> str:
        return "\n".join([f"{self.title}", "", "| " + " | ".join(self.columns) + " |",
                          "|" + "---|" * len(self.columns),
                          *("| " + " | ".join(row) + " |" for row in self.rows)])


# ---------------------------------------------------------------- subjects


def lite0(out: Path, calib_count: int, eval_count: int, reuse: bool) -> Subject:
    from efficientnet_lite0 import export_onnx
    from photos import photo_set, photo_sources

    f32 = out / "lite0.f32.onnx"
    if not (reuse and f32.is_file()):
        f32 = lowbit.transform(export_onnx(out / "lite0.onnx"), f32).path
    calib = photo_set(calib_count, seed=0, split="dev")
    return _subject("EfficientNet-Lite0", "lite0", out, f32, calib,
                    photo_set(eval_count, seed=1, split="report"),
                    photo_sources(eval_count, "report"), reuse, batch=25)


def mnist(out: Path, reuse: bool) -> Subject:
    from lowbit.demo import asset_path
    from splits import digit_indices

    f32 = out / "mnist.f32.onnx"
    if not (reuse and f32.is_file()):
        f32 = lowbit.transform(asset_path("mnist_lenet.onnx"), f32).path
    with np.load(asset_path("mnist_calib.npz")) as c, np.load(asset_path("mnist_test.npz")) as t:
        calib, test = c["input"], t["input"]
    report = test[digit_indices("report", len(test))]
    return _subject("MNIST LeNet (demo)", "mnist", out, f32, calib, report, None, reuse,
                    batch=100)


def _subject(name: str, stem: str, out: Path, f32: Path, calib: np.ndarray,
             report: np.ndarray, sources: np.ndarray | None, reuse: bool, batch: int
             ) -> Subject:
    """Write the data files and lowbit's calibration table (kept with ``reuse``)."""
    calib_npz, report_npz, table = (out / f"{stem}.calib.npz", out / f"{stem}.report.npz",
                                    out / f"{stem}.calib")
    np.savez(calib_npz, input=calib)
    np.savez(report_npz, input=report)
    if not (reuse and table.is_file()):
        lowbit.calibrate(f32, calib_npz, output=table, progress=False)
    return Subject(name, stem, f32, calib, calib_npz, report_npz, sources, table, batch)


# ---------------------------------------------------------------- importers


class _Reader:
    """One sample at a time, as ORT's calibration reader protocol asks."""

    def __init__(self, name: str, x: np.ndarray) -> None:
        self._items: Iterator[np.ndarray] = iter(x[i:i + 1] for i in range(len(x)))
        self._name = name

    def get_next(self) -> dict[str, np.ndarray] | None:
        item = next(self._items, None)
        return None if item is None else {self._name: item}


def _input_name(path: Path) -> str:
    return onnx.load(str(path), load_external_data=False).graph.input[0].name


def ort_minmax(subject: Subject, path: Path) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    reader = type("Reader", (_Reader, CalibrationDataReader), {})(
        _input_name(subject.f32), subject.calib)
    with contextlib.redirect_stdout(sys.stderr):
        quantize_static(str(subject.f32), str(path), reader, quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)


def nncf_default(subject: Subject, path: Path) -> None:
    import nncf

    name = _input_name(subject.f32)
    dataset = nncf.Dataset([subject.calib[i:i + 1] for i in range(len(subject.calib))],
                           lambda x: {name: x})
    quantized = nncf.quantize(onnx.load(str(subject.f32)), dataset,
                              subset_size=len(subject.calib))
    onnx.save(quantized, str(path))


IMPORTERS: dict[str, Callable[[Subject, Path], None]] = {"ORT MinMax": ort_minmax,
                                                          "NNCF": nncf_default}


def make(subject: Subject, maker: str, out: Path, reuse: bool) -> Imported:
    """Run one importer; its own exception becomes the row's note (it is a result)."""
    path = out / f"{subject.stem}.{maker.split()[0].lower()}.qdq.onnx"
    if reuse and path.is_file():
        return Imported(maker, path, float("nan"), "")
    start = time.perf_counter()
    try:
        IMPORTERS[maker](subject, path)
    except Exception as err:  # noqa: BLE001 - another tool's failure is a row
        return Imported(maker, None, time.perf_counter() - start,
                        f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    return Imported(maker, path, time.perf_counter() - start)


# ---------------------------------------------------------------- measuring


def fidelity(subject: Subject, reference: np.ndarray, path: Path) -> Fidelity:
    with np.load(subject.report_npz) as data:
        logits = run(path, {_input_name(path): data["input"]}, subject.batch)[0]
    agree = 100.0 * (reference.argmax(1) == logits.argmax(1)).astype(np.float64)
    return Fidelity(bootstrap_interval(agree, sources=subject.sources),
                    float(cosines(reference, logits).mean()))


def kernels(path: Path) -> str:
    advice = explain_int8(path, profile=False)
    return f"{sum(op.integer for op in advice.ops)}/{len(advice.ops)}"


def changed_initializers(a: Path, b: Path) -> int:
    """How many initializers of ``a`` (scales, zero points, weights) ``b`` lacks or holds
    with other bytes."""
    def arrays(path: Path) -> dict[str, bytes]:
        return {t.name: numpy_helper.to_array(t).tobytes()
                for t in onnx.load(str(path)).graph.initializer}
    before, after = arrays(a), arrays(b)
    return sum(after.get(name) != data for name, data in before.items())


def seconds_text(seconds: float) -> str:
    return "-" if np.isnan(seconds) else f"{seconds:.{1 if seconds < 10 else 0}f}"


def score_cells(f: Fidelity) -> tuple[str, str]:
    return (f"{f.agree.value:.1f} [{f.agree.low:.1f}, {f.agree.high:.1f}]", f"{f.cosine:.5f}")


def deploy_kept(table: Table, subject: Subject, model: Imported, reference: np.ndarray,
                out: Path) -> None:
    """``lowbit deploy`` of the imported model against its float original: scales kept."""
    assert model.path is not None
    kept = out / f"{model.path.stem}.kept.onnx"
    start = time.perf_counter()
    try:
        result = lowbit.deploy(model.path, output=kept, float_model=subject.f32,
                               test_input=subject.report_npz)
    except LowbitError as err:
        table.refused(subject, model.maker, err)
        return
    seconds = time.perf_counter() - start
    check = result.validation.checks[0] if result.validation else None
    table.rows.append((subject.name, model.maker,
                       f"{'passed' if result.passed else 'FAILED'} ({', '.join(result.steps)})",
                       seconds_text(model.seconds), str(changed_initializers(model.path, kept)),
                       f"{check.cosine:.5f}" if check else "-",
                       score_cells(fidelity(subject, reference, kept))[0], kernels(kept),
                       seconds_text(seconds)))


def compare(table: Table, subject: Subject, model: Imported, samples: int, out: Path) -> None:
    """``lowbit compare`` of F32 with the imported model: which tensors pair."""
    assert model.path is not None
    data = out / f"{subject.report_npz.stem}.{samples}.npz"
    with np.load(subject.report_npz) as full:
        np.savez(data, input=full["input"][:samples])
    start = time.perf_counter()
    try:
        report = lowbit.compare(subject.f32, model.path, data, progress=False)
    except LowbitError as err:
        table.refused(subject, model.maker, err)
        return
    seconds = time.perf_counter() - start
    graph = onnx.load(str(subject.f32), load_external_data=False).graph
    tensors = len(graph.input) + sum(len(node.output) for node in graph.node)
    worst = min(report.diffs, key=lambda d: d.cosine)
    table.rows.append((subject.name, model.maker, str(len(report.diffs)), str(tensors),
                       str(report.unpaired), str(len(report.failed)),
                       f"{worst.cosine:.5f} ({worst.op_type} {worst.name})",
                       seconds_text(seconds)))


def explain(table: Table, subject: Subject, model: Imported) -> None:
    """``lowbit explain`` of the imported model: integer kernels, and why not."""
    assert model.path is not None
    start = time.perf_counter()
    try:
        advice = explain_int8(model.path, profile=False)
    except LowbitError as err:
        table.refused(subject, model.maker, err)
        return
    seconds = time.perf_counter() - start
    # the same cause for many ops: count it once, with the quoted tensor names left out
    # (a quote that follows a letter is an apostrophe: "ORT's")
    reasons = Counter(re.sub(r"(?<![A-Za-z])'[^']*'", "'…'", op.reason) or "no reason given"
                      for op in advice.float_ops)
    why = "; ".join(f"{count}× {reason}" for reason, count in reasons.most_common())
    table.rows.append((subject.name, model.maker,
                       f"{sum(op.integer for op in advice.ops)}/{len(advice.ops)}",
                       why or "-", seconds_text(seconds)))


def requantize(table: Table, subject: Subject, model: Imported, reference: np.ndarray,
               out: Path) -> None:
    """``lowbit deploy --requantize``: Q/DQ stripped, scales re-derived from lowbit's
    table of the float original."""
    assert model.path is not None
    stripped = strip_qdq(onnx.load(str(model.path)))
    table.rows.append((subject.name, model.maker, "as imported", "-",
                       *score_cells(fidelity(subject, reference, model.path)),
                       kernels(model.path), "-", "-"))
    for step, float_weights in (("--requantize", False),
                                ("--requantize --float-weights", True)):
        path = out / f"{model.path.stem}.requantized{'.fw' if float_weights else ''}.onnx"
        start = time.perf_counter()
        try:
            result = lowbit.deploy(model.path, output=path, requantize=True,
                                   float_weights=float_weights,
                                   calibration_table=subject.table, float_model=subject.f32,
                                   test_input=subject.report_npz, speed="off")
        except LowbitError as err:
            table.refused(subject, model.maker, err)
            continue
        seconds = time.perf_counter() - start
        taken = next((n.split(": ", 1)[1].split(" replaced by ")[0] + " taken from F32"
                      for n in result.notes if n.startswith("float weights: ")), None)
        what = f"{stripped.pairs} pairs, {len(stripped.relus)} Relus restored" + \
            (f"; {taken}" if taken else "")
        table.rows.append((subject.name, model.maker, step, what,
                           *score_cells(fidelity(subject, reference, path)), kernels(path),
                           "passed" if result.passed else "FAILED", seconds_text(seconds)))


def lowbit_reference(table: Table, subject: Subject, reference: np.ndarray, out: Path) -> None:
    """lowbit's own model from F32 with the same table: what --requantize should reach."""
    path = out / f"{subject.stem}.lowbit.int8.onnx"
    start = time.perf_counter()
    lowbit.deploy(subject.f32, output=path, calibration_table=subject.table, speed="off")
    seconds = time.perf_counter() - start
    scores = score_cells(fidelity(subject, reference, path))
    table.rows.append((subject.name, LOWBIT, "deploy", "-", *scores, kernels(path), "-",
                       seconds_text(seconds)))


LOWBIT = "lowbit from F32"


def tables(args: argparse.Namespace) -> dict[str, Table]:
    """The four tables, empty: one per lowbit step."""
    data = (f"Lite0: {args.calib} DEV crops calibrate, {args.eval} REPORT crops score (CI over "
            "the 7 photos); LeNet: 200 DEV digits calibrate, 500 REPORT digits score (CI "
            "over digits)")
    return {
        "kept": Table(f"### deploy, scales kept\n\n{data}", (
            "model", "made by", "deploy", "quantize s", "initializers changed",
            "validation cosine",
            "agree with F32 % [95 % CI]", "int kernels", "deploy s"), []),
        "compare": Table(f"### compare with F32 on {args.compare} REPORT samples", (
            "model", "made by", "paired tensors", "F32 tensors", "unpaired", "below tolerance",
            "least similar (cosine)", "s"), []),
        "explain": Table("### explain: conv/matmul/gemm as ORT runs them", (
            "model", "made by", "int kernels", "float kernels: why (count)", "s"), []),
        "requantize": Table("### deploy --requantize: lowbit's rules, table of the F32 model "
                            "on the same DEV data", (
            "model", "made by", "lowbit step", "Q/DQ stripped", "agree with F32 % [95 % CI]",
            "output cosine", "int kernels", "validation", "s"), []),
    }


def measure(subject: Subject, found: dict[str, Table], args: argparse.Namespace,
            out: Path) -> None:
    """Every row of one subject: per importer the model, then lowbit's four steps on it."""
    with np.load(subject.report_npz) as data:
        reference = run(subject.f32, {_input_name(subject.f32): data["input"]},
                        subject.batch)[0]
    lowbit_reference(found["requantize"], subject, reference, out)
    for maker in IMPORTERS:
        model = make(subject, maker, out, args.reuse)
        log.info("%s %s: %s", subject.name, maker, model.error or f"{model.seconds:.0f} s")
        if model.path is None:
            found["kept"].note(subject, maker, f"not made: {model.error}")
            continue
        deploy_kept(found["kept"], subject, model, reference, out)
        compare(found["compare"], subject, model, args.compare, out)
        explain(found["explain"], subject, model)
        requantize(found["requantize"], subject, model, reference, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(SUBJECTS),
                        help=f"subjects to run ({', '.join(SUBJECTS)})")
    parser.add_argument("--calib", type=int, default=200, help="Lite0 DEV calibration crops")
    parser.add_argument("--eval", type=int, default=200, help="Lite0 REPORT crops scored")
    parser.add_argument("--compare", type=int, default=32,
                        help="REPORT samples lowbit compare runs (default 32)")
    parser.add_argument("--out-dir", type=Path, help="keep the models here")
    parser.add_argument("--reuse", action="store_true",
                        help="take the F32 models, tables and imported models already in "
                        "--out-dir (their make time is then not shown)")
    parser.add_argument("--markdown", type=Path,
                        help="write the provenance header and the table to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    wanted = args.models.split(",")
    unknown = set(wanted) - set(SUBJECTS)
    if unknown:
        parser.error(f"unknown --models {', '.join(sorted(unknown))}; choose from "
                     f"{', '.join(SUBJECTS)}")
    with tempfile.TemporaryDirectory(prefix="prequantized-") as tmp:
        out = args.out_dir or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        found = tables(args)
        for name in wanted:
            subject = (lite0(out, args.calib, args.eval, args.reuse) if name == "lite0"
                       else mnist(out, args.reuse))
            measure(subject, found, args, out)
            text = document(found)
            if args.markdown:  # what is finished so far, in case the run is cut short
                write_markdown(args.markdown, text)
        print(text)


def document(found: dict[str, Table]) -> str:
    day = datetime.date.today().isoformat()
    return "\n\n".join([f"## prequantized {day} — {cpu()[0]}, ORT {ort.__version__}",
                         *(table.text() for table in found.values())])


def write_markdown(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header() + "\n\n" + text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
