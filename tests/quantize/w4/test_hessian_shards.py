"""GPTQ's statistics as shards merged into one set: the Hessians of one process up to
float rounding, and the same 4-bit weights.

Shards run in this process (InlineExecutor) with explicit sample ranges for every split
(1, 2 and 3 shards, uneven ones, a shard of one sample); one test runs deploy with
--workers 2 on spawned processes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from lowbit.data import open_dataset
from lowbit.data.refs import DatasetRef
from lowbit.data.samples import first_samples
from lowbit.errors import UsageError
from lowbit.io.model import input_specs
from lowbit.parallel import InlineExecutor, shards_from_bounds
from lowbit.quantize.w4 import hessian
from lowbit.quantize.w4.hessian import Hessians, HessianSums, collect_hessians
from lowbit.quantize.w4.hessian_shards import collect_hessians_sharded
from lowbit.quantize.w4.weight_only import (
    WeightOnlySettings,
    gptq_tensors,
    quantize_weight_only,
)
from tests.parallel.shard_models import SAMPLES, SPLITS
from tests.quantize.w4.test_weight_only import run_cli, smooth_mlp


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MLP (two MatMuls with constant weights, one computed) and 21 samples whose
    inputs correlate, as GPTQ's compensation needs to matter."""
    root = tmp_path_factory.mktemp("gptq_shards")
    onnx.save(smooth_mlp(seed=4), root / "mlp.onnx")
    rng = np.random.default_rng(5)
    basis = rng.normal(size=(6, 80)).astype(np.float32)
    x = rng.normal(size=(SAMPLES, 8, 6)).astype(np.float32) @ basis
    np.savez(root / "calib.npz", x=x + 0.05 * rng.normal(size=x.shape).astype(np.float32))
    return root


def one_process(files: Path) -> Hessians:
    model = smooth_mlp(seed=4)
    data = open_dataset(files / "calib.npz", input_specs(model))
    return collect_hessians(model, gptq_tensors(model), first_samples(data, SAMPLES),
                            progress=False)


def sharded(files: Path, bounds: list[int]) -> Hessians:
    model = smooth_mlp(seed=4)
    with InlineExecutor() as executor:
        return collect_hessians_sharded(model, gptq_tensors(model),
                                        DatasetRef(str(files / "calib.npz")), executor,
                                        progress=False,
                                        shards=shards_from_bounds(bounds))


def w4_weights(hessians: Hessians) -> dict[str, np.ndarray]:
    """The MatMulNBits initializers (codes, scales, zero points) GPTQ writes."""
    settings = WeightOnlySettings(block_size=16, algorithm="gptq")
    model = quantize_weight_only(smooth_mlp(seed=4), settings, hessians=hessians,
                                 progress=False).model
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer
            if "_w4" in i.name}


def assert_same_hessians(got: Hessians, want: Hessians, rtol: float) -> None:
    assert got.samples == want.samples == SAMPLES
    assert got.rows == want.rows  # rows of X: whole numbers, exact
    assert got.hessians.keys() == want.hessians.keys() == {"x", "t1"}
    for name, matrix in want.hessians.items():  # near-zero entries: relative to H's scale
        np.testing.assert_allclose(got.hessians[name], matrix, rtol=rtol,
                                   atol=rtol * float(np.abs(matrix).max()))


def assert_same_weights(got: Hessians, want: Hessians, scales_rtol: float = 0.0) -> None:
    """The same 4-bit codes and zero points; the scales bit for bit, or to ``scales_rtol``
    (a block's scale comes from weights GPTQ updated with H⁻¹)."""
    expected = w4_weights(want)
    assert len(expected) == 6  # 2 MatMuls x (codes, scales, zero points)
    actual = w4_weights(got)
    assert actual.keys() == expected.keys()
    for name, array in expected.items():
        if name.endswith("_scales") and scales_rtol:
            np.testing.assert_allclose(actual[name], array, rtol=scales_rtol, err_msg=name)
        else:
            assert np.array_equal(actual[name], array), name


_WANT: dict[str, Hessians] = {}


@pytest.mark.parametrize("split", SPLITS)
def test_merged_shards_equal_one_process(files: Path, split: str) -> None:
    """The probe runs one sample per run here (its cost is unknown to choose_batch), as
    in every shard: the float64 sums add the same float32 products in another order."""
    want = _WANT.setdefault("default", one_process(files))
    got = sharded(files, SPLITS[split])
    assert_same_hessians(got, want, rtol=1e-12)
    assert_same_weights(got, want)


@pytest.mark.parametrize("split", SPLITS)
def test_batches_cut_by_a_shard_boundary_agree_to_float32_rounding(
        files: Path, split: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With 8 samples per run, a shard boundary off a multiple of 8 regroups rows whose
    XᵀX ONNX Runtime sums in float32: H agrees to float32 rounding, and so do the
    scales; the codes and zero points are the same."""
    monkeypatch.setattr(hessian, "choose_batch", lambda *_, **__: 8)
    want = _WANT.setdefault("batched", one_process(files))
    got = sharded(files, SPLITS[split])
    assert_same_hessians(got, want, rtol=1e-6)
    assert_same_weights(got, want, scales_rtol=1e-5)


def test_sums_of_other_tensors_do_not_merge() -> None:
    with pytest.raises(UsageError, match="different tensors"):
        HessianSums(("x",)).merge(HessianSums(("y",)))


def test_hessians_must_cover_every_quantized_input(files: Path) -> None:
    partial = one_process(files)
    partial = Hessians({"x": partial.hessians["x"]}, partial.rows, partial.samples)
    with pytest.raises(UsageError, match="no Hessian of 't1'"):
        w4_weights(partial)


def test_cli_workers_2_writes_the_weights_of_one_process(files: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    """deploy --workers 2: the statistics on 2 spawned processes (3 shards of 8, 8 and 5
    samples), the MatMulNBits weights those of deploy without workers."""
    common = ["deploy", files / "mlp.onnx", "--quantize", "W4", "--algorithm", "gptq",
              "--calibration-data", files / "calib.npz", "--block-size", "16"]
    written = {}
    for name, extra in (("one", []), ("two", ["--workers", "2"])):
        out = tmp_path / f"{name}.onnx"
        code, text = run_cli([*common, "-o", out, *extra], capsys)
        assert code == 0, text
        assert f"gptq on {SAMPLES} samples" in text
        written[name] = {i.name: numpy_helper.to_array(i)
                         for i in onnx.load(str(out)).graph.initializer}
    assert written["two"].keys() == written["one"].keys()
    for name, array in written["one"].items():
        assert np.array_equal(written["two"][name], array), name


@pytest.mark.parametrize(("args", "message"), [
    (["--algorithm", "gptq", "--calibration-data", "DATA", "--workers", "0"],
     "--workers must be"),
    (["--workers", "2"], "--workers and --cluster run GPTQ's statistics"),
])
def test_cli_workers_mistakes_exit_2_and_write_nothing(files: Path, args: list[str],
                                                       message: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    out = tmp_path / "never.onnx"
    args = [str(files / "calib.npz") if a == "DATA" else a for a in args]
    code, text = run_cli(["deploy", files / "mlp.onnx", "--quantize", "W4", "-o", out,
                          *args], capsys)
    assert code == 2 and message in text, text
    assert len(text.strip().splitlines()) == 1 and "Traceback" not in text
    assert not out.exists()
