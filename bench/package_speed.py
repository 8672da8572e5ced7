"""Bundles against their .onnx: size, session creation, first inference, steady-state latency.

    python bench/package_speed.py                        # ResNet-18 F32/INT8, the demo model
    python bench/package_speed.py --models demo --repeats 200 --threads 2

For each model (bench/models.py's ResNet-18, random weights, transformed; its INT8 from
lowbit.calibrate on 32 photo crops + lowbit.deploy; the MNIST CNN ``lowbit demo`` ships,
F32 and INT8 as the demo makes them) it writes, with ``lowbit.api.package``, a bundle for
``amd64`` (portable: saved runtime optimizations) and for ``host`` (every ONNX Runtime
optimization of this CPU, NCHWc included), then measures, interleaved so noise hits all
alike, medians:

* cold start, ``--starts`` times: the .onnx's session creation (parse + graph
  optimizations) vs the bundle's (read the zip, check every SHA-256, create the session
  from the ORT-format bytes, replay the saved optimizations), and the first inference;
* steady state: batch-1 latency over ``--repeats`` runs of each warm session;
* sizes: the .onnx and the bundle;
* OpenVINO IR (``package --format openvino``) against OpenVINO's default FP16 weight
  compression: the .bin's size and how far each moves the outputs from the .onnx's;
* with ``--tvm``: what ``package --format tvm`` compiles (untuned, target llvm), its
  compile time and batch-1 latency beside ONNX Runtime's on the same threads.

Each bundle's outputs are checked against the .onnx's on the benchmark input first.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lowbit import api
from lowbit.data import ImageOptions
from lowbit.demo import PREPROCESSING, asset_path
from lowbit_run.bundle import Bundle, read_bundle
from lowbit_run.session import open_session
from models import photo_crops, resnet18, save
from provenance import cpu

TARGETS = ("amd64", "host")


@dataclass(frozen=True)
class Variant:
    name: str  # ".onnx", "bundle amd64", "bundle host"
    path: Path
    check: Callable[[], object]  # a bundle: read it, check every SHA-256 (.onnx: nothing)
    opener: Callable[[object], ort.InferenceSession]  # the session, from what check gave


@dataclass(frozen=True)
class Row:
    model: str
    variant: str
    size: int
    check_ms: float  # reading the bundle and its checksums (0 for the .onnx)
    session_ms: float  # everything before the first run
    first_ms: float
    steady_ms: float
    max_diff: float


def build_resnet(out: Path) -> dict[str, Path]:
    save(resnet18(batch=1), out / "resnet18.onnx")
    f32 = api.transform(out / "resnet18.onnx", out / "resnet18.f32.onnx",
                           image_options=ImageOptions(mean=(123.675, 116.28, 103.53),
                                                      scale=(1 / 58.395, 1 / 57.12, 1 / 57.375),
                                                      resize=(256,)))
    np.savez(out / "calib.npz", input=photo_crops(32, seed=0))
    api.calibrate(f32.path, out / "calib.npz", method="minmax",
                     output=out / "resnet18.calib", progress=False)
    int8 = api.deploy(f32.path, quantize="INT8", calibration_table=out / "resnet18.calib",
                         output=out / "resnet18.int8.onnx")
    return {"ResNet-18 F32": f32.path, "ResNet-18 INT8": int8.path}


def build_demo(out: Path) -> dict[str, Path]:
    f32 = api.transform(asset_path("mnist_lenet.onnx"), out / "mnist.f32.onnx",
                           image_options=PREPROCESSING)
    api.calibrate(f32.path, asset_path("mnist_calib.npz"), num=200,
                     output=out / "mnist.calib", progress=False)
    int8 = api.deploy(f32.path, quantize="INT8", calibration_table=out / "mnist.calib",
                         output=out / "mnist.int8.onnx")
    return {"demo MNIST F32": f32.path, "demo MNIST INT8": int8.path}


def variants(model: Path, out: Path, threads: int) -> list[Variant]:
    def onnx_session(_: object) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])

    def bundle_session(bundle: object) -> ort.InferenceSession:
        assert isinstance(bundle, Bundle)
        return open_session(bundle, threads=threads)

    found = [Variant(".onnx", model, lambda: None, onnx_session)]
    for target in TARGETS:
        path = out / f"{model.stem}.{target}.lowbit"
        api.package(model, path, target_platform=target)
        found.append(Variant(f"bundle {target}", path,
                             partial(read_bundle, path), bundle_session))
    return found


def measure(label: str, model: Path, out: Path, args: argparse.Namespace) -> list[Row]:
    chosen = variants(model, out, args.threads)
    first_input = chosen[0].opener(None).get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in first_input.shape]
    x = {first_input.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    cold: dict[str, dict[str, list[float]]] = {
        v.name: {"check": [], "session": [], "first": []} for v in chosen}
    for _ in range(args.starts):
        for v in chosen:
            gc.collect()  # the last variant's session freed before this one is timed
            start = time.perf_counter()
            checked_bundle = v.check()
            checked = time.perf_counter()
            session = v.opener(checked_bundle)
            opened = time.perf_counter()
            session.run(None, x)
            done = time.perf_counter()
            times = cold[v.name]
            times["check"].append((checked - start) * 1e3)
            times["session"].append((opened - checked) * 1e3)
            times["first"].append((done - opened) * 1e3)
    sessions = {v.name: v.opener(v.check()) for v in chosen}
    reference = sessions[".onnx"].run(None, x)
    diffs = {name: max(float(np.max(np.abs(a - b))) for a, b in
                       zip(s.run(None, x), reference, strict=True))
             for name, s in sessions.items()}
    for s in sessions.values():
        for _ in range(5):
            s.run(None, x)
    steady: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(args.repeats):
        for name, s in sessions.items():
            start = time.perf_counter()
            s.run(None, x)
            steady[name].append((time.perf_counter() - start) * 1e3)
    rows = []
    for v in chosen:
        times = cold[v.name]
        check = statistics.median(times["check"]) if v.name != ".onnx" else 0.0
        rows.append(Row(label, v.name, v.path.stat().st_size, check,
                        check + statistics.median(times["session"]),
                        statistics.median(times["first"]), statistics.median(steady[v.name]),
                        diffs[v.name]))
    return rows


def ir_rows(label: str, model: Path, out: Path) -> list[str]:
    """OpenVINO IR as lowbit writes it (weights as they are) and with OpenVINO's default
    FP16 compression: .bin size and max |IR - .onnx| on one input, F32 inference."""
    import openvino as ov

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in spec.shape]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    reference = session.run(None, {spec.name: x})[0]
    rows = []
    for how, compress in (("lowbit (compress_to_fp16=False)", False),
                          ("OpenVINO default (FP16 weights)", True)):
        xml = out / f"{model.stem}.{'fp16' if compress else 'kept'}.xml"
        if compress:
            ov.save_model(ov.convert_model(str(model)), str(xml), compress_to_fp16=True)
        else:
            api.package(model, xml, format="openvino")
        compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        diff = float(np.max(np.abs(compiled(x)[0] - reference)))
        rows.append(f"| {label} | {how} | {xml.with_suffix('.bin').stat().st_size / 1e6:.2f} | "
                    f"{diff:.2g} |")
    return rows


def tvm_rows(label: str, model: Path, out: Path, runs: int) -> list[str]:
    """What ``package --format tvm`` compiles (untuned, target llvm): compile time, batch-1
    latency beside ORT's (interleaved medians, both on their default threads), max diff."""
    from lowbit.runtime.tvm_module import TvmRunner, compile_onnx

    library = out / f"{model.stem}.so"
    seconds = compile_onnx(model, library, target={"kind": "llvm"})
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in spec.shape]
    x = {spec.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    runner = TvmRunner(library, input_names=[spec.name],
                       output_names=[o.name for o in session.get_outputs()])
    diff = float(np.max(np.abs(runner.run(x)[session.get_outputs()[0].name]
                               - session.run(None, x)[0])))
    times: dict[str, list[float]] = {"tvm": [], "ort": []}
    for _ in range(runs):
        for name, run in (("tvm", lambda: runner.run(x)), ("ort", lambda: session.run(None, x))):
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) * 1e3)
    tvm_ms, ort_ms = statistics.median(times["tvm"]), statistics.median(times["ort"])
    return [(f"| {label} | {seconds:.1f} | {tvm_ms:.1f} | {ort_ms:.2f} | {tvm_ms / ort_ms:.0f}x | "
            f"{diff:.2g} |")]


