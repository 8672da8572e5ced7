"""What calibration costs: wall time and peak memory per method, against plain F32 inference.

    python bench/calibration_cost.py                          # both models, 4 methods, 200 & 1000
    python bench/calibration_cost.py --models resnet18 --samples 200 --methods minmax,kl

Every measurement runs in a fresh Python subprocess (this script with --child),
which times only the work (not the imports) and reports its own peak RSS
(VmHWM, not ``ru_maxrss``, which inherits the parent's RSS at fork), so one
measurement's memory never leaks into the next. Beside
lowbit's methods (minmax, percentile, kl, mse) it measures

* the baseline: plain F32 inference over the same samples at batch 1, reading
  them one at a time from the uncompressed npz (constant memory);
* ONNX Runtime's Entropy calibrator (``quantize_static`` with
  ``CalibrationMethod.Entropy``), which keeps every activation of every sample in
  memory before building histograms: its runs are capped at --ort-samples (200)
  and skipped when the estimate of that memory exceeds what the machine has free.

Results: seconds, time / F32-inference time, peak RSS and RSS above the
inference baseline. lowbit's design asks calibration memory to be bounded by
tensors x bins, never by the number of samples: RSS at 1000 samples should
match RSS at 200.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

HERE = Path(__file__).resolve().parent
METHODS = ("minmax", "percentile", "kl", "mse")


# ---------------------------------------------------------------- the child side


def stream_samples(npz: Path, key: str = "input", limit: int | None = None
                   ) -> Iterator[np.ndarray]:
    """Batch-1 samples read one at a time from an npz member: memory stays one sample."""
    with zipfile.ZipFile(npz) as archive, archive.open(f"{key}.npy") as stream:
        shape, fortran, dtype = _npy_header(stream)
        if fortran:
            raise SystemExit(f"{npz}:{key} is Fortran-ordered; write it C-ordered")
        per_sample = int(np.prod(shape[1:])) * dtype.itemsize
        count = shape[0] if limit is None else min(limit, shape[0])
        for _ in range(count):
            raw = stream.read(per_sample)
            yield np.frombuffer(raw, dtype=dtype).reshape((1, *shape[1:]))


def _npy_header(stream: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(stream)
    return np.lib.format.read_array_header_2_0(stream)


def _peak_rss_mb() -> float:
    """Peak RSS of this process in MB.

    VmHWM (Linux) belongs to the process image and starts afresh at exec; ru_maxrss
    does not: it carries over the parent's RSS at fork, which here would count the
    parent's copy of the data set against the child.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _status_mb(field: str) -> float:
    """A current-memory line of /proc/self/status (e.g. RssFile: mapped file pages), MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def child_f32(model: Path, data: Path, num: int, threads: int) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    for sample in stream_samples(data, limit=num):
        session.run(None, {"input": sample})


def child_lowbit(model: Path, data: Path, num: int, method: str, out: Path,
                 threads: int) -> None:
    import lowbit

    lowbit.calibrate(model, data, method=method, num=num, output=out, threads=threads,
                     progress=False)


def child_ort(model: Path, data: Path, num: int, out: Path) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._samples = stream_samples(data, limit=num)

        def get_next(self) -> dict[str, np.ndarray] | None:
            sample = next(self._samples, None)
            return None if sample is None else {"input": sample}

    quantize_static(str(model), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.Entropy)


def run_child(args: argparse.Namespace) -> None:
    import onnxruntime  # noqa: F401  (imports before the clock starts)

    start_rss = _peak_rss_mb()
    start = time.perf_counter()
    if args.child == "f32":
        child_f32(args.model, args.data, args.num, args.threads)
    elif args.child == "lowbit":
        child_lowbit(args.model, args.data, args.num, args.method, args.output, args.threads)
    else:
        child_ort(args.model, args.data, args.num, args.output)
    seconds = time.perf_counter() - start
    # RssFile: pages of memory-mapped files (a memory-mapped data set) still resident at the
    # end; they count in peak RSS but the kernel can drop them, unlike RssAnon.
    print(json.dumps({"seconds": seconds, "peak_rss_mb": _peak_rss_mb(),
                      "rss_before_mb": start_rss, "rss_file_mb": _status_mb("RssFile"),
                      "rss_anon_mb": _status_mb("RssAnon")}))


# --------------------------------------------------------------- the parent side


@dataclass(frozen=True)
class Measurement:
    model: str
    what: str          # "F32 inference", "lowbit minmax", "ORT Entropy"
    samples: int
    seconds: float
    peak_rss_mb: float
    note: str = ""


def measure(kind: str, model: Path, data: Path, num: int, threads: int, *,
            method: str = "", output: Path | None = None) -> tuple[float, float]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind,
               "--model", str(model), "--data", str(data), "--num", str(num),
               "--threads", str(threads)]
    if method:
        command += ["--method", method]
    if output is not None:
        command += ["--output", str(output)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent / "src"),
                                                      env.get("PYTHONPATH")]))
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"{kind} {method} on {model.name} ({num} samples) failed:\n{tail}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return float(result["seconds"]), float(result["peak_rss_mb"])


def activation_bytes_per_sample(model: Path) -> int:
    """Bytes of every float tensor a batch-1 run produces: what ORT's calibrator keeps per sample."""
    import onnx

    proto = onnx.load(str(model))
    for dim in proto.graph.input[0].type.tensor_type.shape.dim:
        if dim.HasField("dim_param"):
            dim.dim_value = 1
            break
    inferred = onnx.shape_inference.infer_shapes(proto)
    total = 0
    for value in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]:
        dims = value.type.tensor_type.shape.dim
        if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and dims:
            total += 4 * int(np.prod([max(d.dim_value, 1) for d in dims]))
    return total


