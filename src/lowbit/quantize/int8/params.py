"""Quantization math: scales, zero points, rounding.

    p = activation_params(-1.0, 3.0, "uint8")     # QuantParams(scale=0.0157, zero_point=64, ...)
    q = quantize(x, p); x_hat = dequantize(q, p)  # |x - x_hat| <= scale/2 inside the range
    w = quantize_weight(weight, axis=0)           # symmetric int8 per output channel
    w = quantize_weight_paired(matmul_weight)     # 8 bits, int16-safe pairs along K (non-VNNI)
    w = quantize_weight_on(settings.weight_grid("Conv"), conv_weight, 0, "conv")
    w = quantize_weight_clipped(conv_weight, axis=0, qmax=7)  # 4 bits, least-squares clip
    b = quantize_bias(bias, input_scale, w.scale) # int32, scale = s_in * s_w

Zero is always exactly representable: the range is widened to include 0 and the
zero point is an integer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QMIN_QMAX = {"uint8": (0, 255), "int8": (-128, 127)}
# A span this small has no float32 scale that resolves it.
_MIN_SPAN = 1e-30
WEIGHT_QMAX = 127  # symmetric weights use [-127, 127] so that -w is representable
# On x86 without VNNI, U8S8 kernels add the products of K rows 2i and 2i+1 in a
# saturating int16: 255·|q0 + q1| ≤ 32767 needs |q0 + q1| ≤ 128 (lowbit.runtime.ort).
PAIR_LIMIT = 128
# Column scales tried by quantize_weight_paired, as fractions of the full-range scale's qmax.
_REFITS = 2
_PAIRED_QMAX_STEPS = (127, 124, 120, 116, 112, 106, 100, 92, 84, 76, 63)
# On the 15 levels of a 4-bit grid the max-abs scale wastes most levels on a channel's
# few largest weights; quantize_weight_clipped tries these fractions of it. (EfficientNet-
# Lite0 W4A8, 200 DEV crops: 25.5 % agreement with F32 at max-abs, 44 % clipped. 8-bit
# grids gain nothing measurable and keep max-abs.)
_INT4_CLIP_RATIOS = np.linspace(0.3, 1.0, 36)


@dataclass(frozen=True)
class QuantParams:
    """Per-tensor affine parameters: x ≈ (q − zero_point) · scale."""

    scale: float
    zero_point: int
    dtype: str  # "uint8" | "int8"

    @property
    def qmin(self) -> int:
        return QMIN_QMAX[self.dtype][0]

    @property
    def qmax(self) -> int:
        return QMIN_QMAX[self.dtype][1]

    @property
    def rmin(self) -> float:
        return (self.qmin - self.zero_point) * self.scale

    @property
    def rmax(self) -> float:
        return (self.qmax - self.zero_point) * self.scale


@dataclass(frozen=True)
class WeightQuant:
    """A weight quantized symmetrically: q int8, scale per channel (or one), zero point 0."""

    q: np.ndarray
    scale: np.ndarray
    axis: int | None


def activation_params(rmin: float, rmax: float, dtype: str, *, symmetric: bool = False
                      ) -> QuantParams:
    """Affine parameters covering [rmin, rmax] widened to include 0.

    uint8 is asymmetric (zero point anywhere in 0..255); int8 with ``symmetric``
    uses zero point 0 and scale = max(|rmin|, |rmax|)/127.
    Raises ValueError for a non-finite or empty range: callers turn that into a
    reason for leaving the tensor float.
    """
    if not (np.isfinite(rmin) and np.isfinite(rmax)):
        raise ValueError("range is not finite")
    rmin, rmax = min(float(rmin), 0.0), max(float(rmax), 0.0)
    if rmax - rmin <= _MIN_SPAN:
        raise ValueError(f"range [{rmin:.3g}, {rmax:.3g}] is empty or too narrow (constant)")
    qmin, qmax = QMIN_QMAX[dtype]
    if symmetric:
        scale = max(-rmin, rmax) / (qmax if dtype == "int8" else (qmax - qmin) / 2)
        zero_point = 0 if dtype == "int8" else 128
        return QuantParams(float(np.float32(scale)), zero_point, dtype)
    scale = float(np.float32((rmax - rmin) / (qmax - qmin)))
    zero_point = int(np.clip(round(qmin - rmin / scale), qmin, qmax))
    return QuantParams(scale, zero_point, dtype)


def quantize(x: np.ndarray, params: QuantParams) -> np.ndarray:
    """Round half to even, as ONNX QuantizeLinear does, and saturate."""
    q = np.rint(np.asarray(x, np.float32) / np.float32(params.scale)) + params.zero_point
    return np.clip(q, params.qmin, params.qmax).astype(params.dtype)


def dequantize(q: np.ndarray, params: QuantParams) -> np.ndarray:
    return ((q.astype(np.int32) - params.zero_point) * np.float32(params.scale)).astype(np.float32)


def quantize_weight(weight: np.ndarray, axis: int | None,
                    min_scale: np.ndarray | float | None = None, *,
                    qmax: int = WEIGHT_QMAX) -> WeightQuant:
    """Symmetric int8 in [−qmax, qmax]: per channel along ``axis``, or per tensor when
    axis is None (qmax 63 is the reduced range of CPUs without VNNI).

    ``min_scale`` raises a channel's scale where its int32 bias would otherwise
    overflow (a channel of near-zero weights with a sizeable bias)."""
    w = np.asarray(weight, np.float32)
    if axis is None:
        absmax = np.array(np.abs(w).max() if w.size else 0.0, np.float32)
    else:
        reduce = tuple(d for d in range(w.ndim) if d != axis)
        absmax = np.abs(w).max(axis=reduce) if reduce else np.abs(w)
    # An all-zero channel quantizes to zeros with any scale; 1.0 keeps it finite.
    scale = np.where(absmax > 0, absmax / qmax, 1.0).astype(np.float32)
    if min_scale is not None:
        scale = np.maximum(scale, np.asarray(min_scale, np.float32)).astype(np.float32)
    shape = [1] * w.ndim
    if axis is not None:
        shape[axis] = -1
    q = np.clip(np.rint(w / scale.reshape(shape)), -qmax, qmax).astype(np.int8)
    return WeightQuant(q, scale, axis)


def quantize_weight_clipped(weight: np.ndarray, axis: int | None,
                            min_scale: np.ndarray | float | None = None, *,
                            qmax: int = 7) -> WeightQuant:
    """Symmetric in [−qmax, qmax] like quantize_weight, but each channel (or the tensor)
    takes the scale, among _INT4_CLIP_RATIOS of its max-abs one, with the least squared
    error: the weights beyond the clip saturate. ``min_scale`` still bounds each scale
    from below."""
    w = np.asarray(weight, np.float32)
    if axis is None:
        rows = w.reshape(1, -1)
    else:
        rows = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    absmax = np.abs(rows).max(axis=1) if rows.size else np.zeros(len(rows), np.float32)
    floor = None if min_scale is None else np.broadcast_to(
        np.asarray(min_scale, np.float32), absmax.shape)
    best_scale = np.where(absmax > 0, absmax / qmax, 1.0).astype(np.float32)
    best_error = np.full(len(rows), np.inf)
    for ratio in _INT4_CLIP_RATIOS:
        scale = np.where(absmax > 0, ratio * absmax / qmax, 1.0).astype(np.float32)
        if floor is not None:
            scale = np.maximum(scale, floor).astype(np.float32)
        q = np.clip(np.rint(rows / scale[:, None]), -qmax, qmax)
        error = np.sum(np.square(q * scale[:, None] - rows), axis=1)
        better = error < best_error
        best_scale = np.where(better, scale, best_scale).astype(np.float32)
        best_error = np.where(better, error, best_error)
    shape = [1] * w.ndim
    if axis is not None:
        shape[axis] = -1
        scale = best_scale
    else:
        scale = np.array(best_scale[0], np.float32)
    q = np.clip(np.rint(w / scale.reshape(shape)), -qmax, qmax).astype(np.int8)
    return WeightQuant(q, scale, axis)


def quantize_bias(bias: np.ndarray, input_scale: float, weight_scale: np.ndarray) -> np.ndarray:
    """int32 bias with scale input_scale · weight_scale (per channel), saturated."""
    scale = (np.float32(input_scale) * weight_scale.astype(np.float32)).astype(np.float32)
    q = np.rint(np.asarray(bias, np.float64) / scale.astype(np.float64))
    info = np.iinfo(np.int32)
    return np.clip(q, info.min, info.max).astype(np.int32)


def bias_scale(input_scale: float, weight_scale: np.ndarray) -> np.ndarray:
    return (np.float32(input_scale) * weight_scale.astype(np.float32)).astype(np.float32)


def bias_safe_weight_scale(bias: np.ndarray, input_scale: float) -> np.ndarray:
    """The smallest weight scale per channel for which bias / (s_in · s_w) fits int32
    with a 2x margin."""
    limit = float(np.iinfo(np.int32).max) / 2
    return (np.abs(np.asarray(bias, np.float64)) / (input_scale * limit)).astype(np.float32)


LAYOUTS = ("kn", "nk", "conv")
GRID_QMAX = {"full": WEIGHT_QMAX, "paired": WEIGHT_QMAX, "reduced": 63, "int4": 7}


def weight_kind(op_type: str, shape: tuple[int, ...], axis: int | None, group: int = 1
                ) -> tuple[str, str | None]:
    """What lowbit.quantize.int8.settings.QuantizeSettings.weight_grid needs to know of a weight:
    its kind ("MatMul", "Gemm", "Conv", "DepthwiseConv" or the op type) and, where the
    paired grid applies, its layout for quantize_weight_paired (None otherwise)."""
    if op_type == "MatMul" and len(shape) == 2 and axis == 1:
        return "MatMul", "kn"
    if op_type == "Gemm" and len(shape) == 2 and axis in (0, 1):
        return "Gemm", "kn" if axis == 1 else "nk"
    if op_type == "Conv" and len(shape) == 4 and axis == 0:  # 2-D, the layout probed
        if group > 1 and shape[1] == 1 and shape[0] == group:
            return "DepthwiseConv", None
        return "Conv", "conv"
    if op_type == "Conv":
        return f"Conv{len(shape) - 2}d", None  # 1-D / 3-D: not probed, 7 bits
    return op_type, None


def quantize_weight_on(grid: str, weight: np.ndarray, axis: int | None, layout: str | None,
                       min_scale: np.ndarray | float | None = None) -> WeightQuant:
    """A weight on ``grid`` ("full", "paired", "reduced", "int4"; see
    QuantizeSettings.weight_grid): paired where a layout and a per-channel axis allow it,
    else symmetric per channel (or per tensor) in ±GRID_QMAX[grid], max-abs on 8 and 7 bits,
    clipped for the least squared error on int4 (quantize_weight_clipped)."""
    if grid == "paired" and layout is not None and axis is not None:
        return quantize_weight_paired(weight, min_scale, layout=layout)
    if grid == "int4":
        return quantize_weight_clipped(weight, axis, min_scale, qmax=GRID_QMAX[grid])
    qmax = GRID_QMAX["reduced" if grid == "paired" else grid]
    return quantize_weight(weight, axis, min_scale, qmax=qmax)


def quantize_weight_paired(weight: np.ndarray, min_scale: np.ndarray | float | None = None, *,
                           layout: str = "kn", qmax: int = WEIGHT_QMAX,
                           limit: int = PAIR_LIMIT) -> WeightQuant:
    """Symmetric int8 per output channel such that every pair of K rows (2i, 2i+1) keeps
    |q[2i] + q[2i+1]| ≤ ``limit`` for each output channel. ``layout`` says where K is:
    "kn" a MatMul/Gemm weight ``[K, N]`` (scales along axis 1), "nk" a Gemm weight with
    transB ``[N, K]``, "conv" a Conv weight ``[O, I, kh, kw]`` whose K runs over kh, kw,
    then I, as x86 kernels lay it out (scales along axis 0 for both).

    That is the condition under which the uint8×int8 kernels of x86 CPUs without VNNI,
    which add such pairs of products in a saturating int16, stay exact for any uint8
    input (255 · 128 = 32640): an alternative to 7-bit weights that keeps the 8th bit
    for all but the rare same-sign pairs near the column maximum. A violating pair is
    moved to the nearest integer point with |q0 + q1| = ``limit`` (the projection of
    the unrounded values onto that line, rounded along it), and each column with such a
    pair takes the scale, among a few from the full-range one to the 7-bit one, with the
    least squared error after those projections; the other columns are exactly the
    full-range weights. Opposite-sign pairs cannot overflow and are left alone.
    """
    original = np.asarray(weight, np.float32)
    w = _as_kn(original, layout)
    k = w.shape[0]
    padded = np.concatenate([w, np.zeros((1, w.shape[1]), np.float32)]) if k % 2 else w
    absmax = np.abs(padded).max(axis=0) if padded.size else np.zeros(w.shape[1], np.float32)
    best_q: np.ndarray | None = None
    best_scale = np.ones(w.shape[1], np.float32)
    best_error = np.full(w.shape[1], np.inf)
    floor = None if min_scale is None else np.asarray(min_scale, np.float32)
    for steps in _PAIRED_QMAX_STEPS:
        scale = np.where(absmax > 0, absmax / min(steps, qmax), 1.0).astype(np.float32)
        if floor is not None:
            scale = np.maximum(scale, floor).astype(np.float32)
        q, moved_now = _paired_round(padded / scale, qmax, limit)
        if best_q is None:
            moved = moved_now
        elif _REFITS:
            # Projected pairs shrink: refit the scale to the integers (least squares,
            # s = <q, w> / <q, q>), then round and project again at that scale.
            for _ in range(_REFITS):
                norm = np.sum(q * q, axis=0)
                fitted = np.where(norm > 0, np.sum(q * padded, axis=0) / np.maximum(norm, 1),
                                  scale)
                scale = np.maximum(fitted, absmax / qmax).astype(np.float32)
                if floor is not None:
                    scale = np.maximum(scale, floor).astype(np.float32)
                q, _ = _paired_round(padded / scale, qmax, limit)
        target = padded / scale
        error = np.sum(np.square(q - target) * np.square(scale), axis=0)
        better = error < best_error
        if best_q is not None:  # a column no pair overflows at full range keeps that scale
            better &= moved
        if best_q is None:
            best_q = q
        else:
            best_q[:, better] = q[:, better]
        best_scale = np.where(better, scale, best_scale).astype(np.float32)
        best_error = np.where(better, error, best_error)
    assert best_q is not None
    q = _from_kn(best_q[:k].astype(np.int8), layout, original.shape)
    return WeightQuant(q, best_scale, 1 if layout == "kn" else 0)


def _as_kn(weight: np.ndarray, layout: str) -> np.ndarray:
    if layout == "kn" and weight.ndim == 2:
        return weight
    if layout == "nk" and weight.ndim == 2:
        return weight.T
    if layout == "conv" and weight.ndim >= 3:
        order = (*range(2, weight.ndim), 1, 0)  # [*kernel, I, O]
        return weight.transpose(order).reshape(-1, weight.shape[0])
    raise ValueError(f"no paired layout {layout!r} for a weight of shape {weight.shape}")


def _from_kn(q: np.ndarray, layout: str, shape: tuple[int, ...]) -> np.ndarray:
    if layout == "kn":
        return q
    if layout == "nk":
        return q.T
    kernel = shape[2:]
    return q.reshape(*kernel, shape[1], shape[0]).transpose(
        len(kernel) + 1, len(kernel), *range(len(kernel)))


def _paired_round(target: np.ndarray, qmax: int, limit: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Nearest integers in [−qmax, qmax], then every same-sign pair of rows (2i, 2i+1)
    whose magnitudes sum over ``limit`` projected onto |q0| + |q1| = ``limit``; also
    which columns had such a pair. ``target`` (w / scale) has an even number of rows."""
    return _project_pairs(np.clip(np.rint(target), -qmax, qmax), target, qmax, limit)


