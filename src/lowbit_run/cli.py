"""The ``lowbit-run`` command: run a bundle on an image or an .npz data set.

    lowbit-run model.lowbit --input cat.jpg --top 5
    lowbit-run model.lowbit --input x.npz --output y.npz
    python -m lowbit_run model.lowbit --input digit.png

An image is preprocessed as the bundle's meta file records (the same code lowbit
runs); an .npz holds one array per model input (key = input name, first axis =
samples, each sample a batch-1 slice, as lowbit's data sets do). Each sample's top
classes of the first output are printed (softmax of logits, or the output itself when
it is already probabilities), named by the bundle's labels when it has them;
``--output`` writes every output, stacked over the samples, to an .npz.

Exit codes: 0 done; 2 bad input or a bundle that fails its checks (one line on
stderr, nothing written). Imports only onnxruntime, numpy, Pillow and the standard
library.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from lowbit_run import preprocess
from lowbit_run.bundle import Bundle, BundleError, read_bundle
from lowbit_run.session import open_session

EXIT_OK, EXIT_BAD_INPUT = 0, 2
META_FORMAT = "lowbit model meta v1"
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".pnm"})
PROBABILITY_TOLERANCE = 1e-3
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
              "tensor(float16)": np.float16, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8,
              "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_}


class RunError(Exception):
    """A usage mistake: an input that does not fit the bundle's model."""


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    score: float


