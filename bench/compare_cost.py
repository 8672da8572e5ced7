"""What the layer-by-layer compare costs, against running the two models once each.

    python bench/compare_cost.py                       # resnet18 and mobilenet_v2, 16 and 64 samples
    python bench/compare_cost.py --models resnet18 --samples 32

For each model: build it (bench/models.py), transform, calibrate (minmax on 32
photo crops) and deploy INT8 with lowbit; then, each in a fresh subprocess that
reports its own wall time and peak RSS (VmHWM):

* plain: the F32 model and the INT8 model each run once over the samples, batch 1;
* compare: ``lowbit.compare(f32, int8, data)``, every paired tensor exposed and
  compared sample by sample.

Goal (issue 3): compare ≤ 3x the time of the two plain runs; memory not growing with
the number of samples or tensors (mobilenet_v2 has about twice resnet18's tensors).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from calibration_cost import _peak_rss_mb, make_dataset, stream_samples


def child(kind: str, f32: Path, int8: Path, data: Path, num: int, threads: int) -> None:
    import onnxruntime as ort

    start = time.perf_counter()
    if kind == "plain":
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        for model in (f32, int8):
            session = ort.InferenceSession(str(model), options,
                                           providers=["CPUExecutionProvider"])
            for sample in stream_samples(data, limit=num):
                session.run(None, {"input": sample})
    else:
        import numpy as np

        import lowbit

        subset = data.with_name(f"{data.stem}.{num}.npz")
        if not subset.exists():
            np.savez(subset, input=np.stack(list(stream_samples(data, limit=num)))[:, 0])
        start = time.perf_counter()
        report = lowbit.compare(f32, int8, subset, progress=False)
        print(report.summary(), file=sys.stderr)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss_mb": _peak_rss_mb()}))


@dataclass(frozen=True)
class Row:
    model: str
    tensors: int
    samples: int
    plain_s: float
    plain_mb: float
    compare_s: float
    compare_mb: float


def measure(kind: str, f32: Path, int8: Path, data: Path, num: int, threads: int
            ) -> tuple[float, float]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--f32", str(f32),
               "--int8", str(int8), "--data", str(data), "--num", str(num),
               "--threads", str(threads)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent / "src"),
                                                      env.get("PYTHONPATH")]))
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return float(result["seconds"]), float(result["peak_rss_mb"])


def prepare(name: str, out: Path, data: Path) -> tuple[Path, Path, int]:
    import lowbit
    from models import BUILDERS, save

    source = save(BUILDERS[name](), out / f"{name}.onnx")
    f32 = lowbit.transform(source, out / f"{name}.f32.onnx").path
    lowbit.calibrate(f32, data, num=32, output=out / f"{name}.calib", progress=False)
    int8 = lowbit.deploy(f32, calibration_table=out / f"{name}.calib",
                         output=out / f"{name}.int8.onnx").path
    from lowbit.analysis.pairing import pair_tensors
    from lowbit.io.model import load_model

    tensors = len(pair_tensors(load_model(f32), load_model(int8)))
    return f32, int8, tensors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,mobilenet_v2")
    parser.add_argument("--samples", default="16,64")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", type=Path)
    parser.add_argument("--markdown", type=Path, help="append the table to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--f32", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--int8", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--num", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.f32, args.int8, args.data, args.num, args.threads)
        return

    out = args.out_dir or Path(tempfile.mkdtemp(prefix="compare_cost_"))
    out.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.samples.split(",")]
    data = make_dataset(out / "photos.npz", max(sizes + [32]))
    rows = []
    for name in args.models.split(","):
        f32, int8, tensors = prepare(name, out, data)
        for num in sizes:
            plain_s, plain_mb = measure("plain", f32, int8, data, num, args.threads)
            compare_s, compare_mb = measure("compare", f32, int8, data, num, args.threads)
            rows.append(Row(name, tensors, num, plain_s, plain_mb, compare_s, compare_mb))
            print(rows[-1], flush=True)
    table = format_table(rows, args.threads)
    print(table)
    if args.markdown:
        with args.markdown.open("a") as handle:
            handle.write(table + "\n")


def format_table(rows: list[Row], threads: int) -> str:
    head = (f"### compare_cost {datetime.date.today()}: {platform.processor() or 'CPU'}, "
            f"{threads} threads\n\n"
            "| model | paired tensors | samples | two plain runs s | compare s | time ratio "
            "| plain peak RSS MB | compare peak RSS MB |\n|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lines.append(f"| {r.model} | {r.tensors} | {r.samples} | {r.plain_s:.2f} | "
                     f"{r.compare_s:.2f} | {r.compare_s / r.plain_s:.2f}x | {r.plain_mb:.0f} | "
                     f"{r.compare_mb:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