def _project_pairs(q: np.ndarray, target: np.ndarray, qmax: int, limit: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    t0, t1 = target[0::2], target[1::2]
    q0, q1 = q[0::2], q[1::2]
    sign = np.sign(q0)
    bad = (sign * np.sign(q1) > 0) & (np.abs(q0) + np.abs(q1) > limit)
    if np.any(bad):
        a0, a1 = np.abs(t0), np.abs(t1)
        # Continuous projection onto a0 + a1 = limit, kept inside [limit − qmax, qmax].
        p0 = np.clip(a0 - (a0 + a1 - limit) / 2, limit - qmax, qmax)
        r0 = np.rint(p0)
        q0[bad] = (sign * r0)[bad]
        q1[bad] = (sign * (limit - r0))[bad]
        q[0::2], q[1::2] = q0, q1
    return q, np.any(bad, axis=0)


def limit_pairs(quant: WeightQuant, weight: np.ndarray, layout: str, *,
                qmax: int = WEIGHT_QMAX, limit: int = PAIR_LIMIT) -> WeightQuant:
    """``quant`` (integers chosen another way, e.g. by AdaRound, with per-channel scales)
    with its overflowing same-sign pairs of K rows projected as quantize_weight_paired
    does; every other integer is kept."""
    w = _as_kn(np.asarray(weight, np.float32), layout)
    q = _as_kn(np.asarray(quant.q, np.float64), layout)
    target = w / quant.scale.reshape(1, -1)
    if q.shape[0] % 2:
        pad = np.zeros((1, q.shape[1]))
        q, target = np.concatenate([q, pad]), np.concatenate([target, pad])
    projected, _ = _project_pairs(q.copy(), target, qmax, limit)
    out = _from_kn(projected[:w.shape[0]].astype(np.int8), layout, np.shape(weight))
    return WeightQuant(out, quant.scale, quant.axis)
