"""INT4 weight-only (W4) on all-MiniLM-L6-v2: lowbit's RTN and GPTQ beside ORT's MatMulNBitsQuantizer.

    python bench/w4_minilm.py                          # blocks 32,64,128; prints a Markdown table
    python bench/w4_minilm.py --blocks 32 --repeats 10 --markdown /tmp/w4.md

The model is bench/minilm.py's export (fixed sequence length 64, dynamic batch), run
through ``lowbit.transform`` once; every quantizer starts from that same file:

* lowbit ``deploy --quantize W4`` with ``--algorithm rtn`` and ``--algorithm gptq``
  (calibration: the 100 calibration sentences of ``minilm.split_sentences()``), per block
  size, asymmetric (4-bit zero points, the default), plus symmetric and act-order rows;
* ORT's ``MatMulNBitsQuantizer``: its default C++ round-to-nearest (same block size, same
  asymmetric scheme, accuracy_level unset as lowbit's) and, where it runs offline, its
  GPTQ (``GPTQWeightOnlyQuantConfig``, ORT's bundled Intel Neural Compressor code, fed the
  same 100 calibration sentences, percdamp 0.01, lazy block 128 as lowbit's).

Accuracy: the sentence embeddings (mask-weighted mean pooling, L2-normalised) of the
300 evaluation sentences, cosine to the float model's per sentence: mean and minimum.
Size: the file on disk. Speed: the float model and one W4 model per block size (RTN and
GPTQ give the same graph) plus ORT's, timed interleaved at batch 1 and 8
(lowbit.analysis.bench.bench_models: medians); inputs are all-padding token ids of
length 64, which costs what real ones do.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lowbit
import minilm
from lowbit.analysis.bench import BenchSettings, bench_models

log = logging.getLogger("w4_minilm")


@dataclass(frozen=True)
class Variant:
    label: str
    path: Path
    seconds: float  # quantization time
    note: str = ""


def _lowbit(work: Path, f32: Path, calib: Path, algorithm: str, block: int, *,
            symmetric: bool = False, act_order: bool = False) -> Variant:
    tag = f"{algorithm}{block}{'s' if symmetric else ''}{'a' if act_order else ''}"
    out = work / f"lowbit_{tag}.onnx"
    start = time.perf_counter()
    result = lowbit.deploy(f32, quantize="W4", output=out, algorithm=algorithm, block_size=block,
                           calibration_data=calib if algorithm == "gptq" else None,
                           symmetric_weights=symmetric, act_order=act_order)
    seconds = time.perf_counter() - start
    label = f"lowbit {algorithm} b{block}" + (" sym" if symmetric else "") + (
        " act-order" if act_order else "")
    return Variant(label, out, seconds, result.notes[0])


class _Reader:
    """ORT's CalibrationDataReader over the calibration sentences, one per call."""

    def __init__(self, encoded: dict[str, np.ndarray]) -> None:
        self.encoded = encoded
        self.rows: Iterator[int] = iter(range(len(encoded["input_ids"])))

    def get_next(self) -> dict[str, np.ndarray] | None:
        index = next(self.rows, None)
        if index is None:
            return None
        return {k: v[index:index + 1] for k, v in self.encoded.items()}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while (item := self.get_next()) is not None:
            yield item

    def rewind(self) -> None:
        self.rows = iter(range(len(self.encoded["input_ids"])))


def _ort(work: Path, f32: Path, block: int, calib_encoded: dict[str, np.ndarray] | None
         ) -> Variant | str:
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        GPTQWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    algorithm = "gptq" if calib_encoded is not None else "rtn"
    out = work / f"ort_{algorithm}{block}.onnx"
    config = None
    if calib_encoded is not None:
        config = GPTQWeightOnlyQuantConfig(calibration_data_reader=_Reader(calib_encoded),
                                           percdamp=0.01, block_size=128, actorder=False)
    start = time.perf_counter()
    try:
        quantizer = MatMulNBitsQuantizer(onnx.load(str(f32)), block_size=block,
                                         is_symmetric=False, algo_config=config)
        quantizer.process()
        quantizer.model.save_model_to_file(str(out), use_external_data_format=False)
    except Exception as err:  # noqa: BLE001 (report why ORT's path did not run)
        return f"ORT {algorithm} b{block} did not run: {type(err).__name__}: {err}"
    return Variant(f"ORT {algorithm} b{block}", out, time.perf_counter() - start)