@dataclass(frozen=True)
class RunResult:
    """What one run gave: every output stacked over the samples, and the timings."""

    outputs: dict[str, np.ndarray]
    samples: int
    session_ms: float  # reading and checking the bundle plus creating the session
    run_ms: float  # all samples


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="lowbit-run", description="Run a model bundled by lowbit package "
                     "(ONNX Runtime, CPU) on an image or an .npz of inputs.")
    parser.add_argument("bundle", help="the .lowbit file")
    parser.add_argument("--input", required=True, metavar="IMG|NPZ",
                        help="an image file (preprocessed as the bundle records) or an .npz "
                        "with one array per input")
    parser.add_argument("--output", metavar="NPZ", help="write every output to this .npz")
    parser.add_argument("--top", type=int, default=5, help="classes to print per sample")
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    args = parser.parse_args(argv)
    try:
        lines = run_command(Path(args.bundle), Path(args.input),
                            None if args.output is None else Path(args.output),
                            top=args.top, threads=args.threads)
    except (BundleError, RunError) as err:
        sys.stderr.write(f"lowbit-run: error: {_one_line(err)}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    sys.stdout.write("".join(line + "\n" for line in lines))
    return EXIT_OK


def run_command(bundle_path: Path, input_path: Path, output: Path | None, *, top: int = 5,
                threads: int | None = None) -> list[str]:
    """What ``lowbit-run`` does, as the lines it prints."""
    if top < 0:
        raise RunError(f"--top must be 0 or more, got {top}")
    if threads is not None and threads < 1:
        raise RunError(f"--threads must be 1 or more, got {threads}")
    if output is not None:
        _check_output(output, {"the bundle": bundle_path, "--input": input_path})
    if not input_path.is_file():
        raise RunError(f"input not found: {input_path}")
    bundle, session, result = run_bundle(bundle_path, input_path, threads=threads)
    report = bundle.report
    lines = [(f"{bundle_path.name}: {report.get('precision', '?')} model, "
              f"{bundle.model.target_platform}, ONNX Runtime {ort.__version__}; bundle read and "
              f"session created in {result.session_ms:.0f} ms, {result.samples} sample(s) run "
              f"in {result.run_ms:.1f} ms")]
    first = session.get_outputs()[0].name
    if top:
        scores = result.outputs[first]
        for index in range(result.samples):
            row = scores[index] if scores.shape[:1] == (result.samples,) else scores
            shown, kind = top_classes(row, top, bundle.labels)
            where = input_path.name if result.samples == 1 else f"sample {index}"
            lines.append(f"{where}: top {len(shown)} of '{first}' ({kind})")
            lines += [f"  {rank}. {p.label} ({p.index}) {p.score:.4f}"
                      for rank, p in enumerate(shown, start=1)]
    if output is not None:
        _save_npz(output, result.outputs)
        lines.append(f"wrote {output}")
    return lines


def run_bundle(bundle_path: Path, input_path: Path, *, threads: int | None = None
               ) -> tuple[Bundle, ort.InferenceSession, RunResult]:
    """Read and check the bundle, open its session, run every sample of ``input_path``."""
    start = time.perf_counter()
    bundle = read_bundle(bundle_path)
    session = open_session(bundle, threads=threads)
    opened = time.perf_counter()
    samples = load_samples(input_path, bundle.meta, session)
    names = [o.name for o in session.get_outputs()]
    collected: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for sample in samples:
        try:
            values = session.run(names, sample)
        except Exception as err:  # ORT raises several unrelated exception types
            raise RunError(f"running {bundle_path} on {input_path} failed: "
                           f"{_one_line(err)}") from err
        for name, value in zip(names, values, strict=True):
            collected[name].append(np.asarray(value))
    done = time.perf_counter()
    outputs = {name: np.concatenate(values, axis=0) if values[0].ndim else np.stack(values)
               for name, values in collected.items()}
    return bundle, session, RunResult(outputs, len(samples), (opened - start) * 1e3,
                                      (done - opened) * 1e3)


def load_samples(path: Path, meta: Mapping[str, Any],
                 session: ort.InferenceSession) -> list[dict[str, np.ndarray]]:
    """The feeds of every sample in ``path`` (an image or an .npz) for ``session``."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return [image_feed(path, meta, session)]
    if path.suffix.lower() == ".npz":
        return npz_feeds(path, session)
    raise RunError(f"--input {path}: expected an image file (.jpg, .png, ...) or an .npz")


def image_feed(path: Path, meta: Mapping[str, Any],
               session: ort.InferenceSession) -> dict[str, np.ndarray]:
    """One image preprocessed as the meta records, for the model's single image input."""
    if meta.get("format") != META_FORMAT:
        raise RunError(f"the bundle's meta file is {meta.get('format')!r}; this lowbit-run "
                       f"reads '{META_FORMAT}'")
    pre = meta.get("preprocessing")
    if not isinstance(pre, dict):
        raise RunError("the bundle records no image preprocessing (it was transformed without "
                       "image options): give an .npz of model inputs")
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise RunError(f"an image feeds one 4-D input; the model has "
                       f"{', '.join(f'{i.name} {i.shape}' for i in inputs)}: give an .npz")
    spec = inputs[0]
    fused = bool(pre.get("fused"))
    gray = pre["pixel_format"] == "gray"
    pixel_format = ("gray" if gray else "rgb") if fused else str(pre["pixel_format"])
    channels = 1 if gray else 3
    layout = str(pre.get("fused_layout") or "nhwc") if fused else str(pre.get("layout", "nchw"))
    shape = list(spec.shape)
    if layout == "auto":
        layout = "nhwc" if shape[1] != channels and shape[3] == channels else "nchw"
    height, width = (shape[2], shape[3]) if layout == "nchw" else (shape[1], shape[2])
    if not isinstance(height, int) or not isinstance(width, int):
        raise RunError(f"input '{spec.name}' {shape} has a dynamic height or width: give an "
                       f".npz")
    try:
        values = preprocess.load_image(
            path, height=height, width=width,
            mean=(0.0,) if fused else pre["mean"], scale=(1.0,) if fused else pre["scale"],
            pixel_format=pixel_format, resize=pre.get("resize"), crop=pre.get("crop"),
            keep_aspect_ratio=bool(pre.get("keep_aspect_ratio", False)), layout=layout)
    except preprocess.ImageError as err:
        raise RunError(str(err)) from None
    except (KeyError, TypeError, ValueError) as err:
        raise RunError(f"the bundle's preprocessing cannot be applied: "
                       f"{_one_line(err)}") from None
    return {spec.name: values.astype(_ORT_TYPES.get(spec.type, np.float32), copy=False)}


def npz_feeds(path: Path, session: ort.InferenceSession) -> list[dict[str, np.ndarray]]:
    """Batch-1 samples (or the input's fixed batch) from an .npz with one array per input."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError) as err:
        raise RunError(f"{path} is not a readable .npz: {_one_line(err)}") from None
    inputs = session.get_inputs()
    missing = [i.name for i in inputs if i.name not in arrays]
    if missing:
        raise RunError(f"{path} lacks input(s) {', '.join(missing)}; it has "
                       f"{', '.join(arrays) or 'no arrays'}")
    per_input: dict[str, list[np.ndarray]] = {}
    for spec in inputs:
        dtype = _ORT_TYPES.get(spec.type)
        array = arrays[spec.name]
        if dtype is None or array.dtype.kind not in "biuf":
            raise RunError(f"input '{spec.name}' is {spec.type}; {path} holds {array.dtype}")
        per_input[spec.name] = _split(spec.name, list(spec.shape), array.astype(dtype,
                                                                                copy=False))
    counts = {name: len(items) for name, items in per_input.items()}
    if len(set(counts.values())) != 1:
        raise RunError(f"{path} holds different numbers of samples per input: "
                       f"{', '.join(f'{k} {v}' for k, v in counts.items())}")
    count = next(iter(counts.values()))
    return [{name: items[i] for name, items in per_input.items()} for i in range(count)]


def _split(name: str, shape: list[Any], array: np.ndarray) -> list[np.ndarray]:
    fixed = all(isinstance(d, int) for d in shape)
    if fixed and list(array.shape) == shape:
        return [array]
    batch = shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else 1
    fits = array.ndim == len(shape) and array.shape[0] % batch == 0 and all(
        not isinstance(d, int) or d == v for d, v in zip(shape[1:], array.shape[1:],
                                                         strict=True))
    if not fits or array.shape[0] == 0:
        raise RunError(f"input '{name}' expects {shape} per sample; the .npz holds "
                       f"{list(array.shape)} (first axis = samples)")
    return [array[i:i + batch] for i in range(0, array.shape[0], batch)]


def top_classes(row: np.ndarray, top: int, labels: Sequence[str] | None
                ) -> tuple[list[Prediction], str]:
    """The ``top`` classes of one output row, and what the scores are."""
    values = np.asarray(row, dtype=np.float64).reshape(-1)
    if values.size and values.min() >= 0.0 and values.max() <= 1.0 \
            and abs(values.sum() - 1.0) <= PROBABILITY_TOLERANCE:
        scores, kind = values, "the output, already probabilities"
    else:
        shifted = np.exp(values - values.max())
        scores, kind = shifted / shifted.sum(), "softmax of the output"
    names = labels if labels is not None and len(labels) == values.size else None
    order = np.argsort(-scores, kind="stable")[:top]
    return [Prediction(int(i), names[int(i)] if names else f"class {int(i)}",
                       float(scores[int(i)])) for i in order], kind


def _check_output(output: Path, inputs: Mapping[str, Path]) -> None:
    if output.is_dir():
        raise RunError(f"--output {output} is a folder; give an .npz file name")
    for label, path in inputs.items():
        same = os.path.samefile(output, path) if output.exists() and path.exists() else \
            output.resolve() == path.resolve()
        if same:
            raise RunError(f"--output {output} is {label}; writing it would destroy that file")


def _save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write atomically: a temporary file beside ``path``, renamed over it when complete."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise RunError(f"cannot write {path}: {err.strerror or err}") from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as stream:
            np.savez(stream, **dict(arrays))  # type: ignore[arg-type]
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as err:
        raise RunError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        tmp.unlink(missing_ok=True)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {_one_line(message)} (see '{self.prog} "
                         f"--help')\n")
        raise SystemExit(EXIT_BAD_INPUT)


def _one_line(err: object) -> str:
    return " ".join(str(err).split())
