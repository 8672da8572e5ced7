"""Block-wise 4-bit weight quantization and ONNX Runtime's MatMulNBits packing.

    quant = quantize_blocks(w, block_size=32)          # w: float [K, N], the B of x @ B
    w_hat = quantize_blocks(w, 32).dequantize()         # |w − w_hat| ≤ scale/2 per element
    packed = pack_nbits(quant)                          # packed.b [N, n_blocks, block/2] uint8
    w_back = unpack_nbits(packed.b, packed.scales, packed.zeros, K=w.shape[0], N=w.shape[1],
                          block_size=32)                # == w_hat, read back from the packing

B is cut along K into blocks of ``block_size`` rows; each (block, column) pair has
its own scale and, when asymmetric, its own 4-bit zero point:

    w[k, n] ≈ (q[k, n] − zero[k // block, n]) · scale[k // block, n],  q in 0..15

Asymmetric (the default) spans each block's [min, max] widened to include 0 with
all 16 levels; symmetric uses zero point 8 and q − 8 in −7..7 (15 levels, scale
= max|w| / 7), which MatMulNBits takes without a zero-point input.

MatMulNBits (``com.microsoft``, bits=4) stores B transposed, one row per output
column n: B[n, block, byte] holds two consecutive K positions of that block, the
first in the low nibble, the second in the high nibble. A K that is not a multiple
of the block size is padded at the end of the last block with the zero point
(a dequantized 0), as ORT expects ceil(K / block) blocks. Scales are [N · n_blocks]
in (n, block) order; packed zero points are [N, ceil(n_blocks / 2)], two blocks per
byte in the same nibble order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lowbit.errors import UsageError

BITS = 4
LEVELS = 1 << BITS            # 16 codes, 0..15
SYMMETRIC_ZERO = 1 << (BITS - 1)  # 8: MatMulNBits' zero point when it has none
SYMMETRIC_QMAX = SYMMETRIC_ZERO - 1  # |q − 8| ≤ 7, so −w is representable as w is
BLOCK_SIZES = (16, 32, 64, 128, 256)


def check_block_size(block_size: int) -> None:
    if block_size not in BLOCK_SIZES:
        raise UsageError(f"block size {block_size} is not supported; MatMulNBits takes a power "
                         f"of two from 16 to 256: {', '.join(map(str, BLOCK_SIZES))}")


def n_blocks(k: int, block_size: int) -> int:
    return -(-k // block_size)


@dataclass(frozen=True)
class BlockQuant:
    """B [K, N] quantized in blocks along K: codes, and one scale and zero per block and column."""

    q: np.ndarray      # uint8 [K, N], codes 0..15
    scale: np.ndarray  # float32 [n_blocks, N]
    zero: np.ndarray   # uint8 [n_blocks, N]; all 8 when symmetric
    block_size: int
    symmetric: bool

    @property
    def shape(self) -> tuple[int, int]:
        k, n = self.q.shape
        return int(k), int(n)

    def dequantize(self) -> np.ndarray:
        """The float [K, N] weight that MatMulNBits computes with."""
        k = self.q.shape[0]
        rows = np.arange(k) // self.block_size
        return ((self.q.astype(np.float32) - self.zero[rows].astype(np.float32))
                * self.scale[rows]).astype(np.float32)


@dataclass(frozen=True)
class BlockParams:
    """Scale and zero point of one block row for every column: float32 [N], uint8 [N]."""

    scale: np.ndarray
    zero: np.ndarray

    def __post_init__(self) -> None:
        # GPTQ calls quantize/dequantize once per row of K: convert the zero point once.
        object.__setattr__(self, "_zero_float", self.zero.astype(np.float32))

    def quantize(self, w: np.ndarray) -> np.ndarray:
        """Codes of ``w`` ([..., N], broadcast against the columns), rounded to nearest."""
        q = np.rint(w / self.scale) + self._zero_float
        return np.clip(q, 0, LEVELS - 1).astype(np.uint8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.float32) - self._zero_float) * self.scale

    _zero_float: np.ndarray = field(init=False, repr=False, compare=False)


def block_params(block: np.ndarray, symmetric: bool) -> BlockParams:
    """Parameters for one block of rows, block [rows, N]: the range of each column."""
    block = np.asarray(block, dtype=np.float64)
    if symmetric:
        span = np.abs(block).max(axis=0) / SYMMETRIC_QMAX
        scale = np.where(span > 0, span, 1.0).astype(np.float32)
        return BlockParams(scale, np.full(block.shape[1], SYMMETRIC_ZERO, np.uint8))
    lo = np.minimum(block.min(axis=0), 0.0)
    hi = np.maximum(block.max(axis=0), 0.0)
    span = (hi - lo) / (LEVELS - 1)
    # A constant-zero column has no range: any scale gives q = zero → 0.
    scale = np.where(span > 0, span, 1.0).astype(np.float32)
    zero = np.clip(np.rint(-lo / scale), 0, LEVELS - 1).astype(np.uint8)
    return BlockParams(scale, zero)


def quantize_blocks(w: np.ndarray, block_size: int, *, symmetric: bool = False) -> BlockQuant:
    """Round-to-nearest (RTN) block quantization of B [K, N]."""
    check_block_size(block_size)
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2:
        raise UsageError(f"block quantization takes a 2-D weight [K, N], got shape {w.shape}")
    k, n = w.shape
    q = np.empty((k, n), np.uint8)
    scales = np.empty((n_blocks(k, block_size), n), np.float32)
    zeros = np.empty((n_blocks(k, block_size), n), np.uint8)
    for index, start in enumerate(range(0, k, block_size)):
        block = w[start:start + block_size]
        params = block_params(block, symmetric)
        q[start:start + block_size] = params.quantize(block)
        scales[index], zeros[index] = params.scale, params.zero
    return BlockQuant(q, scales, zeros, block_size, symmetric)


@dataclass(frozen=True)
class PackedNBits:
    """MatMulNBits' initializers: b [N, n_blocks, block/2] uint8, scales [N·n_blocks] float32,
    zeros [N, ceil(n_blocks/2)] uint8 (None when symmetric: MatMulNBits' default 8)."""

    b: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray | None
    k: int
    n: int
    block_size: int

    @property
    def nbytes(self) -> int:
        return self.b.nbytes + self.scales.nbytes + (0 if self.zeros is None else
                                                     self.zeros.nbytes)


def _pack_pairs(codes: np.ndarray) -> np.ndarray:
    """[..., 2m] codes 0..15 → [..., m] bytes, even positions in the low nibble."""
    return (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)


def _unpack_pairs(packed: np.ndarray) -> np.ndarray:
    out = np.empty((*packed.shape[:-1], packed.shape[-1] * 2), np.uint8)
    out[..., 0::2] = packed & 0x0F
    out[..., 1::2] = packed >> 4
    return out


def pack_nbits(quant: BlockQuant) -> PackedNBits:
    k, n = quant.shape
    blocks = n_blocks(k, quant.block_size)
    padded = np.empty((blocks * quant.block_size, n), np.uint8)
    padded[:k] = quant.q
    padded[k:] = quant.zero[-1]  # the padding dequantizes to 0
    # [K_pad, N] → [N, blocks, block]: one row per output column, K contiguous.
    per_column = padded.T.reshape(n, blocks, quant.block_size)
    b = _pack_pairs(per_column)
    scales = np.ascontiguousarray(quant.scale.T).reshape(-1).astype(np.float32)
    zeros = None
    if not quant.symmetric:
        zero_cols = np.zeros((n, blocks + blocks % 2), np.uint8)
        zero_cols[:, :blocks] = quant.zero.T
        zeros = _pack_pairs(zero_cols)
    return PackedNBits(b, scales, zeros, k, n, quant.block_size)


def unpack_nbits(b: np.ndarray, scales: np.ndarray, zeros: np.ndarray | None, *, K: int,
                 N: int, block_size: int) -> np.ndarray:
    """The float [K, N] weight a MatMulNBits node (bits=4) holds, from its initializers."""
    blocks = n_blocks(K, block_size)
    codes = _unpack_pairs(np.asarray(b, np.uint8).reshape(N, blocks, block_size // 2))
    scale = np.asarray(scales, np.float32).reshape(N, blocks)
    if zeros is None:
        zero = np.full((N, blocks), SYMMETRIC_ZERO, np.float32)
    else:
        zero = _unpack_pairs(np.asarray(zeros, np.uint8).reshape(N, -1))[:, :blocks].astype(
            np.float32)
    w = (codes.astype(np.float32) - zero[:, :, None]) * scale[:, :, None]
    return w.reshape(N, blocks * block_size)[:, :K].T.copy()
