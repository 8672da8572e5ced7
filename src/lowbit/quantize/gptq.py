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

import numpy as np

from lowbit.errors import CalibrationError, UsageError
from lowbit.quantize.blockwise import (
    BlockParams,
    BlockQuant,
    block_params,
    check_block_size,
    n_blocks,
)

DAMP = 0.01
LAZY_ROWS = 128


def gptq_quantize(w: np.ndarray, hessian: np.ndarray, block_size: int, *,
                  symmetric: bool = False, act_order: bool = False, damp: float = DAMP,
                  lazy_rows: int = LAZY_ROWS) -> BlockQuant:
    """Quantize B [K, N] given H [K, K] of its inputs; returns codes in B's own row order."""
    check_block_size(block_size)
    w = np.asarray(w, dtype=np.float64)
    k, n = w.shape
    if hessian.shape != (k, k):
        raise UsageError(f"GPTQ needs a [{k}, {k}] Hessian for a [{k}, {n}] weight, got "
                         f"{hessian.shape}")
    if not damp > 0:
        raise UsageError(f"GPTQ dampening must be positive, got {damp}")
    # GPTQ's frame: W [N, K] with the K columns quantized in turn.
    weight = w.T.copy()
    h = np.array(hessian, dtype=np.float64)
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    weight[:, dead] = 0.0

    static: list[BlockParams] | None = None
    order = np.arange(k)
    if act_order:
        static = [block_params(weight[:, s:s + block_size].T, symmetric)
                  for s in range(0, k, block_size)]
        order = np.argsort(-np.diag(h), kind="stable")
        weight = weight[:, order]
        h = h[np.ix_(order, order)]
    h[np.diag_indices(k)] += damp * float(np.mean(np.diag(h)))
    hinv = _upper_cholesky_of_inverse(h)

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
            error = (chunk[:, i] - current.dequantize(q)) / hinv_chunk[i, i]
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
    """U upper triangular with H⁻¹ = UᵀU; more dampening where H is not positive definite."""
    eye = np.eye(len(h))
    extra = 0.0
    for _ in range(6):
        try:
            lower = np.linalg.cholesky(h + extra * eye)
            inverse = np.linalg.inv(lower)
            hinv = inverse.T @ inverse  # (L Lᵀ)⁻¹
            return np.linalg.cholesky(hinv).T
        except np.linalg.LinAlgError:
            extra = max(extra * 10, 1e-6 * float(np.mean(np.diag(h))) + 1e-12)
    raise CalibrationError("GPTQ: the input Hessian is not positive definite even with dampening "
                     "(the calibration inputs of this layer are degenerate)")
