"""Fake quantization with learned scales (LSQ, Esser et al. 2020), on lowbit's grids.

    y = fake_quant(x, log_scale, zero_point=0, qmin=0, qmax=255)   # an activation, uint8
    w = fake_quant_weight(w, log_scale, axis=0, qmax=127)          # a weight, per channel
    w = fake_quant_weight(w, log_scale, axis=0, qmax=127, pairs="conv")   # paired grid

Both round half to even as ONNX QuantizeLinear does, saturate at the ends of the grid and
pass gradients straight through the rounding (so a value inside the range learns, one
outside does not, and the scale gets LSQ's gradient from autograd). Scales are learned
as their logarithm, which keeps them positive and lets Adam move them by relative steps.

``pairs`` (a layout of lowbit.quantize.int8.params.quantize_weight_paired: "kn", "nk",
"conv") applies the paired grid of CPUs without VNNI: every pair of K rows whose codes
would overflow the kernels' int16 sums is projected exactly as deploy's export does
(lowbit.quantize.int8.params.limit_pairs), the projection passed straight through.
"""

from __future__ import annotations

import numpy as np
import torch

from lowbit.quantize.int8.params import WeightQuant, limit_pairs


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """torch.round (half to even) forward, identity backward."""
    return x + (torch.round(x) - x).detach()


def fake_quant(x: torch.Tensor, log_scale: torch.Tensor, zero_point: float, qmin: int,
               qmax: int) -> torch.Tensor:
    """Per-tensor affine: (clamp(round(x / s) + z, qmin, qmax) − z) · s, by torch's fused
    LSQ kernel (one pass each way; x / s is computed as x · (1 / s), so a value exactly
    between two steps may round the other way than ONNX's division does)."""
    return torch._fake_quantize_learnable_per_tensor_affine(
        x, log_scale.exp().reshape(1), torch.tensor([float(zero_point)]), qmin, qmax, 1.0)


def weight_codes(weight: torch.Tensor, scale: torch.Tensor, qmax: int, pairs: str | None,
                 axis: int | None) -> torch.Tensor:
    """The integers of a symmetric weight on its grid (straight-through), as floats."""
    q = torch.clamp(round_ste(weight / scale), -qmax, qmax)
    if pairs is not None and axis is not None:
        with torch.no_grad():
            codes = q.detach().cpu().numpy().astype(np.int8)
            flat = scale.detach().cpu().numpy().reshape(-1).astype(np.float32)
            projected = limit_pairs(WeightQuant(codes, flat, axis),
                                    weight.detach().cpu().numpy(), pairs).q
        q = q + (torch.from_numpy(projected.astype(np.float32)).to(q.device) - q).detach()
    return q


def fake_quant_weight(weight: torch.Tensor, log_scale: torch.Tensor, axis: int | None,
                      qmax: int, pairs: str | None = None) -> torch.Tensor:
    """Symmetric weight quantization per channel along ``axis`` (or per tensor)."""
    if pairs is None:  # torch's fused kernels
        scale = log_scale.exp().reshape(-1)
        zero = torch.zeros_like(scale)
        if axis is None or scale.numel() == 1:
            return torch._fake_quantize_learnable_per_tensor_affine(
                weight, scale[:1], zero[:1], -qmax, qmax, 1.0)
        return torch._fake_quantize_learnable_per_channel_affine(
            weight, scale, zero, axis, -qmax, qmax, 1.0)
    scale = channel_view(log_scale.exp(), weight.dim(), axis)
    return weight_codes(weight, scale, qmax, pairs, axis) * scale


def channel_view(values: torch.Tensor, rank: int, axis: int | None) -> torch.Tensor:
    """Per-channel values shaped to broadcast along ``axis`` of a rank-``rank`` tensor."""
    if axis is None or values.numel() == 1:
        return values.reshape(())
    shape = [1] * rank
    shape[axis] = -1
    return values.reshape(shape)
