"""The Python API keeps the CLI's contract: a wrong argument raises a LowbitError subclass
naming the Python keyword (not the CLI's flag), before anything is read or written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from lowbit import api
from lowbit.analysis.bench import BenchSettings, bench_models
from lowbit.errors import LowbitError
from tests.models import small_resnet


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("contract")
    onnx.save(small_resnet(), folder / "model.onnx")
    rng = np.random.default_rng(0)
    np.savez(folder / "x.npz", input=rng.normal(size=(6, 3, 16, 16)).astype(np.float32),
             label=rng.integers(0, 10, 6))
    api.calibrate(folder / "model.onnx", folder / "x.npz", output=folder / "model.calib",
                  num=4, check_samples=0, progress=False)
    return folder


def _cases(w: Path) -> dict[str, tuple[Callable[[], Any], str]]:
    m, x, table, out = w / "model.onnx", w / "x.npz", w / "model.calib", w / "out" / "o.onnx"
    return {
        "deploy(123)": (lambda: api.deploy(123, output=out, calibration_table=table),
                        "model must be a path"),
        "deploy(output=None)": (lambda: api.deploy(m, output=None, calibration_table=table),
                                "output must be a path"),
        "deploy(quantize=8)": (lambda: api.deploy(m, output=out, quantize=8,
                                                  calibration_table=table),
                               "quantize must be one of"),
        "deploy(tolerance=0.99)": (lambda: api.deploy(m, output=out, calibration_table=table,
                                                      test_input=x, tolerance=0.99),
                                   "tolerance must be"),
        "calibrate(num='10')": (lambda: api.calibrate(m, x, num="10", output=out),
                                "num must be a whole number"),
        "calibrate(percentile='99')": (lambda: api.calibrate(m, x, percentile="99",
                                                             output=out),
                                       "percentile must be a number"),
        "calibrate(bins=2e9)": (lambda: api.calibrate(m, x, bins=2_000_000_000, output=out),
                                "bins must be from 128 to 65536"),
        "calibrate(threads=-1)": (lambda: api.calibrate(m, x, threads=-1, output=out),
                                  "threads must be from 1 to 1024"),
        "calibrate(input_shapes='garbage')": (
            lambda: api.calibrate(m, x, input_shapes="garbage", output=out),
            "input_shapes must map input names to shapes"),
        "transform(input_shapes='garbage')": (
            lambda: api.transform(m, out, input_shapes="garbage"), "input_shapes must map"),
        "transform(123)": (lambda: api.transform(123, out), "model must be a path"),
        "compare(tolerance=0.9)": (lambda: api.compare(m, m, x, tolerance=0.9),
                                   "tolerance must be"),
        "evaluate(num='5')": (lambda: api.evaluate(m, x, num="5"), "num must be a whole"),
        "evaluate(metrics=5)": (lambda: api.evaluate(m, x, metrics=5), "metrics must be"),
        "report(batch='32')": (lambda: api.report([m], x, w / "out", batch="32"),
                               "batch must be a whole number"),
        "report(model)": (lambda: api.report(m, x, w / "out"), "variants must be a list"),
        "classify(top='5')": (lambda: api.classify(m, x, top="5"), "top must be a whole"),
        "qtable(num=0)": (lambda: api.qtable(m, x, calibration_table=table, output=out, num=0),
                          "num must be from 1"),
        "qtable(fallback='INT4')": (lambda: api.qtable(m, x, calibration_table=table,
                                                       output=out, fallback="INT4"),
                                    "fallback must be one of"),
        "bench(model)": (lambda: bench_models(m), "models must be a list"),
        "bench(batch 1e8)": (lambda: bench_models([m], BenchSettings(batches=(2**31 - 1,))),
                             "batches: batch 2147483647 of model.onnx"),
        "info(None)": (lambda: api.info(None), "model must be a path"),
        "quantize(num='5')": (lambda: api.quantize(m, x, w / "out", num="5"),
                              "num must be a whole"),
    }


CASES = list(_cases(Path(".")))


@pytest.mark.parametrize("case", CASES)
def test_a_wrong_argument_names_the_keyword_and_writes_nothing(work: Path, case: str) -> None:
    call, message = _cases(work)[case]
    before = sorted(p.relative_to(work) for p in work.rglob("*"))
    with pytest.raises(LowbitError, match=message) as raised:
        call()
    assert "--" not in str(raised.value), str(raised.value)  # a keyword, never a flag
    assert sorted(p.relative_to(work) for p in work.rglob("*")) == before
