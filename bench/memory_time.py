"""Memory and time of quantizing, beside plain inference and ONNX Runtime's quantize_static.

    python bench/memory_time.py                                  # the three models
    python bench/memory_time.py --models mbv2_640 --samples-640 200
    python bench/memory_time.py --baseline-src /tmp/before/src   # lowbit before a change too
    python bench/memory_time.py --runs 2 --markdown results.md

Models (``--models``):

- ``mbv2_640``: a MobileNetV2-style net built with torch here (random weights, seeded,
  BN with plausible statistics), exported (``dynamo=False``) with a dynamic batch, height
  and width and fed 640×640 crops of the photos bundled with scikit-image, resized:
  ``--samples-640`` (1,000) of them, written once as one ``.npy`` (4.9 GB) that every
  measurement streams from disk, never all in memory. Fidelity: logit SQNR vs F32 on 40
  held-out crops;
- ``efficientnet_lite0``: real weights (bench/efficientnet_lite0.py), 200 photo crops
  (seed 0); fidelity on 300 held-out crops (seed 1): top-1 agreement, top-5 overlap and
  logit SQNR vs F32 (bench/issue6_accuracy.py's measures);
- ``minilm``: all-MiniLM-L6-v2 (bench/minilm.py), 100 calibration sentences; fidelity:
  the mean-pooled embedding's cosine to F32's, mean and min over the 300 others
  (bench/minilm_int8.py's measure).

Rows, each measured in a fresh Python process (this script with ``--child``) that
reports its own wall time (its library imported before the clock starts: lowbit and
lowbit.api, or onnxruntime.quantization) and peak RSS (``VmHWM``, which starts afresh
at exec, or where calibrate runs a worker pool the larger summed RSS of the process and
its workers, sampled every 20 ms):

- ``F32 inference``: ONNX Runtime on the same samples, batch 1, read one at a time;
- ``lowbit calibrate minmax`` / ``lowbit calibrate`` (the default, auto with its output
  check), each followed by ``lowbit deploy`` with its defaults (its own process): the
  time is the sum, the peak the larger of the two; ``batch`` is the one calibrate chose
  from the memory budget (its log says it);
- ``ORT quantize_static``: MinMax, QDQ, per-channel int8 weights, uint8 activations,
  the samples streamed one at a time (the peer's calibrator keeps a min/max per tensor).

``above F32`` is a row's peak minus the F32 inference row's; ``x ORT`` its time over
ORT's. With ``--runs 2`` each timed row runs twice, interleaved (lowbit, ORT, lowbit,
ORT), and the table shows both times. The machine may be shared: timings are noisy,
the peaks are not. The header names the CPU, its flags and the versions.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MODELS = ("mbv2_640", "efficientnet_lite0", "minilm")
SIZE_640 = 640


# ---------------------------------------------------------------- models and data


def mobilenet_v2_640(path: Path) -> Path:
    """A MobileNetV2-style ONNX model with dynamic N, H, W (random, seeded weights)."""
    import torch
    from torch import nn

    def conv_bn(cin: int, cout: int, k: int, stride: int, groups: int = 1,
                act: bool = True) -> nn.Sequential:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups,
                                             bias=False), nn.BatchNorm2d(cout)]
        if act:
            layers.append(nn.ReLU6())
        return nn.Sequential(*layers)

    class Inverted(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
            super().__init__()
            hidden = cin * expand
            layers = [] if expand == 1 else [conv_bn(cin, hidden, 1, 1)]
            layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden),
                       conv_bn(hidden, cout, 1, 1, act=False)]
            self.body = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.body(x) if self.residual else self.body(x)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            stages = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                      (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
            layers: list[nn.Module] = [conv_bn(3, 32, 3, 2)]
            channels = 32
            for expand, cout, repeats, stride in stages:
                for i in range(repeats):
                    layers.append(Inverted(channels, cout, stride if i == 0 else 1, expand))
                    channels = cout
            layers.append(conv_bn(channels, 1280, 1, 1))
            self.features = nn.Sequential(*layers)
            self.fc = nn.Linear(1280, 1000)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.features(x).mean((2, 3)))

    torch.manual_seed(0)
    net = Net().eval()
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    with torch.no_grad():
        torch.onnx.export(net, (torch.zeros(1, 3, SIZE_640, SIZE_640),), str(path),
                          input_names=["input"], output_names=["logits"], opset_version=17,
                          dynamic_axes={"input": {0: "N", 2: "H", 3: "W"},
                                        "logits": {0: "N"}}, dynamo=False)
    return path


def photos_640(path: Path, count: int, seed: int) -> Path:
    """``count`` random square crops of the bundled photos resized to 640×640, normalised
    like bench/photos.py, written one at a time into one .npy (never all in memory)."""
    from PIL import Image

    sys.path.insert(0, str(HERE))
    from photos import MEAN, SCALE, load_photos

    photos = list(load_photos().values())
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                    shape=(count, 3, SIZE_640, SIZE_640))
    for i in range(count):
        image = photos[i % len(photos)]
        height, width = image.shape[:2]
        side = int(rng.integers(min(height, width) // 2, min(height, width) + 1))
        top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        crop = np.asarray(Image.fromarray(image[top:top + side, left:left + side]).resize(
            (SIZE_640, SIZE_640), Image.Resampling.BILINEAR))
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out[i] = ((crop.astype(np.float32) - MEAN) / SCALE).transpose(2, 0, 1)
        if i % 64 == 63:
            out.flush()
    out.flush()
    del out
    return path


@dataclass
class Bench:
    name: str
    f32: Path
    calib: Path
    samples: int
    evaluate: object  # (model path) -> dict of fidelity figures
    rows: list[dict[str, object]] = field(default_factory=list)


def prepare(name: str, work: Path, args: argparse.Namespace) -> Bench:
    import lowbit

    sys.path.insert(0, str(HERE))
    work.mkdir(parents=True, exist_ok=True)
    if name == "mbv2_640":
        raw = work / "mbv2_640.onnx"
        if not raw.exists():
            mobilenet_v2_640(raw)
        f32 = work / "mbv2_640.f32.onnx"
        if not f32.exists():
            lowbit.transform(raw, f32)
        calib = work / f"photos_640_{args.samples_640}.npy"
        if not calib.exists():
            log("writing %d 640x640 crops to %s", args.samples_640, calib)
            photos_640(calib, args.samples_640, seed=0)
        held = work / "photos_640_eval.npy"
        if not held.exists():
            photos_640(held, 40, seed=1)
        return Bench(name, f32, calib, args.samples_640, lambda m: _logit_scores(f32, m, held))
    if name == "efficientnet_lite0":
        from efficientnet_lite0 import export_onnx
        from photos import photo_set

        f32 = work / "efficientnet_lite0.f32.onnx"
        if not f32.exists():
            lowbit.transform(export_onnx(work / "efficientnet_lite0.onnx"), f32)
        calib, held = work / "efficientnet_calib.npy", work / "efficientnet_eval.npy"
        if not calib.exists():
            np.save(calib, photo_set(200, seed=0, split="dev"))
            np.save(held, photo_set(300, seed=1, split="report"))
        return Bench(name, f32, calib, 200, lambda m: _logit_scores(f32, m, held, top=True))
    import minilm

    f32 = work / "minilm.f32.onnx"
    if not f32.exists():
        lowbit.transform(minilm.export_minilm(work / "minilm.onnx"), f32)
    calib_text, eval_text = minilm.split_sentences()
    calib = work / "minilm_calib.npz"
    if not calib.exists():
        minilm.write_dataset(calib, calib_text)
    encoded = minilm.tokenize(eval_text)
    reference = minilm.embed(f32, encoded)

    def scores(model: Path) -> dict[str, str]:
        cos = minilm.cosines(reference, minilm.embed(model, encoded))
        return {"embedding cos mean": f"{cos.mean():.5f}", "min": f"{cos.min():.5f}"}

    return Bench(name, f32, calib, 100, scores)


def _logit_scores(f32: Path, model: Path, data: Path, top: bool = False) -> dict[str, str]:
    import onnxruntime as ort

    x = np.load(data, mmap_mode="r")
    outputs = []
    for path in (f32, model):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outputs.append(np.concatenate([session.run(None, {"input": np.ascontiguousarray(
            x[i:i + 1])})[0] for i in range(len(x))]).astype(np.float64))
    ref, out = outputs
    sqnr = 10 * np.log10((ref ** 2).sum() / max(((ref - out) ** 2).sum(), 1e-30))
    scores = {"logit SQNR dB": f"{sqnr:.2f}"}
    if top:
        agree = float(np.mean(ref.argmax(1) == out.argmax(1)) * 100)
        ref5, out5 = np.argsort(-ref, 1)[:, :5], np.argsort(-out, 1)[:, :5]
        overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(ref5, out5, strict=True)])
        scores = {"top-1 agreement %": f"{agree:.1f}", "top-5 overlap %":
                  f"{overlap * 100:.1f}", **scores}
    return scores


# ---------------------------------------------------------------- the child side


def stream(data: Path, limit: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Batch-1 samples read one at a time (an .npy by seek and read; a small .npz whole)."""
    if data.suffix == ".npz":
        with np.load(data) as arrays:
            loaded = {k: arrays[k] for k in arrays.files}
        count = len(next(iter(loaded.values())))
        for i in range(count if limit is None else min(limit, count)):
            yield {k: v[i:i + 1] for k, v in loaded.items()}
        return
    with open(data, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(handle)
        row = int(np.prod(shape[1:])) * dtype.itemsize
        for _ in range(shape[0] if limit is None else min(limit, shape[0])):
            raw = handle.read(row)
            yield {"input": np.frombuffer(raw, dtype).reshape((1, *shape[1:]))}


def _tree_rss_mb(pid: int) -> float:
    """Resident MB of ``pid`` and every process under it (lowbit's worker pool), from /proc."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += next(int(line.split()[1]) / 1024 for line in status.splitlines()
                          if line.startswith("VmRSS:"))
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue  # a process that ended between two reads
    return total


class TreePeak:
    """The largest summed RSS of this process and its children, sampled every 20 ms (a
    pool's workers are processes of their own; VmHWM sees this one only)."""

    def __init__(self) -> None:
        import threading

        self.peak, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _tree_rss_mb(os.getpid()))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def child(args: argparse.Namespace) -> None:
    kind, model, data, out = args.child, Path(args.model), Path(args.data), Path(args.out)
    import onnxruntime as ort

    batches: list[str] = []
    if kind == "ort":  # each library is imported before the clock starts
        import onnxruntime.quantization
    if kind.startswith("lowbit"):
        import lowbit
        import lowbit.api  # lowbit's functions load lazily

        class Batches(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                found = re.match(r"calibration batch (\d+)", record.getMessage())
                if found:
                    batches.append(found.group(1))

        collector = logging.getLogger("lowbit.calibration.collect")
        collector.setLevel(logging.INFO)
        collector.addHandler(Batches())
    tree = TreePeak()
    start = time.perf_counter()
    if kind == "f32":
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        for sample in stream(data):
            session.run(None, {k: v for k, v in sample.items() if k in names})
    elif kind == "lowbit-calibrate":
        lowbit.calibrate(model, data, method=args.method, output=out, progress=False)
    elif kind == "lowbit-deploy":
        lowbit.deploy(model, output=out, calibration_table=args.table)
    else:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        names = [i.name for i in ort.InferenceSession(
            str(model), providers=["CPUExecutionProvider"]).get_inputs()]

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.samples = stream(data)

            def get_next(self) -> dict[str, np.ndarray] | None:
                sample = next(self.samples, None)
                return None if sample is None else {k: v for k, v in sample.items()
                                                    if k in names}

        quantize_static(str(model), str(out), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    seconds = time.perf_counter() - start
    peak = next(int(line.split()[1]) / 1024 for line in
                Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    print(json.dumps({"seconds": seconds, "peak_mb": max(peak, tree.stop()),
                      "batch": ",".join(batches)}))


def run_child(kind: str, model: Path, data: Path, out: Path, *, method: str = "auto",
              table: Path | None = None, lowbit_src: Path | None = None) -> dict[str, object]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--model",
               str(model), "--data", str(data), "--out", str(out), "--method", method,
               "--table", str(table or "")]
    env = dict(os.environ)
    source = lowbit_src or HERE.parent / "src"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-6:])
        raise RuntimeError(f"{kind} on {model.name} failed:\n{tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the parent side


def log(message: str, *args: object) -> None:
    print(time.strftime("%H:%M:%S"), message % args, file=sys.stderr, flush=True)


def measure(bench: Bench, work: Path, args: argparse.Namespace) -> None:
    float_run = run_child("f32", bench.f32, bench.calib, work / "unused")
    bench.rows.append({"what": "F32 inference (ORT, batch 1)", "seconds": [float_run["seconds"]],
                       "peak": float_run["peak_mb"], "batch": "1"})
    variants: list[tuple[str, Path | None, str]] = [("lowbit", None, "minmax"),
                                                    ("lowbit", None, "auto")]
    if args.baseline_src:
        variants += [("lowbit before", Path(args.baseline_src), "minmax"),
                     ("lowbit before", Path(args.baseline_src), "auto")]
    timed: dict[str, dict[str, object]] = {}
    for run in range(args.runs):
        for label, source, method in variants:
            key = f"{label} calibrate{' minmax' if method == 'minmax' else ''} + deploy"
            tag = f"{bench.name}.{label.replace(' ', '_')}.{method}"
            log("%s: %s (run %d)", bench.name, key, run + 1)
            table, int8 = work / f"{tag}.calib", work / f"{tag}.int8.onnx"
            calibrated = run_child("lowbit-calibrate", bench.f32, bench.calib, table,
                                   method=method, lowbit_src=source)
            deployed = run_child("lowbit-deploy", bench.f32, bench.calib, int8, table=table,
                                 lowbit_src=source)
            row = timed.setdefault(key, {"what": key, "seconds": [], "peak": 0.0,
                                         "batch": calibrated["batch"] or "-", "model": int8,
                                         "calibrate": [], "deploy": []})
            row["seconds"].append(calibrated["seconds"] + deployed["seconds"])  # type: ignore[attr-defined]
            row["calibrate"].append(calibrated["seconds"])  # type: ignore[attr-defined]
            row["deploy"].append(deployed["seconds"])  # type: ignore[attr-defined]
            row["peak"] = max(float(row["peak"]), calibrated["peak_mb"],  # type: ignore[arg-type]
                              deployed["peak_mb"])
        log("%s: ORT quantize_static (run %d)", bench.name, run + 1)
        ort_int8 = work / f"{bench.name}.ort.int8.onnx"
        done = run_child("ort", bench.f32, bench.calib, ort_int8)
        row = timed.setdefault("ORT", {"what": "ORT quantize_static MinMax", "seconds": [],
                                       "peak": 0.0, "batch": "1", "model": ort_int8})
        row["seconds"].append(done["seconds"])  # type: ignore[attr-defined]
        row["peak"] = max(float(row["peak"]), done["peak_mb"])  # type: ignore[arg-type]
    bench.rows += list(timed.values())
    for row in bench.rows:
        if "model" in row:
            row["fidelity"] = bench.evaluate(row["model"])  # type: ignore[operator]


def table(bench: Bench) -> str:
    base = bench.rows[0]["peak"]
    ort_time = min(next(r for r in bench.rows if r["what"].startswith("ORT"))["seconds"])  # type: ignore[union-attr, type-var]
    lines = [f"### {bench.name}, {bench.samples} samples",
             "", ("| what | seconds | x ORT | calibrate / deploy s | peak RSS MB | above F32 "
             "inference MB | batch |"), "|---|---|---|---|---|---|---|"]
    for row in bench.rows:
        seconds = row["seconds"]
        times = " / ".join(f"{s:.1f}" for s in seconds)  # type: ignore[attr-defined]
        ratio = "" if row["what"].startswith("F32") else \
            " / ".join(f"{s / ort_time:.2f}" for s in seconds)  # type: ignore[attr-defined]
        split = " ; ".join(f"{c:.1f} / {d:.1f}" for c, d in zip(
            row.get("calibrate", []), row.get("deploy", []), strict=True))  # type: ignore[call-overload]
        lines.append(f"| {row['what']} | {times} | {ratio} | {split} | {row['peak']:.0f} | "
                     f"{float(row['peak']) - float(base):+.0f} | {row['batch']} |")  # type: ignore[arg-type]
    scored = [r for r in bench.rows if "fidelity" in r]
    if scored:
        keys = list(scored[0]["fidelity"])  # type: ignore[call-overload]
        lines += ["", "| model | " + " | ".join(keys) + " |",
                  "|---|" + "---|" * len(keys)]
        for row in scored:
            lines.append(f"| {row['what']} | " + " | ".join(
                row["fidelity"][k] for k in keys) + " |")  # type: ignore[index]
    return "\n".join(lines)


def header() -> str:
    import onnxruntime as ort

    cpu, flags = platform.processor() or "unknown CPU", ""
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = re.search(r"model name\s*:\s*(.+)", info).group(1)  # type: ignore[union-attr]
        present = set(re.search(r"flags\s*:\s*(.+)", info).group(1).split())  # type: ignore[union-attr]
        wanted = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
                  "amx_tile", "amx_int8", "amx_bf16")
        flags = " ".join(f for f in wanted if f in present)
    except (OSError, AttributeError):
        pass
    commit = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()
    return (f"## memory_time {time.strftime('%Y-%m-%d %H:%M')} — {cpu} ({os.cpu_count()} "
            f"cores; {flags}), ONNX Runtime {ort.__version__}, lowbit {commit or '?'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--samples-640", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=1, help="timed runs of each row")
    parser.add_argument("--baseline-src", help="a lowbit src/ folder to measure as 'before'")
    parser.add_argument("--workdir", default="/tmp/lowbit_memory_time")
    parser.add_argument("--markdown", help="write the section to this file (provenance "
                        "header first; overwrites)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    for name in ("--model", "--data", "--out", "--method", "--table"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    work = Path(args.workdir)
    text = [header()]
    for name in args.models.split(","):
        bench = prepare(name, work, args)
        measure(bench, work, args)
        text.append(table(bench))
        print("\n\n".join(text[-1:]), flush=True)
    result = "\n\n".join(text) + "\n"
    print("\n" + result)
    if args.markdown:
        sys.path.insert(0, str(HERE))
        from provenance import header as provenance

        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(f"{provenance()}\n\n{result}", encoding="utf-8")


if __name__ == "__main__":
    main()