def table(rows: list[Row]) -> str:
    head = ("| model | variant | size MB | size vs .onnx | read+check ms | session ms | "
            "first run ms | steady ms | steady vs .onnx | max abs diff |")
    lines = [head, "|" + "---|" * 10]
    base = {r.model: r for r in rows if r.variant == ".onnx"}
    for r in rows:
        b = base[r.model]
        lines.append(f"| {r.model} | {r.variant} | {r.size / 1e6:.2f} | "
                     f"{r.size / b.size:.3f}x | {r.check_ms:.1f} | {r.session_ms:.1f} | "
                     f"{r.first_ms:.2f} | {r.steady_ms:.3f} | {r.steady_ms / b.steady_ms:.2f}x | "
                     f"{r.max_diff:.2g} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,demo",
                        help="comma-separated: resnet18, demo")
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads")
    parser.add_argument("--starts", type=int, default=7, help="cold starts per variant")
    parser.add_argument("--repeats", type=int, default=50, help="timed steady-state runs")
    parser.add_argument("--work", type=Path, help="keep the models here (default: a temp dir)")
    parser.add_argument("--no-openvino", dest="openvino", action="store_false",
                        help="skip the OpenVINO IR table")
    parser.add_argument("--tvm", action="store_true", help="add the Apache TVM table "
                        "(experimental; the tvm extra)")
    parser.add_argument("--tvm-runs", type=int, default=5, help="timed runs of each for --tvm")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.work or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        models: dict[str, Path] = {}
        names = args.models.split(",")
        if "resnet18" in names:
            models.update(build_resnet(out))
        if "demo" in names:
            models.update(build_demo(out))
        rows = [row for label, path in models.items() for row in measure(label, path, out, args)]
        ir = [line for label, path in models.items() if args.openvino
              for line in ir_rows(label, path, out)]
        compiled = [line for label, path in models.items() if args.tvm
                    for line in tvm_rows(label, path, out, args.tvm_runs)]
    print(f"CPU: {cpu()[0]}; ONNX Runtime {ort.__version__}; {args.threads} thread(s); "
          f"batch 1; medians of {args.starts} cold starts and {args.repeats} interleaved runs")
    print(table(rows))
    if ir:
        print()
        print("| model | OpenVINO IR | .bin MB | max abs diff IR vs .onnx (F32 hint) |")
        print("|---|---|---|---|")
        print("\n".join(ir))
    if compiled:
        print()
        print("| model | TVM compile s | TVM ms (untuned) | ORT ms | TVM/ORT | max abs diff |")
        print("|---|---|---|---|---|---|")
        print("\n".join(compiled))


if __name__ == "__main__":
    main()
