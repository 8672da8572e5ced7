"""Regression cases on real models: lowbit's default flow, measured on a REPORT sample.

    from regression_cases import CASES, Case
    case = CASES["demo"]
    figures = case.measure(workdir, seed=0)   # {"agreement": 99.6, "cosine": 0.99999, ...}

    python bench/regression_cases.py --seeds 0,1,2,3,4           # the spread of each figure
    python bench/regression_cases.py --cases demo,pnet --force-isa vnni=0

Each case takes a real model, draws its calibration sample from the DEV side of
bench/splits.py with ``seed`` (the seed picks *which* DEV samples calibrate), runs the
default flow (``lowbit.transform`` → ``lowbit.calibrate`` with the default method →
``lowbit.deploy`` with the default recipe) and scores the INT8 model against F32 on a
fixed REPORT sample. tests/test_regression_real.py asserts seed 0's figures above
thresholds derived from this script's spread over seeds (mean − 3σ, rounded down): the
script prints seed 0, the mean, σ, the minimum and mean − 3σ of every figure so the
test's constants can be re-derived (its docstring holds the table).

Cases (small samples so the whole test suite stays within CI's limit):

- ``demo``: the MNIST LeNet that ships with lowbit; 100 of the demo's 200 calibration
  (training) digits; REPORT: the 500 REPORT digits (50 a class) of the 1,000 held out;
- ``lite0``: EfficientNet-Lite0 with its ImageNet weights (bench/efficientnet_lite0.py);
  32 crops of the DEV photos; REPORT: 70 crops, 10 of each of the 7 REPORT photos;
- ``minilm``: all-MiniLM-L6-v2 (bench/minilm.py, sequence length 32); 32 of the 100 DEV
  calibration sentences; REPORT: 100 of the 200 REPORT sentences;
- ``pnet`` / ``rnet`` / ``onet``: MTCNN's three stages with their published weights
  (bench/dense_models.py); 32 DEV windows / crops; REPORT: 48 windows (P-Net) or 96
  candidate crops (R-, O-Net).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("LOWBIT_SPEED", "off")  # timings on a shared machine decide nothing here

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class Case:
    """A real model, its DEV calibration pool and its REPORT sample."""

    name: str
    export: Callable[[Path], Path]  # write the float ONNX model into a folder, return it
    calibration: Callable[[int], Feeds]  # seed -> the DEV calibration sample
    report: Callable[[], Feeds]  # the fixed REPORT sample
    score: Callable[[list[np.ndarray], list[np.ndarray], Feeds], dict[str, float]]
    batch: int = 32

    def model(self, workdir: Path) -> Path:
        """The float model after ``lowbit.transform`` (made once per folder)."""
        import lowbit

        f32 = workdir / f"{self.name}.f32.onnx"
        if not f32.exists():
            lowbit.transform(self.export(workdir), f32)
        return f32

    def deploy(self, workdir: Path, seed: int) -> Path:
        """The default flow on seed's calibration sample: the INT8 model's path."""
        import lowbit

        f32 = self.model(workdir)
        calib = workdir / f"{self.name}.calib{seed}.npz"
        np.savez(calib, **self.calibration(seed))
        table = workdir / f"{self.name}.{seed}.calib"
        lowbit.calibrate(f32, calib, output=table, progress=False)
        out = workdir / f"{self.name}.{seed}.int8.onnx"
        lowbit.deploy(f32, calibration_table=table, output=out)
        return out

    def measure(self, workdir: Path, seed: int,
                reference: list[np.ndarray] | None = None) -> dict[str, float]:
        """seed's figures (``reference``: the F32 outputs on REPORT, when already known)."""
        feeds = self.report()
        if reference is None:
            reference = run(self.model(workdir), feeds, self.batch)
        return self.score(reference, run(self.deploy(workdir, seed), feeds, self.batch), feeds)