def _nncf(work: Path, f32: Path, block: int, calib_encoded: dict[str, np.ndarray] | None
          ) -> Variant | str:
    """NNCF's ``compress_weights`` (ONNX backend), INT4 asymmetric in groups of ``block``,
    ``ratio=1`` (its default ``all_layers=False`` keeps the embeddings and the last layer
    8-bit; with ``all_layers`` its blocked DequantizeLinear of the 512-row position table
    fails in ORT 1.32); with data, its AWQ + scale estimation."""
    try:
        import nncf
        from onnx import version_converter
    except ImportError as err:
        return f"NNCF not importable: {err}"
    kind = "awq+se" if calib_encoded is not None else "data-free"
    out = work / f"nncf_{kind.replace('+', '_')}{block}.onnx"
    start = time.perf_counter()
    try:
        model = version_converter.convert_version(onnx.load(str(f32)), 21)  # int4 DQ
        options: dict[str, object] = {}
        if calib_encoded is not None:
            rows = [{k: v[i:i + 1] for k, v in calib_encoded.items()}
                    for i in range(len(calib_encoded["input_ids"]))]
            options = {"dataset": nncf.Dataset(rows), "awq": True, "scale_estimation": True}
        compressed = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT4_ASYM,
                                           group_size=block, ratio=1.0,
                                           **options)
        onnx.save(compressed, str(out))
    except Exception as err:  # noqa: BLE001 (report why NNCF's path did not run)
        return f"NNCF {kind} b{block} did not run: {type(err).__name__}: {err}"
    return Variant(f"NNCF compress_weights INT4_ASYM {kind} b{block}", out,
                   time.perf_counter() - start)


def _with_accuracy_level(variant: Variant, level: int) -> Variant:
    """The same model with MatMulNBits' accuracy_level set: 4 lets ORT quantize A to int8
    per block inside the kernel (an integer dot product; no longer weight-only math)."""
    model = onnx.load(str(variant.path))
    for node in model.graph.node:
        if node.op_type == "MatMulNBits":
            node.attribute.append(onnx.helper.make_attribute("accuracy_level", level))
    out = variant.path.with_name(f"{variant.path.stem}_acc{level}.onnx")
    onnx.save(model, str(out))
    return Variant(f"{variant.label} accuracy_level={level}", out, variant.seconds)


def _add(variants: list[Variant], failures: list[str], made: Variant | str) -> None:
    if isinstance(made, Variant):
        variants.append(made)
    else:
        failures.append(made)


