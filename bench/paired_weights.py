"""How much of the 8th weight bit paired MatMul weights keep, on a real model.

    python bench/paired_weights.py /tmp/minilm_int8/minilm.f32.onnx \
        --calibration-table /tmp/minilm_int8/minilm.auto.calib --markdown result.md

For every MatMul with a constant 2-D weight (after deploy's default SmoothQuant when the
table has channel ranges, as deploy quantizes them), the weight is quantized per output
column three ways: 7 bits (±63, ORT's reduce_range), full range (±127, which overflows
the int16 pair sums of x86 CPUs without VNNI) and paired (±127 with every same-sign
pair of K rows 2i, 2i+1 limited to |q0 + q1| ≤ 128; lowbit.quantize.int8.params). The table
gives the share of pairs that overflow at full range and the summed squared weight
error of each, relative to full range.
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from lowbit.calibration.table import read_table
from lowbit.passes import canonicalize
from lowbit.quantize.int8.params import PAIR_LIMIT, quantize_weight, quantize_weight_paired
from lowbit.quantize.prepare.smoothquant import DEFAULT_ALPHA, smooth_from_table


def _weights(model: onnx.ModelProto) -> list[np.ndarray]:
    inits = {i.name: i for i in model.graph.initializer}
    return [numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
            for n in model.graph.node
            if n.op_type == "MatMul" and n.input[1] in inits and len(inits[n.input[1]].dims) == 2]


def _error(weight: np.ndarray, quant: object) -> float:
    q, scale = quant.q, quant.scale  # type: ignore[attr-defined]
    return float(np.square(q.astype(np.float64) * scale - weight).sum())


def _overflowing_pairs(q: np.ndarray) -> tuple[int, int]:
    q = q.astype(np.int64)
    if q.shape[0] % 2:
        q = np.concatenate([q, np.zeros((1, q.shape[1]), np.int64)])
    even, odd = q[0::2], q[1::2]
    bad = (np.sign(even) * np.sign(odd) > 0) & (np.abs(even + odd) > PAIR_LIMIT)
    return int(bad.sum()), int(bad.size)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("model", help="a float ONNX model")
    parser.add_argument("--calibration-table",
                        help="smooth first, as deploy does by default, from this table")
    parser.add_argument("--markdown", help="append the table to this file")
    args = parser.parse_args(argv)
    model, _ = canonicalize(onnx.load(args.model))
    smoothed = "no"
    if args.calibration_table:
        done = smooth_from_table(model, read_table(args.calibration_table), DEFAULT_ALPHA)
        if done is not None:
            model, smoothed = done[0].model, f"α {DEFAULT_ALPHA:g} from the table"
    weights = _weights(model)
    if not weights:
        raise SystemExit(f"{args.model}: no MatMul with a constant 2-D weight")
    errors = {"7 bits": 0.0, "full range": 0.0, "paired": 0.0}
    bad = total = 0
    for weight in weights:
        full = quantize_weight(weight, 1)
        errors["7 bits"] += _error(weight, quantize_weight(weight, 1, qmax=63))
        errors["full range"] += _error(weight, full)
        errors["paired"] += _error(weight, quantize_weight_paired(weight))
        b, t = _overflowing_pairs(full.q)
        bad, total = bad + b, total + t
    title = (f"### paired_weights {datetime.date.today()} — {Path(args.model).name}, "
             f"{len(weights)} MatMul weights, SmoothQuant: {smoothed}")
    pairs = (f"pairs of K rows that overflow at full range: {bad:,} of {total:,} "
             f"({100 * bad / total:.2f} %)")
    lines = [title, "", pairs, "",
             "| weights | squared error | vs full range |", "|---|---|---|"]
    lines += [f"| {name} | {err:.4g} | {err / errors['full range']:.3f}x |"
              for name, err in errors.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
