"""bench/paired_weights.py on the tiny transformer block: the figures it prints are real."""

import sys
from pathlib import Path

import numpy as np
import onnx

import lowbit
from tests.quantize.int8.tiny_transformer import tiny_block, token_samples

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import paired_weights


def test_the_bench_reports_pairs_and_errors_after_the_default_smoothing(tmp_path, capsys):
    src, data = tmp_path / "block.onnx", tmp_path / "x.npz"
    onnx.save(tiny_block(), src)
    samples = token_samples(6)
    np.savez(data, **{k: np.concatenate([s[k] for s in samples]) for k in samples[0]})
    lowbit.calibrate(src, data, output=tmp_path / "b.calib", progress=False)
    paired_weights.main([str(src), "--calibration-table", str(tmp_path / "b.calib"),
                         "--markdown", str(tmp_path / "r.md")])
    text = capsys.readouterr().out
    assert "SmoothQuant: α 0.8 from the table" in text and "6 MatMul weights" in text
    rows = {line.split("|")[1].strip(): float(line.split("|")[3].strip()[:-1])
            for line in text.splitlines() if line.startswith("| ") and "x |" in line}
    assert rows["full range"] == 1.0
    assert 0.5 < rows["paired"] < rows["7 bits"]
    assert (tmp_path / "r.md").read_text().startswith("### paired_weights")