def _count(path: Path) -> str:
    ops = [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]
    text = f"{ops.count('MatMulNBits')} MatMulNBits, {ops.count('MatMul')} MatMul"
    if "DequantizeLinear" in ops:
        text += f", {ops.count('DequantizeLinear')} DequantizeLinear"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", default="32,64,128", help="block sizes (default 32,64,128)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per batch")
    parser.add_argument("--threads", type=int, default=2, help="ORT threads (default 2)")
    parser.add_argument("--work", help="folder for the models (default: a temporary one)")
    parser.add_argument("--no-ort-gptq", action="store_true", help="skip ORT's GPTQ")
    parser.add_argument("--no-speed", action="store_true", help="accuracy and size only")
    parser.add_argument("--nncf-only", action="store_true",
                        help="only NNCF's compress_weights rows beside lowbit's rtn and gptq "
                        "at the first block size")
    parser.add_argument("--markdown", help="also write the tables to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    blocks = [int(b) for b in args.blocks.split(",")]
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="w4_minilm_"))
    work.mkdir(parents=True, exist_ok=True)

    exported = work / "minilm.export.onnx"
    if not exported.exists():
        minilm.export_minilm(exported)
    f32 = work / "minilm.f32.onnx"
    lowbit.transform(exported, f32)
    calib_texts, eval_texts = minilm.split_sentences()
    calib = minilm.write_dataset(work / "calib.npz", calib_texts)
    encoded = minilm.tokenize(eval_texts)
    reference = minilm.embed(f32, encoded, threads=args.threads)

    variants: list[Variant] = []
    failures: list[str] = []
    first = blocks[0]
    if args.nncf_only:
        variants.append(_lowbit(work, f32, calib, "rtn", first))
        variants.append(_lowbit(work, f32, calib, "gptq", first))
        _add(variants, failures, _nncf(work, f32, first, None))
        _add(variants, failures, _nncf(work, f32, first, minilm.tokenize(calib_texts)))
        blocks = []
    for block in blocks:
        variants.append(_lowbit(work, f32, calib, "rtn", block))
        variants.append(_lowbit(work, f32, calib, "gptq", block))
        _add(variants, failures, _ort(work, f32, block, None))
    if blocks:
        variants.append(_lowbit(work, f32, calib, "rtn", first, symmetric=True))
        variants.append(_lowbit(work, f32, calib, "gptq", first, symmetric=True))
        variants.append(_lowbit(work, f32, calib, "gptq", first, act_order=True))
        variants.append(_with_accuracy_level(variants[0], 4))
    if blocks and not args.no_ort_gptq:
        _add(variants, failures, _ort(work, f32, first, minilm.tokenize(calib_texts)))

    lines = [(f"# W4 weight-only on all-MiniLM-L6-v2, {datetime.date.today()}, ORT "
             f"{ort.__version__}, 2 shared cores"), "",
             (f"{len(eval_texts)} evaluation sentences (seq 64), GPTQ calibration on "
             f"{len(calib_texts)} others"), "",
             "| variant | graph | file MB | embedding cos mean | cos min | quantize s |",
             "|---|---|---|---|---|---|",
             f"| F32 | {_count(f32)} | {f32.stat().st_size / 1e6:.1f} | 1.000000 | 1.000000 | |"]
    for variant in list(variants):
        try:
            cos = minilm.cosines(reference, minilm.embed(variant.path, encoded,
                                                         threads=args.threads))
        except Exception as err:  # noqa: BLE001 (a quantizer's model ORT cannot run)
            failures.append(f"{variant.label} does not run: {type(err).__name__}: "
                            f"{str(err).splitlines()[0][:200]}")
            variants.remove(variant)
            continue
        lines.append(f"| {variant.label} | {_count(variant.path)} | "
                     f"{variant.path.stat().st_size / 1e6:.1f} | {cos.mean():.6f} | "
                     f"{cos.min():.6f} | {variant.seconds:.1f} |")
        print(lines[-1], flush=True)
    lines += [f"- {failure}" for failure in failures]

    if not args.no_speed:
        timed = [f32] + [v.path for v in variants if v.label in
                         {f"lowbit rtn b{b}" for b in blocks or [first]} | {f"ORT rtn b{first}"}
                         or v.label.endswith("accuracy_level=4") or v.label.startswith("NNCF")]
        comparison = bench_models(timed, BenchSettings(batches=(1, 8), threads=args.threads,
                                                       repeats=args.repeats, warmup=3),
                                  progress=False)
        lines += ["", "| model | batch 1 ms | batch 8 ms | vs F32 b1 | vs F32 b8 |",
                  "|---|---|---|---|---|"]
        base = comparison.results[0]
        for result in comparison.results:
            b1, b8 = result.timing(1).median_ms, result.timing(8).median_ms
            lines.append(f"| {result.model} | {b1:.1f} | {b8:.1f} | "
                         f"{base.timing(1).median_ms / b1:.2f}x | "
                         f"{base.timing(8).median_ms / b8:.2f}x |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
