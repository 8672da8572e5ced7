"""Mixed-precision search: lowbit's against a tpu-mlir-style walk and an INC-style fallback.

    python bench/mixed_walks.py                     # EfficientNet-Lite0, targets cos 0.995, 0.999
    python bench/mixed_walks.py --targets 0.999 --samples 32 --markdown out.md

EfficientNet-Lite0 with its real ImageNet weights (bench/efficientnet_lite0.py; needs the
bench extra), min/max calibration on 200 photo crops, search samples: other crops. For
each target (mean per-sample logit cosine vs F32), the float (F32) ops each strategy
chooses, whether the mixed model meets the target (checked by running it), and the
forward passes spent (full-model equivalents):

* lowbit: ``lowbit.qtable(..., target=...)`` — sensitivity ranking from cached INT8
  activations, galloping search over the ranking, pruning;
* tpu-mlir-style: compare F32 and INT8 layer by layer (lowbit.compare), send every op
  whose own output cosine is below 0.99 to float in graph order, capped at 1/4 of the
  quantizable ops, then check the target once;
* INC-style: fall back each op alone and measure (one model run per op), then add ops
  in the order of that score, one by one, until the target holds.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import lowbit
from lowbit.analysis.layerwise import compare_layers
from lowbit.analysis.validate import Tolerance
from lowbit.calibration.table import read_table
from lowbit.passes import canonicalize
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.quantize.mixed.deploy import deploy_mixed
from lowbit.quantize.mixed.sensitivity import candidate_ops
from lowbit.runtime.ort import create_session


class Judge:
    """Runs mixed models on the search samples and counts forward passes."""

    def __init__(self, canonical: onnx.ModelProto, ranges, x: np.ndarray) -> None:
        self.model, self.ranges, self.x = canonical, ranges, x
        self.passes = 0.0
        self.reference = self._run(canonical)

    def _run(self, model: onnx.ModelProto) -> np.ndarray:
        self.passes += len(self.x)
        session = create_session(model)
        return np.concatenate([session.run(None, {"input": self.x[i:i + 1]})[0]
                               for i in range(len(self.x))])

    def cosine(self, float_ops: list[str]) -> float:
        mixed = deploy_mixed(self.model, self.ranges, QuantizeSettings(),
                             {name: "F32" for name in float_ops}).model
        out = self._run(mixed)
        ref = self.reference
        num = (ref * out).sum(axis=1)
        den = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
        return float(np.mean(num / den))


def tpu_mlir_walk(f32: Path, int8: Path, judge: Judge, candidates: list[str], target: float
                  ) -> tuple[list[str], float, float]:
    start = judge.passes
    report = compare_layers(f32, int8, ({"input": judge.x[i:i + 1]}
                                        for i in range(len(judge.x))), Tolerance(),
                            progress=False)
    walk_passes = 2.0 * len(judge.x)  # both models once per sample
    producers = {o: n.name for n in judge.model.graph.node for o in n.output}
    cap = max(1, len(candidates) // 4)
    chosen = []
    for diff in report.diffs:
        op = producers.get(diff.name)
        if op in candidates and diff.cosine < 0.99 and op not in chosen and len(chosen) < cap:
            chosen.append(op)
    metric = judge.cosine(chosen)
    return chosen, metric, judge.passes - start + walk_passes


def inc_walk(judge: Judge, candidates: list[str], target: float
             ) -> tuple[list[str], float, float]:
    start = judge.passes
    scores = {op: judge.cosine([op]) for op in candidates}
    order = sorted(candidates, key=lambda op: -scores[op])
    chosen: list[str] = []
    metric = judge.cosine([])
    for op in order:
        if metric >= target:
            break
        chosen.append(op)
        metric = judge.cosine(chosen)
    return chosen, metric, judge.passes - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="0.995,0.999")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--out-dir", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    from efficientnet_lite0 import export_onnx
    from photos import photo_set

    out = args.out_dir or Path(tempfile.mkdtemp(prefix="mixed_walks_"))
    out.mkdir(parents=True, exist_ok=True)
    source = export_onnx(out / "effnet.onnx")
    f32 = lowbit.transform(source, out / "effnet.f32.onnx").path
    np.savez(out / "calib.npz", input=photo_set(200, seed=0, split="dev"))
    x = photo_set(args.samples, seed=2, split="report")
    np.savez(out / "search.npz", input=x)
    lowbit.calibrate(f32, out / "calib.npz", output=out / "effnet.calib", progress=False)
    int8 = lowbit.deploy(f32, calibration_table=out / "effnet.calib",
                         output=out / "effnet.int8.onnx").path
    canonical, _ = canonicalize(onnx.load(str(f32)))
    ranges = read_table(out / "effnet.calib").ranges
    candidates = [name for name, _ in candidate_ops(canonical, ranges, QuantizeSettings())]
    judge = Judge(canonical, ranges, x)
    all_int8 = judge.cosine([])
    title = (f"### mixed_walks {datetime.date.today()}: EfficientNet-Lite0, {len(candidates)} "
             f"quantizable ops, {args.samples} search samples, all-INT8 cosine {all_int8:.5f}")
    lines = [title, "", "| target cos | strategy | float ops | cosine reached | met | forward passes |",
             "|---|---|---|---|---|---|"]
    for target in (float(t) for t in args.targets.split(",")):
        result = lowbit.qtable(f32, out / "search.npz", calibration_table=out / "effnet.calib",
                               output=out / f"lowbit.{target}.qtable", num=args.samples,
                               target=f"cos={target}")
        ops = result.search.float_ops if result.search else []
        lowbit_metric = judge.cosine(ops)
        rows = [("lowbit", ops, lowbit_metric,
                 result.search.forward_passes if result.search else 0.0)]
        rows.append(("tpu-mlir-style (cos<0.99, cap 1/4)",
                     *tpu_mlir_walk(f32, int8, judge, candidates, target)))
        rows.append(("INC-style (one by one)", *inc_walk(judge, candidates, target)))
        for name, chosen, metric, passes in rows:
            lines.append(f"| {target} | {name} | {len(chosen)} | {metric:.5f} | "
                         f"{'yes' if metric >= target else 'no'} | {passes:.0f} |")
        print("\n".join(lines), flush=True)
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with args.markdown.open("a") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
