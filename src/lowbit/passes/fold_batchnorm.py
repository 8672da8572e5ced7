"""Fold inference-mode BatchNormalization into the Conv, ConvTranspose or Gemm before it.

    folded = fold_batchnorm(ir_model)   # number of BN nodes removed (pass "fold_batchnorm")

y = gamma·(conv(x) − mean)/sqrt(var + eps) + beta is a per-output-channel affine
map, so it folds into the producer's weight (scaled per output channel) and bias.
The folded node keeps the producer's node name and takes the BN output's name
(the rewrite driver's rule). Only folds when the producer's output feeds the BN
alone and its weights are constants.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from lowbit.passes.affine import scale_shift_producer
from lowbit.passes.registry import get_pass, register_rules
from lowbit.passes.rewrite import Match, Op, Replacement, Rule, constant

PRODUCERS = ("Conv", "ConvTranspose", "Gemm")


def _fold(m: Match) -> Replacement | None:
    bn = m.root
    if len(bn.outputs) > 1 and any(v.uses() or v.is_graph_output() for v in bn.outputs[1:]):
        return None  # training mode: running statistics are read
    if bn.attributes.get_int("training_mode", 0):
        return None
    params = [constant(v) for v in bn.inputs[1:5]]
    if len(params) != 4 or any(p is None for p in params):
        return None
    # float32 arithmetic, as ONNX Runtime computes an unfolded BatchNormalization
    gamma, beta, mean, var = (np.asarray(p, np.float32) for p in params if p is not None)
    eps = np.float32(bn.attributes.get_float("epsilon", 1e-5))
    scale = gamma / np.sqrt(var + eps)
    shift = beta - mean * scale
    return scale_shift_producer(m["producer"], bn.outputs[0], scale, shift, "bnfold")


register_rules(
    "fold_batchnorm", "BatchNormalization folded into the Conv/ConvTranspose/Gemm before it",
    [Rule(Op("BatchNormalization", inputs={0: Op(*PRODUCERS, name="producer")}), _fold)])


def fold_batchnorm(model: ir.Model) -> int:
    """Fold every foldable BatchNormalization; returns how many were folded."""
    return get_pass("fold_batchnorm").run(model)