def run(path: Path, feeds: Mapping[str, np.ndarray], batch: int) -> list[np.ndarray]:
    """Every output of ``path`` on ``feeds``, batch by batch, concatenated."""
    from lowbit.runtime.ort import create_session

    session = create_session(path)
    count = len(next(iter(feeds.values())))
    parts = [session.run(None, {k: v[i:i + batch] for k, v in feeds.items()})
             for i in range(0, count, batch)]
    return [np.concatenate([p[j] for p in parts]) for j in range(len(parts[0]))]


# ------------------------------------------------------------------------------ metrics


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-sample cosine of two [N, ...] arrays."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1),
                                       1e-30)


def sqnr(a: np.ndarray, b: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB, pooled over the whole array."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(10 * np.log10((a ** 2).sum() / max(((a - b) ** 2).sum(), 1e-30)))


def classifier_scores(reference: list[np.ndarray], int8: list[np.ndarray],
                      labels: np.ndarray | None = None) -> dict[str, float]:
    ref, out = reference[0], int8[0]
    found = {"agreement": float(100 * np.mean(ref.argmax(1) == out.argmax(1))),
             "cosine": float(cosines(ref, out).mean()), "sqnr": sqnr(ref, out)}
    if labels is not None:
        found["top1"] = float(100 * np.mean(out.argmax(1) == labels))
        found["f32_top1"] = float(100 * np.mean(ref.argmax(1) == labels))
    return found


def output_scores(names: tuple[str, ...]) -> Callable[..., dict[str, float]]:
    """Per output: the cosine over the whole REPORT sample and the SQNR; plus their minima."""

    def score(reference: list[np.ndarray], int8: list[np.ndarray], feeds: Feeds
              ) -> dict[str, float]:
        found = {}
        for name, ref, out in zip(names, reference, int8, strict=True):
            flat_ref, flat_out = ref.reshape(1, -1), out.reshape(1, -1)
            found[f"{name}_cosine"] = float(cosines(flat_ref, flat_out)[0])
            found[f"{name}_sqnr"] = sqnr(ref, out)
        found["cosine"] = min(v for k, v in found.items() if k.endswith("_cosine"))
        found["sqnr"] = min(v for k, v in found.items() if k.endswith("_sqnr"))
        return found

    return score


# -------------------------------------------------------------------------------- cases


def _subset(array_or_feeds: Feeds, count: int, seed: int) -> Feeds:
    pool = len(next(iter(array_or_feeds.values())))
    index = np.sort(np.random.default_rng(seed).choice(pool, count, replace=False))
    return {k: v[index] for k, v in array_or_feeds.items()}


@cache
def _demo_data() -> tuple[Feeds, Feeds, np.ndarray]:
    from lowbit.demo import asset_path
    from splits import REPORT, digit_indices

    with np.load(asset_path("mnist_calib.npz")) as calib, \
            np.load(asset_path("mnist_test.npz")) as test:
        report = digit_indices(REPORT, len(test["label"]))
        return ({"input": calib["input"]}, {"input": test["input"][report]},
                test["label"][report])


def _demo_export(workdir: Path) -> Path:
    from lowbit.demo import asset_path

    return asset_path("mnist_lenet.onnx")


def _lite0_export(workdir: Path) -> Path:
    from efficientnet_lite0 import export_onnx

    return export_onnx(workdir / "lite0.onnx")


@cache
def _lite0_report() -> Feeds:
    from photos import photo_set
    from splits import REPORT

    return {"input": photo_set(10 * len(REPORT.photos), seed=1, split="report")}


def _lite0_calibration(seed: int) -> Feeds:
    from photos import photo_set

    return {"input": photo_set(32, seed=100 + seed, split="dev")}


MINILM_SEQ = 32


def _minilm_export(workdir: Path) -> Path:
    import minilm

    return minilm.export_minilm(workdir / "minilm.onnx", seq_len=MINILM_SEQ)


def _minilm_calibration(seed: int) -> Feeds:
    import minilm

    calib, _ = minilm.split_sentences(100)
    chosen = np.random.default_rng(seed).choice(len(calib), 32, replace=False)
    return minilm.tokenize([calib[i] for i in sorted(chosen)], seq_len=MINILM_SEQ)


@cache
def _minilm_report() -> Feeds:
    import minilm

    _, report = minilm.split_sentences(100)
    return minilm.tokenize(report[::2], seq_len=MINILM_SEQ)


def _minilm_score(reference: list[np.ndarray], int8: list[np.ndarray], feeds: Feeds
                  ) -> dict[str, float]:
    import minilm

    mask = feeds["attention_mask"]
    ref = minilm.mean_pool(reference[0], mask)
    out = minilm.mean_pool(int8[0], mask)
    cos = cosines(ref, out)
    return {"cosine": float(cos.mean()), "min_cosine": float(cos.min()), "sqnr": sqnr(ref, out)}


def _stand_in(name: str) -> tuple[Callable[[Path], Path], Callable[[int], Feeds],
                                  Callable[[], Feeds], Callable[..., dict[str, float]]]:
    def export(workdir: Path) -> Path:
        import dense_models

        return dense_models.export(name, workdir)

    def calibration(seed: int) -> Feeds:
        import dense_models
        from splits import DEV

        return {"input": dense_models.STAND_INS[name].samples(DEV, 32, 100 + seed).x}

    @cache
    def report() -> Feeds:
        import dense_models
        from splits import REPORT

        return {"input": dense_models.STAND_INS[name].samples(
            REPORT, 48 if name == "pnet" else 96, 1).x}

    outputs = {"pnet": ("prob", "box"), "rnet": ("prob", "box"),
               "onet": ("prob", "box", "landmarks")}[name]
    return export, calibration, report, output_scores(outputs)


def _classifier(labels: bool) -> Callable[..., dict[str, float]]:
    def score(reference: list[np.ndarray], int8: list[np.ndarray], feeds: Feeds
              ) -> dict[str, float]:
        return classifier_scores(reference, int8, _demo_data()[2] if labels else None)

    return score


CASES: dict[str, Case] = {c.name: c for c in (
    Case("demo", _demo_export, lambda seed: _subset(_demo_data()[0], 100, seed),
         lambda: _demo_data()[1], _classifier(True), batch=100),
    Case("lite0", _lite0_export, _lite0_calibration, _lite0_report, _classifier(False),
         batch=16),
    Case("minilm", _minilm_export, _minilm_calibration, _minilm_report, _minilm_score),
    *(Case(name, *_stand_in(name)) for name in ("pnet", "rnet", "onet")),
)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--force-isa", default="",
                        help="LOWBIT_FORCE_ISA for the run, e.g. vnni=0 (paired weights)")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    if args.force_isa:
        os.environ["LOWBIT_FORCE_ISA"] = args.force_isa
    from provenance import header

    print(header(argv))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="lowbit-regression-"))
    workdir.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    for name in args.cases.split(","):
        case = CASES[name]
        start = time.perf_counter()
        reference = run(case.model(workdir), case.report(), case.batch)
        rows = []
        for seed in seeds:
            began = time.perf_counter()
            rows.append(case.measure(workdir, seed, reference))
            print(f"{name} seed {seed} ({time.perf_counter() - began:.0f} s): " +
                  ", ".join(f"{k} {v:.6g}" for k, v in rows[-1].items()), flush=True)
        print(f"{name}: {len(seeds)} seeds in {time.perf_counter() - start:.0f} s")
        for key in rows[0]:
            values = np.array([r[key] for r in rows])
            mean, sd = values.mean(), values.std(ddof=1) if len(values) > 1 else 0.0
            print(f"  {key:18s} seed0 {values[0]:.6g}  mean {mean:.6g}  sd {sd:.3g}  "
                  f"min {values.min():.6g}  mean-3sd {mean - 3 * sd:.6g}")


if __name__ == "__main__":
    main()
