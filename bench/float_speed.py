"""F32, F16, BF16 (cast and full), INT8 and mixed side by side on ONNX Runtime and OpenVINO.

    python bench/float_speed.py                         # resnet18 and mobilenet_v2
    python bench/float_speed.py --models resnet18 --repeats 10 --markdown out.md

For each model (bench/models.py, random weights, BN folded by lowbit.transform):
deploy F16 and BF16 with both methods, INT8 (min/max on 64 photo crops) and a mixed
model (INT8 with the three most sensitive ops, by ``lowbit qtable``'s ranking, kept
F32); then time every variant that its engine can run, interleaved in one process
(lowbit.analysis.bench with BenchVariant), and give each one's logit cosine to F32 on 8
held-out crops. "computes in" is what the engine reports, not what was asked.
Needs the openvino extra for the OpenVINO rows.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import lowbit
from lowbit.analysis.bench import BenchSettings, BenchVariant, bench_models
from lowbit.analysis.metrics import cosine
from lowbit.errors import LowbitError
from lowbit.quantize.mixed.qtable import QTable, write_qtable
from lowbit.runtime.backends import make_runner
from models import BUILDERS, photo_crops, save


def build_variants(name: str, out: Path) -> dict[str, Path]:
    source = save(BUILDERS[name](), out / f"{name}.onnx")
    f32 = lowbit.transform(source, out / f"{name}.f32.onnx").path
    np.savez(out / "calib.npz", input=photo_crops(64, seed=0))
    lowbit.calibrate(f32, out / "calib.npz", output=out / f"{name}.calib", progress=False)
    paths = {"F32": f32}
    for precision in ("F16", "BF16"):
        for method in ("cast", "full"):
            paths[f"{precision} {method}"] = lowbit.deploy(
                f32, quantize=precision, method=method,
                output=out / f"{name}.{precision.lower()}.{method}.onnx").path
    paths["INT8"] = lowbit.deploy(f32, calibration_table=out / f"{name}.calib",
                                  output=out / f"{name}.int8.onnx").path
    ranking = lowbit.qtable(f32, out / "calib.npz", calibration_table=out / f"{name}.calib",
                            output=out / f"{name}.rank.qtable", num=8).qtable.loss or []
    keep = QTable({row.name: "F32" for row in ranking[:3]})
    write_qtable(keep, out / f"{name}.mixed.qtable")
    paths["mixed (3 ops F32)"] = lowbit.deploy(
        f32, calibration_table=out / f"{name}.calib", quantize_table=out / f"{name}.mixed.qtable",
        output=out / f"{name}.mixed.onnx").path
    return paths


def runnable(path: Path, backend: str, precision: str | None) -> bool:
    try:
        runner = make_runner(path, backend=backend, precision=precision)
        runner.run({"input": photo_crops(1, seed=5)})
    except LowbitError:
        return False
    except Exception:  # noqa: BLE001 - an engine that cannot run a variant just skips it
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,mobilenet_v2")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    out = args.out_dir or Path(tempfile.mkdtemp(prefix="float_speed_"))
    out.mkdir(parents=True, exist_ok=True)
    held_out = photo_crops(8, seed=3, split="report")
    title = (f"### float_speed {datetime.date.today()}: {platform.processor() or 'CPU'}, "
             f"{args.threads} threads, {args.repeats} repeats")
    lines = [title, ""]
    for name in args.models.split(","):
        paths = build_variants(name, out)
        wanted = [(label, path, "ort", None) for label, path in paths.items()]
        wanted += [(label, path, "openvino", "F32") for label, path in paths.items()
                   if label in ("F32", "INT8")]
        wanted += [("F32", paths["F32"], "openvino", "BF16")]
        wanted += [(label, path, "openvino", None) for label, path in paths.items()
                   if label.startswith("BF16")]
        rows = [(label, path, backend, precision) for label, path, backend, precision in wanted
                if runnable(path, backend, precision)]
        skipped = [f"{label} on {backend}" for label, path, backend, precision in wanted
                   if (label, path, backend, precision) not in rows]
        reference = make_runner(paths["F32"]).run({"input": held_out})
        ref = next(iter(reference.values()))
        cosines = []
        for _, path, backend, precision in rows:
            got = make_runner(path, backend=backend, precision=precision).run({"input": held_out})
            cosines.append(cosine(ref, next(iter(got.values()))))
        comparison = bench_models(
            [BenchVariant(path, backend=backend, precision=precision)
             for _, path, backend, precision in rows],
            BenchSettings(batches=(1, args.batch), threads=args.threads, repeats=args.repeats),
            progress=False)
        base = comparison.results[0].timing(args.batch).throughput
        header = (f"| variant | engine | computes in | size MB | b1 ms | b{args.batch} img/s | "
                  f"speed-up b{args.batch} vs F32 on ORT | cos vs F32 |")
        lines += [f"**{name}**", "", header, "|---|---|---|---|---|---|---|---|"]
        for (label, _, backend, _), result, cos in zip(rows, comparison.results, cosines,
                                                       strict=True):
            b1, bn = result.timing(1), result.timing(args.batch)
            lines.append(f"| {label} | {backend} | {result.precision_used} | "
                         f"{result.size_bytes / 1e6:.1f} | {b1.median_ms:.2f} | "
                         f"{bn.throughput:.1f} | {bn.throughput / base:.2f}x | {cos:.5f} |")
        if skipped:
            lines += ["", f"Not runnable (skipped): {', '.join(skipped)}."]
        lines.append("")
        print("\n".join(lines), flush=True)
    text = "\n".join(lines)
    if args.markdown:
        with args.markdown.open("a") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
