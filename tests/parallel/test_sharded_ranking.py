"""The qtable sensitivity ranking as shards of candidate ops: the same ranking as one
process (rows in the same order, metrics equal to float rounding), in this process for
every split and once on a pool of spawned workers through lowbit.qtable."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
import pytest

import lowbit
from lowbit.calibration import CalibrationSettings, collect_ranges, write_table
from lowbit.calibration.table import CalibrationTable
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.quantize.mixed.sensitivity import (
    SensitivityResult,
    candidate_ops,
    rank_sensitivity,
)
from lowbit.quantize.mixed.sharded import merge_rankings
from tests.models import small_resnet

SAMPLES = 6


@pytest.fixture(scope="module")
def setup() -> tuple[onnx.ModelProto, CalibrationTable, list[dict[str, np.ndarray]]]:
    model = small_resnet()
    rng = np.random.default_rng(2)
    feeds = [{"input": rng.normal(size=(1, 3, 16, 16)).astype(np.float32)}
             for _ in range(SAMPLES)]
    table = collect_ranges(model, feeds, CalibrationSettings(method="minmax"), progress=False)
    return model, table, feeds


def assert_same_ranking(got: SensitivityResult, want: SensitivityResult) -> None:
    assert [(r.order, r.name, r.op_type) for r in got.rows] == \
        [(r.order, r.name, r.op_type) for r in want.rows]
    for a, b in zip(got.rows, want.rows, strict=True):
        assert a.sqnr_db == pytest.approx(b.sqnr_db, rel=1e-5, abs=1e-6)
        assert a.cosine == pytest.approx(b.cosine, rel=1e-6)
    assert got.samples == want.samples


@pytest.mark.parametrize("bounds", [[0, None], [0, 3, None], [0, 1, 2, None],
                                    [0, 5, 6, None]])
def test_ranked_parts_merge_into_the_ranking(setup: tuple, bounds: list[int | None]) -> None:
    model, table, feeds = setup
    settings = QuantizeSettings()
    ops = candidate_ops(model, table.ranges, settings)
    assert len(ops) >= 7
    want = rank_sensitivity(model, table.ranges, settings, feeds)
    cuts = [len(ops) if b is None else b for b in bounds]
    parts = [rank_sensitivity(model, table.ranges, settings, feeds, candidates=ops[a:b])
             for a, b in itertools.pairwise(cuts)]
    got = merge_rankings(parts, ops)
    assert_same_ranking(got, want)
    # each part ran the F32 reference and the INT8 model once per sample: counted
    assert got.forward_passes == pytest.approx(
        want.forward_passes + 2 * SAMPLES * (len(parts) - 1), rel=1e-9)


def test_qtable_on_two_workers_writes_the_ranking_of_one(setup: tuple, tmp_path: Path
                                                         ) -> None:
    model, table, feeds = setup
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "d.npz", input=np.concatenate([f["input"] for f in feeds]))
    write_table(table, tmp_path / "m.calib")
    common = {"calibration_table": tmp_path / "m.calib", "num": 4}
    one = lowbit.qtable(tmp_path / "m.onnx", tmp_path / "d.npz", output=tmp_path / "one.qt",
                        **common)  # type: ignore[arg-type]
    two = lowbit.qtable(tmp_path / "m.onnx", tmp_path / "d.npz", output=tmp_path / "two.qt",
                        workers=2, **common)  # type: ignore[arg-type]
    assert one.sensitivity is not None and two.sensitivity is not None
    assert_same_ranking(two.sensitivity, one.sensitivity)
    assert two.sensitivity.samples == 4
    # with a target the search runs too, its pruning trials two at a time on the workers:
    # the same ops chosen, every step measured alike
    searched = [lowbit.qtable(tmp_path / "m.onnx", tmp_path / "d.npz",
                              output=tmp_path / f"s{w}.qt", target="cos=0.99999", workers=w,
                              **common)  # type: ignore[arg-type]
                for w in (1, 2)]
    assert searched[0].search is not None and searched[1].search is not None
    assert searched[0].qtable.precisions == searched[1].qtable.precisions
    steps = [[(s.added_ops, s.met) for s in r.search.path] for r in searched]  # type: ignore[union-attr]
    assert steps[0] == steps[1] and any(a.startswith("without ") for a in
                                        (s.action for s in searched[1].search.path))


@pytest.mark.parametrize(("convs", "channels", "cores", "workers"), [
    (20, 64, 2, 2),   # many builds, 20 x 64 x 64 x 9 x 4 B = 2.9 MiB of weights: one per core
    (20, 64, 1, 1),   # one core: nothing to run beside
    (8, 64, 2, 1),    # few candidate builds
    (20, 8, 2, 1),    # tiny weights: each build is quick
])
def test_the_ranking_takes_a_pool_by_default_where_its_builds_are_many(
        convs: int, channels: int, cores: int, workers: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from onnx import TensorProto, helper, numpy_helper

    from lowbit.parallel import plan

    monkeypatch.setattr(plan, "cores", lambda: cores)
    nodes, inits = [], []
    for i in range(convs):
        w = np.zeros((channels, channels, 3, 3), np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("Conv", [f"x{i}", f"w{i}"], [f"x{i + 1}"], name=f"c{i}"))
    graph = helper.make_graph(
        nodes, "chain",
        [helper.make_tensor_value_info("x0", TensorProto.FLOAT, [1, channels, 8, 8])],
        [helper.make_tensor_value_info(f"x{convs}", TensorProto.FLOAT, None)], inits)
    assert plan.ranking_workers(helper.make_model(graph)) == workers
