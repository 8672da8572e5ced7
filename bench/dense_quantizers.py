"""One quantizer (or plain F32 inference) on one model, alone in this process: time and memory.

    python bench/dense_quantizers.py '{"what": "lowbit", "model": "pnet.onnx",
                                       "data": "pnet.calib.npz", "out": "pnet.lowbit.onnx"}'
    # prints one JSON line: {"seconds": 16.9, "peak_rss_mb": 533, "start_rss_mb": 169, ...}

bench/dense_baseline.py runs this once per row in a fresh subprocess, so no row's
memory or warm caches reach the next. ``what`` is one of

- ``f32``: plain inference over the samples, batch 1 (the baseline for time and RSS);
- ``lowbit``: ``lowbit.calibrate(model, data, num=all)`` then
  ``lowbit.deploy(model, quantize="INT8", calibration_table=...)``, defaults otherwise
  (the speed guard included: set LOWBIT_SPEED=off to leave it out);
- ``lowbit_target``: the same with ``target="auto", calibration_data=data`` (deploy
  --target auto: cos 0.995 for a dense output map, 0.999 for vectors);
- ``ort``: ``quantize_static`` QDQ, MinMax, per-channel int8 weights, uint8
  activations, ``reduce_range`` only on a CPU without VNNI (``avx512_vnni``,
  ``avx_vnni`` or ``amx_int8`` in /proc/cpuinfo); no ``quant_pre_process``. (ORT's
  MinMax calibrator adds ReduceMin/ReduceMax outputs to the graph and keeps only
  those per sample, so its memory does not grow with the activations' size);
- ``nncf`` / ``nncf_mixed``: ``nncf.quantize`` on the ONNX model, defaults (preset
  PERFORMANCE, fast bias correction) / preset MIXED, ``subset_size`` = the samples.

The data is an uncompressed npz with one member ``input`` (N, 3, H, W); every
quantizer reads it one sample at a time, so the data set never sits in memory.
Imports happen before the clock starts and before ``start_rss_mb`` is read; the
peak is VmHWM, this process's own high-water mark (it starts afresh at exec, where
``ru_maxrss`` of a parent's RUSAGE_CHILDREN is the largest child so far).
"""

from __future__ import annotations

import importlib
import json
import logging
import platform
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import numpy as np

THREADS = 2


def stream_samples(npz: Path, key: str = "input") -> Iterator[np.ndarray]:
    """Batch-1 samples read one at a time from an uncompressed npz member."""
    with zipfile.ZipFile(npz) as archive, archive.open(f"{key}.npy") as stream:
        shape, _, dtype = _npy_header(stream)
        per_sample = int(np.prod(shape[1:])) * dtype.itemsize
        for _ in range(shape[0]):
            yield np.frombuffer(stream.read(per_sample), dtype=dtype).reshape((1, *shape[1:]))


def _npy_header(stream: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(stream)
    return np.lib.format.read_array_header_2_0(stream)


class NpzSamples:
    """Re-iterable stream of batch-1 samples (NNCF and ORT may pass over the data twice)."""

    def __init__(self, npz: Path) -> None:
        self.npz = npz

    def __iter__(self) -> Iterator[np.ndarray]:
        return stream_samples(self.npz)

    def __len__(self) -> int:
        with zipfile.ZipFile(self.npz) as archive, archive.open("input.npy") as stream:
            return int(_npy_header(stream)[0][0])


def status_mb(field: str) -> float:
    """A memory line of /proc/self/status (VmRSS, VmHWM), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_f32(model: Path, data: Path, out: Path) -> list[str]:
    from lowbit.runtime.ort import create_session

    session = create_session(model, threads=THREADS)
    for sample in stream_samples(data):
        session.run(None, {"input": sample})
    return []


def run_lowbit(model: Path, data: Path, out: Path, target: str | None = None) -> list[str]:
    import lowbit

    table = out.with_suffix(".calib")
    start = time.perf_counter()
    lowbit.calibrate(model, data, num=len(NpzSamples(data)), output=table, progress=False,
                     threads=THREADS)
    calibrated = time.perf_counter()
    calibrate_peak = status_mb("VmHWM")
    extra = {} if target is None else {"target": target, "calibration_data": data}
    result = lowbit.deploy(model, quantize="INT8", calibration_table=table, output=out,
                           **extra)
    split = (f"calibrate {calibrated - start:.1f} s (peak RSS {calibrate_peak:.0f} MB), "
             f"deploy {time.perf_counter() - calibrated:.1f} s")
    return [split, *result.notes]


def run_ort(model: Path, data: Path, out: Path) -> list[str]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.samples = iter(NpzSamples(data))

        def get_next(self) -> dict[str, np.ndarray] | None:
            sample = next(self.samples, None)
            return None if sample is None else {"input": sample}

        def rewind(self) -> None:
            self.samples = iter(NpzSamples(data))

    reduce_range = not cpu_has_vnni()
    quantize_static(str(model), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, reduce_range=reduce_range,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return [f"reduce_range={reduce_range}"]


def run_nncf(model: Path, data: Path, out: Path, mixed: bool = False) -> list[str]:
    import nncf
    import onnx

    dataset = nncf.Dataset(NpzSamples(data), lambda x: {"input": x})
    preset = nncf.QuantizationPreset.MIXED if mixed else None
    quantized = nncf.quantize(onnx.load(str(model)), dataset, preset=preset,
                              subset_size=len(NpzSamples(data)))
    onnx.save(quantized, str(out))
    return []


RUNS: dict[str, Callable[[Path, Path, Path], list[str]]] = {
    "f32": run_f32, "lowbit": run_lowbit, "ort": run_ort, "nncf": run_nncf,
    "nncf_mixed": lambda model, data, out: run_nncf(model, data, out, mixed=True),
    # deploy --target auto: cos 0.995 for a dense output map, 0.999 for vectors, measured
    # on the first 32 calibration (DEV) samples
    "lowbit_target": lambda model, data, out: run_lowbit(model, data, out, target="auto"),
}


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_vnni() -> bool:
    """Whether the CPU has 8-bit dot-product instructions, so that full-range U8S8
    products do not saturate."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    spec = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.WARNING)
    run = RUNS[spec["what"]]
    # lowbit's public functions load lazily (lowbit.api): imported here like the others'
    modules = ["onnx", "onnxruntime.quantization", "lowbit", "lowbit.api", "lowbit.runtime.ort"]
    for module in modules + (["nncf"] if spec["what"].startswith("nncf") else []):
        importlib.import_module(module)
    start_rss = status_mb("VmRSS")
    start = time.perf_counter()
    notes = run(Path(spec["model"]), Path(spec["data"]), Path(spec["out"]))
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss_mb": status_mb("VmHWM"),
                      "start_rss_mb": start_rss, "notes": notes}))


if __name__ == "__main__":
    main()
