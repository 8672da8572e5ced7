"""Both sides of every hardware branch, on any CPU: LOWBIT_FORCE_ISA (lowbit.runtime.isa)
forces the probes that choose the INT8 weight grids and OpenVINO's BF16 path, and each
grid is checked against a numpy reference of it; the real kernels are probed apart, and a
half that needs a kernel this CPU lacks is skipped saying which (``pytest -rs``).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lowbit.errors import UsageError
from lowbit.quantize.int8.qdq import quantize_qdq
from lowbit.quantize.int8.settings import QuantizeSettings
from lowbit.recipe.provenance import cpu_description
from lowbit.runtime.isa import ENV_VAR, ForcedIsa, parse_forced_isa
from lowbit.runtime.ort import (
    create_session,
    int8_saturates,
    probe_int8_saturates,
    probe_u8s8_layouts,
    u8s8_layouts,
)
from tests.models import init, make_model, minmax_ranges

KINDS = ("MatMul", "Gemm", "Conv", "DepthwiseConv")
PAIR_LIMIT = 128


def test_the_override_parses_and_refuses_what_it_does_not_know() -> None:
    assert parse_forced_isa("") == ForcedIsa() and ForcedIsa().empty
    assert parse_forced_isa(" vnni=0, bf16=1 ") == ForcedIsa(vnni=False, bf16=True)
    assert parse_forced_isa("pairs=MatMul+Conv").pairs == {"MatMul", "Conv"}
    assert parse_forced_isa("pairs=none").pairs == frozenset()
    for bad, message in (("avx=1", "KEY=VALUE with KEY one of vnni, bf16, pairs"),
                         ("vnni", "KEY=VALUE"), ("vnni=yes", "vnni must be 0 or 1"),
                         ("vnni=0,vnni=1", "vnni is given twice"),
                         ("pairs=Relu", "pairs takes none or")):
        with pytest.raises(UsageError, match=message):
            parse_forced_isa(bad)


@pytest.mark.parametrize(("forced", "saturates", "grids"), [
    ("vnni=1", False, ("full", "full", "full", "full")),
    ("vnni=0", True, ("paired", "paired", "paired", "full")),
    ("vnni=0,pairs=none", True, ("reduced", "reduced", "reduced", "reduced")),
    ("vnni=0,pairs=MatMul+DepthwiseConv", True, ("paired", "reduced", "reduced", "full")),
])
def test_forced_facts_choose_the_grids(monkeypatch, forced, saturates, grids) -> None:
    monkeypatch.setenv(ENV_VAR, forced)
    assert int8_saturates() is saturates
    assert tuple(QuantizeSettings().weight_grid(kind) for kind in KINDS) == grids
    assert QuantizeSettings().weight_qmax == (63 if saturates else 127)
    assert cpu_description("INT8")["forced_isa"] == forced
    monkeypatch.delenv(ENV_VAR)
    assert int8_saturates() is probe_int8_saturates()  # the real probe again
    assert u8s8_layouts() == probe_u8s8_layouts()


def _four_kind_model() -> onnx.ModelProto:
    """Conv 3×3 → depthwise Conv → pool → Gemm (transB) → MatMul, no biases. The Conv,
    Gemm and half the MatMul columns have positive weights, so same-sign pairs of K rows
    near a column's maximum overflow int16 at full range and the paired grid has to
    project them; the other MatMul columns keep their full-range integers."""
    rng = np.random.default_rng(3)
    weights = {"w_conv": np.abs(rng.standard_normal((8, 8, 3, 3))),
               "w_dw": rng.standard_normal((8, 1, 3, 3)),
               "w_gemm": np.abs(rng.standard_normal((16, 8))),  # [N, K]
               "w_mm": rng.standard_normal((16, 12)) + np.repeat([0.0, 2.0], 6)}
    nodes = [helper.make_node("Conv", ["x", "w_conv"], ["c"], name="conv", pads=[1] * 4),
             helper.make_node("Conv", ["c", "w_dw"], ["d"], name="dw", group=8, pads=[1] * 4),
             helper.make_node("GlobalAveragePool", ["d"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "w_gemm"], ["h"], name="fc", transB=1),
             helper.make_node("MatMul", ["h", "w_mm"], ["y"], name="mm")]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                            ["N", 8, 6, 6])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 12])],
                      [init(k, v.astype(np.float32)) for k, v in weights.items()])


# weight name -> (kind, how to lay it out as [K, N], which axis holds the channels)
WEIGHTS = {"w_conv": ("Conv", lambda w: w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])),
           "w_dw": ("DepthwiseConv", lambda w: w.reshape(w.shape[0], -1).T),
           "w_gemm": ("Gemm", lambda w: w.T),
           "w_mm": ("MatMul", lambda w: w)}


def _quantized(grid_override: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    model = _four_kind_model()
    x = np.random.default_rng(4).uniform(0, 1, (4, 8, 6, 6)).astype(np.float32)
    built = quantize_qdq(model, minmax_ranges(model, {"x": x}), QuantizeSettings()).model
    arrays = {i.name: numpy_helper.to_array(i) for i in built.graph.initializer}
    return {name: (arrays[f"{name}_quantized"].astype(np.int64),
                   arrays[f"{name}_scale"].astype(np.float64)) for name in WEIGHTS}


def _symmetric_reference(w_kn: np.ndarray, qmax: int) -> tuple[np.ndarray, np.ndarray]:
    """numpy: per output column, scale max|w| / qmax and q = round(w / scale)."""
    scale = np.abs(w_kn).max(axis=0) / qmax
    return np.clip(np.rint(w_kn / scale), -qmax, qmax), scale


def _paired_reference(w_kn: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """numpy, pair by pair: the nearest integers at ``scale``; a same-sign pair of rows
    (2i, 2i+1) with |q0| + |q1| > 128 goes to the nearest point of |q0| + |q1| = 128."""
    target = w_kn / scale
    if len(target) % 2:
        target = np.concatenate([target, np.zeros((1, target.shape[1]))])
    q = np.clip(np.rint(target), -127, 127)
    for i in range(0, len(q), 2):
        for j in range(q.shape[1]):
            a, b = q[i, j], q[i + 1, j]
            if a * b > 0 and abs(a) + abs(b) > PAIR_LIMIT:
                t0, t1 = abs(target[i, j]), abs(target[i + 1, j])
                first = np.rint(np.clip(t0 - (t0 + t1 - PAIR_LIMIT) / 2, 1, 127))
                q[i, j], q[i + 1, j] = np.sign(a) * first, np.sign(a) * (PAIR_LIMIT - first)
    return q[:len(w_kn)]


@pytest.mark.parametrize("forced", ["vnni=1", "vnni=0", "vnni=0,pairs=none"])
def test_each_grid_matches_its_numpy_reference(monkeypatch, forced) -> None:
    monkeypatch.setenv(ENV_VAR, forced)
    settings = QuantizeSettings()
    model = _four_kind_model()
    floats = {i.name: numpy_helper.to_array(i).astype(np.float64)
              for i in model.graph.initializer}
    columns = {"moved": 0, "kept": 0}  # paired columns with / without an overflowing pair
    for name, (q, scale) in _quantized(forced).items():
        kind, as_kn = WEIGHTS[name]
        grid = settings.weight_grid(kind)
        w_kn, q_kn = as_kn(floats[name]), as_kn(q)
        if grid in ("full", "reduced"):
            want_q, want_scale = _symmetric_reference(w_kn, 127 if grid == "full" else 63)
            np.testing.assert_allclose(scale, want_scale, rtol=1e-6, err_msg=name)
            np.testing.assert_array_equal(q_kn, want_q, err_msg=f"{name} on {grid}")
            continue
        assert grid == "paired"
        np.testing.assert_array_equal(q_kn, _paired_reference(w_kn, scale), err_msg=name)
        pairs = q_kn[0::2][:len(q_kn[1::2])] + q_kn[1::2]
        assert np.abs(pairs).max() <= PAIR_LIMIT and np.abs(q_kn).max() > 63, name
        full_q, full_scale = _symmetric_reference(w_kn, 127)
        fits = ~np.any((np.abs(full_q[0::2][:len(full_q[1::2])] + full_q[1::2])
                        > PAIR_LIMIT), axis=0)
        columns["kept"] += int(fits.sum())
        columns["moved"] += int((~fits).sum())
        np.testing.assert_allclose(scale[fits], full_scale[fits], rtol=1e-6)  # untouched
        seven_q, seven_scale = _symmetric_reference(w_kn, 63)
        paired_error = ((q_kn * scale - w_kn) ** 2).sum(axis=0)
        assert (paired_error <= ((seven_q * seven_scale - w_kn) ** 2).sum(axis=0)).all()
    if "paired" in (settings.weight_grid(kind) for kind in KINDS):
        assert columns["kept"] and columns["moved"], columns  # both kinds are exercised


def _worst_case(weight_range: str, kind: str) -> tuple[float, float]:
    """(ORT's fused answer, the dequantized weights' exact answer) for a layer whose
    uint8 inputs are all 255 and whose weights are all positive."""
    rng = np.random.default_rng(5)
    w = np.abs(rng.standard_normal((16, 64) if kind == "Gemm" else (64, 16)))
    node = helper.make_node("Gemm", ["x", "w"], ["y"], transB=1) if kind == "Gemm" \
        else helper.make_node("MatMul", ["x", "w"], ["y"])
    model = make_model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                              ["N", 64])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])],
                       [init("w", w.astype(np.float32))])
    x = np.ones((1, 64), np.float32)
    ranges = minmax_ranges(model, {"x": np.concatenate([x, 0 * x])})
    built = quantize_qdq(model, ranges, QuantizeSettings(weight_range=weight_range)).model
    arrays = {i.name: numpy_helper.to_array(i) for i in built.graph.initializer}
    q = arrays["w_quantized"].astype(np.float64)
    scale = arrays["w_scale"].astype(np.float64)
    dequantized = q * scale.reshape(-1, 1) if kind == "Gemm" else q * scale
    exact = (x.astype(np.float64) @ (dequantized.T if kind == "Gemm" else dequantized)).ravel()
    fused = create_session(built).run(None, {"x": x})[0].ravel()
    return float(np.abs(fused - exact).max() / np.abs(exact).max()), float(np.abs(exact).max())


def _kernel_half(half: str) -> None:
    """Skip, naming it, the half of a test that needs the U8S8 kernel this CPU lacks."""
    saturates = probe_int8_saturates()
    here = "saturating (x86 without VNNI)" if saturates else "exact (VNNI, AMX or non-x86)"
    if (half == "saturating") != saturates:
        pytest.skip(f"the {half}-kernel half could not run: ONNX Runtime's uint8×int8 "
                    f"kernels on this CPU are {here}")


@pytest.mark.parametrize("half", ["exact", "saturating"])
@pytest.mark.parametrize("kind", ["MatMul", "Gemm"])
def test_full_range_weights_on_the_real_kernel(half, kind) -> None:
    """The real probe predicts the real kernel: full-range weights are exact on an exact
    kernel and lose >2 % on a saturating one, whatever LOWBIT_FORCE_ISA says."""
    _kernel_half(half)
    error, _ = _worst_case("full", kind)
    assert (error > 0.02) is (half == "saturating"), error


@pytest.mark.parametrize("half", ["exact", "saturating"])
@pytest.mark.parametrize(("weight_range", "kind"), [("paired", "MatMul"), ("paired", "Gemm"),
                                                     ("reduced", "MatMul")])
def test_paired_and_7_bit_weights_are_exact_on_the_real_kernel(half, weight_range, kind):
    """Paired and 7-bit weights give the exact integer answer on both kinds of kernel;
    on a saturating one that is what they are for (full range is not: see above)."""
    _kernel_half(half)
    if half == "saturating" and kind not in probe_u8s8_layouts() and weight_range == "paired":
        pytest.skip(f"no probe confirmed the paired {kind} layout on this saturating CPU")
    error, _ = _worst_case(weight_range, kind)
    assert error < 1e-3, error


def _matmul_model(w: np.ndarray) -> onnx.ModelProto:
    return make_model([helper.make_node("MatMul", ["x", "w"], ["y"])],
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 32])],
                      [init("w", w)])


def _bf16(a: np.ndarray) -> np.ndarray:
    return a.astype(ml_dtypes.bfloat16).astype(np.float64)


@pytest.mark.parametrize("half", ["native BF16", "no BF16"])
def test_openvino_bf16_matches_a_numpy_reference_of_what_ran(monkeypatch, half) -> None:
    """BF16 asked of OpenVINO: with native kernels the output is bf16(x)·bf16(w) summed in
    F32 (numpy) and not the F32 answer; without them (the CPU's, or a forced bf16=0) it is
    the F32 answer and the runner says F32."""
    pytest.importorskip("openvino")
    from lowbit.runtime.backends import make_runner
    from lowbit.runtime.openvino import probe_bf16_native

    if half == "native BF16":
        if not probe_bf16_native():
            pytest.skip("the native-BF16 half could not run: OpenVINO has no BF16 kernels on "
                        "this CPU (no AVX512-BF16 or AMX-BF16)")
        monkeypatch.setenv(ENV_VAR, "bf16=1")
    else:
        monkeypatch.setenv(ENV_VAR, "bf16=0")
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 32)).astype(np.float32)
    x = rng.standard_normal((8, 64)).astype(np.float32)
    runner = make_runner(_matmul_model(w), backend="openvino", threads=1, precision="BF16")
    y = runner.run({"x": x})["y"].astype(np.float64)
    f32 = x.astype(np.float64) @ w.astype(np.float64)
    bf16 = _bf16(x) @ _bf16(w)
    assert np.abs(f32 - bf16).max() > 1e-2  # the two references differ measurably
    want, other = (bf16, f32) if half == "native BF16" else (f32, bf16)
    assert runner.precision_used == ("BF16" if half == "native BF16" else "F32")
    assert np.abs(y - want).max() < 1e-4, np.abs(y - want).max()
    assert np.abs(y - other).max() > 1e-2
