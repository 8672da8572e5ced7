"""GPTQ (Frantar et al., 2022): block-wise 4-bit weights that minimise the layer's output error.

    hessian = 2 * x.T @ x / len(x)        # x [rows, K]: the layer's inputs (see hessian.py)
    quant = gptq_quantize(w, hessian, block_size=32)          # w [K, N], the B of x @ B
    np.linalg.norm(x @ w - x @ quant.dequantize())            # below RTN's on the same x

Round-to-nearest quantizes each weight alone. GPTQ quantizes the K rows of B one at
a time and spreads each row's rounding error over the rows not yet quantized, in
proportion to how the inputs correlate (the inverse Hessian H⁻¹ of ||xB − xB̂||²,
H = 2·xᵀx), so the error in the output x·B̂ stays small even where each weight
moves. As in the paper: dampening adds ``damp`` × mean(diag H) to the diagonal, the
upper Cholesky factor of H⁻¹ gives the update weights, and updates to later rows are
applied lazily, ``lazy_rows`` rows at a time. Each block of ``block_size`` rows gets
its scale and zero point when its first row is reached, from the weights as updated
so far. With ``act_order`` rows are visited in decreasing diag(H) (the inputs with
most energy first) and the blocks' parameters are fixed beforehand from the original
weights ("static groups"), so the blocks stay contiguous in K as MatMulNBits needs.

An input that is always zero (diag H = 0) has no effect on the output: its row is
quantized as 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lowbit.errors import CalibrationError, UsageError
from lowbit.quantize.w4.blockwise import (
    BlockParams,
    BlockQuant,
    block_params,
    check_block_size,
    n_blocks,
)

DAMP = 0.01
LAZY_ROWS = 128


@dataclass(frozen=True)
class InverseHessian:
    """What GPTQ needs of one input's Hessian; every layer that reads the input shares it
    (a transformer's Q, K and V projections read the same tensor)."""

    upper: np.ndarray  # U [K, K] float32, H⁻¹ = UᵀU, rows and columns in visiting order
    order: np.ndarray  # the visiting order of K's rows
    dead: np.ndarray   # bool [K]: inputs that are always zero
    act_order: bool


def inverse_hessian(hessian: np.ndarray, *, damp: float = DAMP,
                    act_order: bool = False) -> InverseHessian:
    """Dampen H [K, K], choose the visiting order and factor H⁻¹ (in float64)."""
    if not damp > 0:
        raise UsageError(f"GPTQ dampening must be positive, got {damp}")
    h = np.array(hessian, dtype=np.float64)
    k = len(h)
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    order = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(k)
    if act_order:
        h = h[np.ix_(order, order)]
    h[np.diag_indices(k)] += damp * float(np.mean(np.diag(h)))
    upper = _upper_cholesky_of_inverse(h).astype(np.float32)
    return InverseHessian(upper, order, dead, act_order)


def gptq_quantize(w: np.ndarray, hessian: np.ndarray | InverseHessian, block_size: int, *,
                  symmetric: bool = False, act_order: bool = False, damp: float = DAMP,
                  lazy_rows: int = LAZY_ROWS) -> BlockQuant:
    """Quantize B [K, N] given H [K, K] of its inputs (or its ``inverse_hessian``, whose
    own act_order then applies); returns codes in B's own row order."""
    check_block_size(block_size)
    w = np.asarray(w, dtype=np.float32)
    k, n = w.shape
    if not isinstance(hessian, InverseHessian):
        if hessian.shape != (k, k):
            raise UsageError(f"GPTQ needs a [{k}, {k}] Hessian for a [{k}, {n}] weight, got "
                             f"{hessian.shape}")
        hessian = inverse_hessian(hessian, damp=damp, act_order=act_order)
    elif hessian.upper.shape != (k, k):
        raise UsageError(f"GPTQ needs a [{k}, {k}] Hessian for a [{k}, {n}] weight, got "
                         f"{hessian.upper.shape}")
    # GPTQ's frame: W [N, K] with the K columns quantized in turn (float32, as the paper's).
    weight = w.T.copy()
    weight[:, hessian.dead] = 0.0
    order, hinv = hessian.order, hessian.upper
    static: list[BlockParams] | None = None
    if hessian.act_order:
        static = [block_params(weight[:, s:s + block_size].T, symmetric)
                  for s in range(0, k, block_size)]
        weight = weight[:, order]

    codes = np.empty((n, k), np.uint8)  # in visiting order
    params: list[BlockParams | None] = [None] * n_blocks(k, block_size)
    # Parameters of a block are set at its first row, so lazy batches hold whole blocks.
    lazy = max(block_size, lazy_rows // block_size * block_size)
    current: BlockParams | None = None
    for i1 in range(0, k, lazy):
        i2 = min(i1 + lazy, k)
        chunk = weight[:, i1:i2].copy()
        errors = np.zeros_like(chunk)
        hinv_chunk = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            column = i1 + i
            if static is not None:
                current = static[order[column] // block_size]
            elif column % block_size == 0:
                current = block_params(chunk[:, i:i + block_size].T, symmetric)
                params[column // block_size] = current
            assert current is not None
            q = current.quantize(chunk[:, i])
            codes[:, column] = q
            error = ((chunk[:, i] - current.dequantize(q)) / hinv_chunk[i, i]).astype(
                np.float32)
            chunk[:, i:] -= np.outer(error, hinv_chunk[i, i:])
            errors[:, i] = error
        weight[:, i2:] -= errors @ hinv[i1:i2, i2:]

    if static is not None:
        restored = np.empty_like(codes)
        restored[:, order] = codes
        codes = restored
        params = list(static)
    scales = np.stack([p.scale for p in params if p is not None])
    zeros = np.stack([p.zero for p in params if p is not None])
    return BlockQuant(np.ascontiguousarray(codes.T), scales.astype(np.float32), zeros,
                      block_size, symmetric)


def _upper_cholesky_of_inverse(h: np.ndarray) -> np.ndarray:
    """U upper triangular with H⁻¹ = UᵀU; more dampening where H is not positive definite.

    With J the reversal permutation and L Lᵀ = J H J (one Cholesky), R = J L J is upper
    triangular and H = R Rᵀ, so H⁻¹ = R⁻ᵀ R⁻¹ and U = R⁻¹ = J L⁻¹ J: one factorization
    and one inverse, where chol(inv(H)) would take two of each."""
    eye = np.eye(len(h))
    extra = 0.0
    for _ in range(6):
        try:
            lower = np.linalg.cholesky(h[::-1, ::-1] + extra * eye)
            return np.triu(_invert_lower(lower)[::-1, ::-1])
        except np.linalg.LinAlgError:
            extra = max(extra * 10, 1e-6 * float(np.mean(np.diag(h))) + 1e-12)
    raise CalibrationError("GPTQ: the input Hessian is not positive definite even with "
                           "dampening (the calibration inputs of this layer are degenerate)")


def _invert_lower(lower: np.ndarray) -> np.ndarray:
    """L⁻¹ of a lower triangular L by halves, [[A, 0], [C, D]]⁻¹ = [[A⁻¹, 0], [−D⁻¹CA⁻¹, D⁻¹]]:
    matrix products instead of the general LU inverse (numpy has no triangular inverse)."""
    n = len(lower)
    if n <= 128:
        return np.linalg.inv(lower)
    half = n // 2
    a_inv = _invert_lower(lower[:half, :half])
    d_inv = _invert_lower(lower[half:, half:])
    out = np.zeros_like(lower)
    out[:half, :half] = a_inv
    out[half:, half:] = d_inv
    out[half:, :half] = -d_inv @ (lower[half:, :half] @ a_inv)
    return out