def available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def make_dataset(path: Path, count: int) -> Path:
    from models import photo_crops

    if path.exists():
        with zipfile.ZipFile(path) as archive, archive.open("input.npy") as stream:
            shape = _npy_header(stream)[0]
        if shape[0] >= count:
            return path
    # Uncompressed (np.savez, not savez_compressed): 1000 x 3x224x224 float32 = 602 MB,
    # readable sample by sample or memory-mapped without inflating it.
    np.savez(path, input=photo_crops(count, seed=0))
    return path


def run_parent(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(HERE))
    from int8_speed import make_f32
    from models import BUILDERS, save

    out_dir: Path = args.out_dir or Path(tempfile.mkdtemp(prefix="lowbit-calib-cost-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = sorted({int(s) for s in args.samples.split(",")})
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    data = make_dataset(out_dir / "calib_data.npz", max(sizes))
    print(f"data {data} ({data.stat().st_size / 1e6:.0f} MB, uncompressed); outputs in {out_dir}",
          flush=True)
    rows: list[Measurement] = []
    for name in [n.strip() for n in args.models.split(",") if n.strip()]:
        f32 = out_dir / f"{name}.f32.onnx"
        make_f32(save(BUILDERS[name](), out_dir / f"{name}.onnx"), f32)
        for num in sizes:
            rows.append(_one(name, "F32 inference", num, "f32", f32, data, args))
            for method in methods:
                rows.append(_one(name, f"lowbit {method}", num, "lowbit", f32, data, args,
                                 method=method, output=out_dir / f"{name}.{method}.{num}.calib"))
        rows += _ort_rows(name, f32, data, sizes, args, out_dir)
    text = format_table(rows)
    print("\n" + text)
    if args.markdown is not None:
        with args.markdown.open("a") as handle:
            handle.write(f"### calibration_cost, {args.threads} threads\n\n{text}\n\n")


def _one(name: str, what: str, num: int, kind: str, model: Path, data: Path,
         args: argparse.Namespace, *, method: str = "", output: Path | None = None,
         note: str = "") -> Measurement:
    print(f"[{name}] {what}, {num} samples ...", end=" ", flush=True)
    try:
        seconds, rss = measure(kind, model, data, num, args.threads, method=method, output=output)
    except RuntimeError as err:
        print(f"FAILED\n{err}", flush=True)
        return Measurement(name, what, num, float("nan"), float("nan"), note="failed")
    print(f"{seconds:.1f} s, peak RSS {rss:.0f} MB", flush=True)
    return Measurement(name, what, num, seconds, rss, note)


def _ort_rows(name: str, f32: Path, data: Path, sizes: list[int], args: argparse.Namespace,
              out_dir: Path) -> list[Measurement]:
    num = min(args.ort_samples, max(sizes))
    note = f"capped at {num} samples" if num < max(sizes) else ""
    need_mb = activation_bytes_per_sample(f32) * num * 1.3 / 2**20 + 1024
    if need_mb > available_mb():
        print(f"[{name}] ORT Entropy at {num} samples needs ~{need_mb / 1024:.1f} GB, "
              f"{available_mb() / 1024:.1f} GB free: skipped", flush=True)
        return [Measurement(name, "ORT Entropy", num, float("nan"), float("nan"),
                            note=f"skipped: needs ~{need_mb / 1024:.0f} GB")]
    rows = []
    if num not in sizes:  # the F32 baseline at the same count
        rows.append(_one(name, "F32 inference", num, "f32", f32, data, args))
    rows.append(_one(name, "ORT Entropy", num, "ort", f32, data, args,
                     output=out_dir / f"{name}.ort_entropy.int8.onnx",
                     note=f"{note}; est. {need_mb / 1024:.1f} GB".lstrip("; ")))
    return rows


def format_table(rows: list[Measurement]) -> str:
    baseline = {(r.model, r.samples): r for r in rows if r.what == "F32 inference"}
    header = ("model", "what", "samples", "seconds", "x F32 inference", "peak RSS MB",
              "RSS above inference MB", "note")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        base = baseline.get((r.model, r.samples))
        ratio = r.seconds / base.seconds if base else float("nan")
        above = r.peak_rss_mb - base.peak_rss_mb if base else float("nan")
        lines.append(f"| {r.model} | {r.what} | {r.samples} | {r.seconds:.1f} | {ratio:.2f} | "
                     f"{r.peak_rss_mb:.0f} | {above:+.0f} | {r.note} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,mobilenet_v2")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--samples", default="200,1000", help="comma-separated sample counts")
    parser.add_argument("--ort-samples", type=int, default=200,
                        help="cap for ORT's Entropy calibrator, which holds every activation")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    # The child side: one measurement, a JSON line on stdout.
    parser.add_argument("--child", choices=("f32", "lowbit", "ort"), help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--num", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--method", default="", help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
    else:
        run_parent(args)


if __name__ == "__main__":
    main()
