"""compare_layers: statuses, first failure, bounded memory, csv/plot/npz outputs."""

from __future__ import annotations

import csv
import dataclasses
import gc
import math
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from lowbit.analysis import layerwise
from lowbit.analysis.layerwise import (
    CSV_COLUMNS,
    LayerAccumulator,
    LayerComparer,
    LayerDiff,
    LayerReport,
    Status,
    compare_layers,
    write_csv,
)
from lowbit.analysis.metrics import cosine, euclidean_similarity, sqnr_db
from lowbit.analysis.pairing import TensorPair
from lowbit.analysis.plots import plot_bars, plot_layers
from lowbit.analysis.validate import Tolerance
from lowbit.errors import DatasetError, ModelError
from lowbit.passes import canonicalize
from lowbit.quantize.int8.qdq import quantize_qdq
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.runtime.memory import MemoryBudget
from tests.models import make_model, minmax_ranges, small_resnet

TOL = Tolerance(0.99, 0.90)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _samples(count: int, seed: int = 1) -> Iterator[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield {"input": rng.normal(size=(1, 3, 16, 16)).astype(np.float32)}


@pytest.fixture(scope="module")
def models() -> dict[str, onnx.ModelProto]:
    original = small_resnet()
    canonical, _ = canonicalize(original)
    feeds = {"input": np.concatenate([s["input"] for s in _samples(8, seed=0)])}
    quantized = quantize_qdq(canonical, minmax_ranges(canonical, feeds), QuantizeSettings()).model
    return {"original": original, "canonical": canonical, "quantized": quantized}


def test_original_vs_canonical_is_equal_or_close(models: dict[str, onnx.ModelProto]) -> None:
    report = compare_layers(models["original"], models["canonical"], _samples(4), TOL,
                            progress=False)
    assert report.samples == 4
    assert report.unpaired == 3  # the three pre-BN conv outputs
    assert len(report.diffs) == 12
    assert {d.status for d in report.diffs} <= {Status.EQUAL, Status.CLOSE}
    assert report.diffs[0].status is Status.EQUAL  # the graph input itself
    assert all(d.cosine > 1 - 1e-6 for d in report.diffs)  # float32 dots: ~1e-7
    assert report.passed and report.first_failure is None
    assert report.summary().startswith("12 compared, 12 passed, 0 failed, min cos ")


def test_quantized_model_is_similar_not_equal(models: dict[str, onnx.ModelProto]) -> None:
    report = compare_layers(models["original"], models["quantized"], _samples(3), TOL,
                            progress=False)
    assert report.passed
    by_name = {d.name: d for d in report.diffs}
    assert by_name["r0"].status is Status.SIMILAR
    assert by_name["r0"].test_tensor == "r0_dequantized"
    assert by_name["r0"].shape == (1, 16, 16, 16)
    assert 20.0 < by_name["logits"].sqnr_db < 80.0
    assert 0 < by_name["input"].max_abs_error < 0.5  # the input's own quantization error


def test_broken_middle_weight_is_first_failure(models: dict[str, onnx.ModelProto]) -> None:
    broken = onnx.ModelProto()
    broken.CopyFrom(models["quantized"])
    conv1 = next(n for n in broken.graph.node if n.op_type == "Conv" and n.input[0] == "p0_dequantized")
    weight_dq = next(n for n in broken.graph.node if n.output[0] == conv1.input[1])
    weight = next(i for i in broken.graph.initializer if i.name == weight_dq.input[0])
    values = onnx.numpy_helper.to_array(weight)
    assert values.dtype == np.int8
    weight.CopyFrom(onnx.numpy_helper.from_array(-values, weight.name))

    report = compare_layers(models["original"], broken, _samples(3), TOL, progress=False)
    failure = report.first_failure
    assert failure is not None
    assert failure.name == conv1.output[0] == "r1"
    assert failure.status is Status.FAILED
    index = report.diffs.index(failure)
    assert [d.name for d in report.diffs[:index]] == ["input", "r0", "p0"]
    assert all(d.passed for d in report.diffs[:index])
    assert not report.passed
    assert report.summary().split(", ")[2] != "0 failed"


def test_pooled_metrics_match_concatenated_samples() -> None:
    rng = np.random.default_rng(3)
    refs = [rng.normal(size=(2, 5)) for _ in range(4)]
    tests = [r + rng.normal(scale=0.1, size=r.shape) for r in refs]
    comparer = LayerComparer([TensorPair("t", "t", "Relu", 0)])
    for ref, out in zip(refs, tests, strict=True):
        comparer.add({"t": ref}, {"t": out})
    (diff,) = comparer.diffs(TOL)
    a, b = np.concatenate(refs), np.concatenate(tests)
    assert diff.cosine == pytest.approx(cosine(a, b), rel=1e-6)
    assert diff.euclid == pytest.approx(euclidean_similarity(a, b), rel=1e-6)
    assert diff.sqnr_db == pytest.approx(sqnr_db(a, b), rel=1e-6)
    assert diff.max_abs_error == pytest.approx(float(np.max(np.abs(a - b))))
    assert diff.shape == (2, 5)


@pytest.mark.parametrize(("test_offset", "expected"), [
    (0.0, Status.EQUAL), (1e-7, Status.CLOSE), (0.05, Status.SIMILAR), (5.0, Status.FAILED)])
def test_status_levels(test_offset: float, expected: Status) -> None:
    ref = np.linspace(0.5, 1.5, 32, dtype=np.float32)
    acc = LayerAccumulator()
    acc.add(ref, ref + np.float32(test_offset) * np.sign(np.sin(np.arange(32))).astype(np.float32))
    assert acc.status(TOL) is expected


def test_zero_tensors_are_equal_not_nan() -> None:
    acc = LayerAccumulator()
    acc.add(np.zeros(4), np.zeros(4))
    assert (acc.cosine(), acc.euclid(), acc.sqnr_db()) == (1.0, 1.0, math.inf)


def test_accumulators_do_not_grow_with_samples() -> None:
    pairs = [TensorPair("a", "a_dq", "Conv", 0), TensorPair("b", "b", "Relu", 1)]
    counts = []
    for n in (5, 50):
        comparer = LayerComparer(pairs)
        for sample in _samples(n):
            x = sample["input"]
            comparer.add({"a": x, "b": x}, {"a_dq": x * 1.01, "b": x})
        assert comparer.samples == n
        for acc in comparer.accumulators.values():
            for field in dataclasses.fields(acc):
                assert isinstance(getattr(acc, field.name), float | bool | tuple)
        counts.append(len(comparer.accumulators))
    assert counts == [2, 2]


def test_compare_layers_state_is_flat_in_samples(models: dict[str, onnx.ModelProto],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[int] = []

    class CountingAccumulator(LayerAccumulator):
        def __init__(self) -> None:
            super().__init__()
            created.append(1)

    monkeypatch.setattr(layerwise, "LayerAccumulator", CountingAccumulator)
    alive: list[weakref.ref[np.ndarray]] = []

    def watched(n: int) -> Iterator[dict[str, np.ndarray]]:
        for sample in _samples(n):
            alive.append(weakref.ref(sample["input"]))
            yield sample

    counts = []
    for n in (5, 50):
        created.clear()
        alive.clear()
        report = compare_layers(models["original"], models["quantized"], watched(n), TOL,
                                progress=False)
        assert report.samples == n
        counts.append(len(created))
        gc.collect()
        assert sum(ref() is not None for ref in alive) == 0  # no sample is kept
    assert counts == [len(report.diffs)] * 2


def test_csv_plot_and_dump(models: dict[str, onnx.ModelProto], tmp_path: Path) -> None:
    samples = list(_samples(2))
    report = compare_layers(models["original"], models["quantized"], samples, TOL,
                            dump_dir=tmp_path / "dump", progress=False)

    csv_path = write_csv(report, tmp_path / "layers.csv")
    rows = list(csv.reader(csv_path.open(encoding="utf-8")))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r[0] for r in rows[1:]] == [d.name for d in report.diffs]
    assert rows[2][2] == "1x16x16x16" and rows[2][7] == "SIMILAR"

    png = plot_layers(report, tmp_path / "layers.png")
    assert png.read_bytes()[:8] == PNG_MAGIC
    bars = plot_bars(["F32", "INT8"], [4.0, 1.5], "latency", "ms", tmp_path / "bars.png")
    assert bars.stat().st_size > 1000 and bars.read_bytes()[:8] == PNG_MAGIC

    expected = {f"{d.name}:{i}" for d in report.diffs for i in range(2)}
    with np.load(tmp_path / "dump" / "reference.npz") as ref, \
            np.load(tmp_path / "dump" / "test.npz") as test:
        assert set(ref.files) == expected == set(test.files)
        session = ort.InferenceSession(models["original"].SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        logits = session.run(["logits"], samples[1])[0]
        # the plain session fuses Conv+BN: equal up to float rounding
        np.testing.assert_allclose(ref["logits:1"], logits, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(ref["input:0"], samples[0]["input"])
        assert not np.array_equal(test["r0:0"], ref["r0:0"])  # quantized vs float
        assert test["r0:0"].shape == (1, 16, 16, 16)


def test_plot_handles_failures_and_many_layers(tmp_path: Path) -> None:
    diffs = tuple(
        dataclasses.replace(_diff(f"layer_{i}"), status=Status.FAILED if i % 7 == 3 else
                            Status.SIMILAR, sqnr_db=math.inf if i == 0 else 30.0 - i * 0.1)
        for i in range(120))
    report = LayerReport(diffs, 0, TOL, 1)
    assert report.first_failure is not None and report.first_failure.name == "layer_3"
    assert plot_layers(report, tmp_path / "many.png").stat().st_size > 1000


def _diff(name: str) -> LayerDiff:
    return LayerDiff(name, "Conv", (1, 4), 0.999, 0.95, 30.0, 0.1, Status.SIMILAR)


def test_errors_name_the_problem(models: dict[str, onnx.ModelProto]) -> None:
    with pytest.raises(DatasetError, match="no samples"):
        compare_layers(models["original"], models["quantized"], [], TOL, progress=False)
    with pytest.raises(DatasetError, match="input"):
        compare_layers(models["original"], models["quantized"], [{"x": np.zeros(3)}], TOL,
                       progress=False)


def test_models_without_shared_tensors_raise() -> None:
    def tiny(prefix: str) -> onnx.ModelProto:
        x = helper.make_tensor_value_info(f"{prefix}x", TensorProto.FLOAT, [1, 4])
        y = helper.make_tensor_value_info(f"{prefix}y", TensorProto.FLOAT, [1, 4])
        return make_model([helper.make_node("Relu", [f"{prefix}x"], [f"{prefix}y"])], [x], [y], [])

    with pytest.raises(ModelError, match="no float tensor"):
        compare_layers(tiny("a_"), tiny("b_"), [{"a_x": np.zeros((1, 4), np.float32)}], TOL,
                       progress=False)


def test_pairs_compared_in_passes_give_the_same_report(models: dict[str, onnx.ModelProto],
                                                       tmp_path: Path) -> None:
    """When one sample's exposed tensors exceed the memory budget, the samples run once per
    group of pairs (they must be re-iterable): the report and the dump are the same (to
    rounding: which DequantizeLinear outputs a run exposes decides which pairs ORT fuses)."""
    samples = list(_samples(3))
    one = compare_layers(models["original"], models["quantized"], samples, TOL,
                         progress=False, dump_dir=tmp_path / "one")
    several = compare_layers(models["original"], models["quantized"], samples, TOL,
                             progress=False, memory_budget=MemoryBudget(1),
                             dump_dir=tmp_path / "several")
    assert several.samples == one.samples == 3
    assert [d.name for d in several.diffs] == [d.name for d in one.diffs]
    for a, b in zip(one.diffs, several.diffs, strict=True):
        assert a.status == b.status and a.sqnr_db == pytest.approx(b.sqnr_db, rel=1e-5)
    with np.load(tmp_path / "one" / "test.npz") as x, \
            np.load(tmp_path / "several" / "test.npz") as y:
        assert sorted(x.files) == sorted(y.files)
        for key in x.files:
            np.testing.assert_allclose(x[key], y[key], rtol=1e-4, atol=1e-5)
