"""A tiny BERT-style encoder block built with onnx.helper, for the transformer INT8 tests.

    model = tiny_block()              # input_ids, attention_mask (int64 [1, S]) -> hidden [1, S, H]
    samples = token_samples(8)        # [{input_ids, attention_mask}], some padded
    linear_outliers_model()           # x [1, S, K] -> LayerNorm (γ with outlier channels) -> MatMul

The block is post-LN like BERT: embeddings Gather → LayerNorm → Q/K/V MatMul + bias →
heads (Reshape/Transpose) → Q·Kᵀ · 1/√d + (1 − mask)·finfo.min → Softmax → ·V → merge
heads → output MatMul + bias → residual Add → LayerNorm → FFN MatMul → GELU (Erf form)
→ MatMul → residual Add → LayerNorm.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEQ, HIDDEN, HEADS, FFN, VOCAB = 12, 32, 4, 64, 50
HEAD_DIM = HIDDEN // HEADS


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def tiny_block(seed: int = 0, outlier_channels: int = 3) -> onnx.ModelProto:
    """The encoder block; LayerNorm γ of ``outlier_channels`` channels is 8× larger (the
    outliers BERT's LayerNorm outputs have), so SmoothQuant has something to move."""
    rng = np.random.default_rng(seed)

    def weight(*shape: int, scale: float = 0.15) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    gamma = np.ones(HIDDEN, np.float32)
    gamma[:outlier_channels] = 8.0
    inits = [
        _init("emb", weight(VOCAB, HIDDEN, scale=1.0)),
        _init("ln0_g", gamma), _init("ln0_b", weight(HIDDEN, scale=0.05)),
        _init("ln1_g", gamma), _init("ln1_b", weight(HIDDEN, scale=0.05)),
        _init("ln2_g", np.ones(HIDDEN, np.float32)), _init("ln2_b", np.zeros(HIDDEN, np.float32)),
        _init("heads_shape", np.array([1, SEQ, HEADS, HEAD_DIM], np.int64)),
        _init("merge_shape", np.array([1, SEQ, HIDDEN], np.int64)),
        _init("one", np.array(1.0, np.float32)),
        _init("neg", np.array(np.finfo(np.float32).min, np.float32)),
        _init("inv_sqrt_d", np.array(1.0 / np.sqrt(HEAD_DIM), np.float32)),
        _init("sqrt2", np.array(np.sqrt(2.0), np.float32)),
        _init("half", np.array(0.5, np.float32)),
        _init("mask_axes", np.array([1, 2], np.int64)),
    ]
    for name, shape in (("wq", (HIDDEN, HIDDEN)), ("wk", (HIDDEN, HIDDEN)),
                        ("wv", (HIDDEN, HIDDEN)), ("wo", (HIDDEN, HIDDEN)),
                        ("w1", (HIDDEN, FFN)), ("w2", (FFN, HIDDEN))):
        inits.append(_init(name, weight(*shape)))
        inits.append(_init(f"b{name[1:]}", weight(shape[1], scale=0.05)))
    n = helper.make_node
    nodes = [
        n("Gather", ["emb", "input_ids"], ["x"], name="embed"),
        n("LayerNormalization", ["x", "ln0_g", "ln0_b"], ["h0"], name="ln0", axis=-1),
        # the mask: (1 - mask) * finfo.min, [1, 1, 1, S]
        n("Unsqueeze", ["attention_mask", "mask_axes"], ["mask4"], name="mask_unsqueeze"),
        n("Cast", ["mask4"], ["maskf"], name="mask_cast", to=TensorProto.FLOAT),
        n("Sub", ["one", "maskf"], ["inv_mask"], name="mask_sub"),
        n("Mul", ["inv_mask", "neg"], ["additive_mask"], name="mask_mul"),
    ]
    for p in ("q", "k", "v"):
        nodes += [n("MatMul", ["h0", f"w{p}"], [f"{p}_mm"], name=f"{p}_proj"),
                  n("Add", [f"{p}_mm", f"b{p}"], [f"{p}_b"], name=f"{p}_bias"),
                  n("Reshape", [f"{p}_b", "heads_shape"], [f"{p}_split"], name=f"{p}_split"),
                  n("Transpose", [f"{p}_split"], [f"{p}_heads"], name=f"{p}_heads",
                    perm=[0, 2, 3, 1] if p == "k" else [0, 2, 1, 3])]
    nodes += [
        n("MatMul", ["q_heads", "k_heads"], ["scores"], name="qk"),
        n("Mul", ["scores", "inv_sqrt_d"], ["scaled"], name="scale"),
        n("Add", ["scaled", "additive_mask"], ["masked"], name="add_mask"),
        n("Softmax", ["masked"], ["probs"], name="softmax", axis=-1),
        n("MatMul", ["probs", "v_heads"], ["context_heads"], name="pv"),
        n("Transpose", ["context_heads"], ["context_t"], name="merge_t", perm=[0, 2, 1, 3]),
        n("Reshape", ["context_t", "merge_shape"], ["context"], name="merge"),
        n("MatMul", ["context", "wo"], ["o_mm"], name="o_proj"),
        n("Add", ["o_mm", "bo"], ["o"], name="o_bias"),
        n("Add", ["h0", "o"], ["res1"], name="residual1"),
        n("LayerNormalization", ["res1", "ln1_g", "ln1_b"], ["h1"], name="ln1", axis=-1),
        n("MatMul", ["h1", "w1"], ["f1_mm"], name="ffn1"),
        n("Add", ["f1_mm", "b1"], ["f1"], name="ffn1_bias"),
        n("Div", ["f1", "sqrt2"], ["gelu_div"], name="gelu_div"),
        n("Erf", ["gelu_div"], ["gelu_erf"], name="gelu_erf"),
        n("Add", ["gelu_erf", "one"], ["gelu_add"], name="gelu_add"),
        n("Mul", ["f1", "gelu_add"], ["gelu_mul"], name="gelu_mul"),
        n("Mul", ["gelu_mul", "half"], ["gelu"], name="gelu_half"),
        n("MatMul", ["gelu", "w2"], ["f2_mm"], name="ffn2"),
        n("Add", ["f2_mm", "b2"], ["f2"], name="ffn2_bias"),
        n("Add", ["h1", "f2"], ["res2"], name="residual2"),
        n("LayerNormalization", ["res2", "ln2_g", "ln2_b"], ["hidden"], name="ln2", axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "tiny_block",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, SEQ]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, SEQ])],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, [1, SEQ, HIDDEN])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def token_samples(count: int, seed: int = 1) -> list[dict[str, np.ndarray]]:
    """Random token ids; every other sample is padded after a random length."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(count):
        ids = rng.integers(1, VOCAB, size=(1, SEQ)).astype(np.int64)
        mask = np.ones((1, SEQ), np.int64)
        if i % 2:
            length = int(rng.integers(3, SEQ))
            ids[0, length:] = 0
            mask[0, length:] = 0
        samples.append({"input_ids": ids, "attention_mask": mask})
    return samples


def stack(samples: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([s[k] for s in samples]) for k in samples[0]}


def linear_outliers_model(k: int = 64, n: int = 48, seq: int = 16, outliers: int = 4,
                          factor: float = 50.0, seed: int = 0, residual: bool = False
                          ) -> onnx.ModelProto:
    """x [1, seq, k] → LayerNorm whose γ makes ``outliers`` channels ``factor``× larger →
    MatMul [k, n]. With ``residual`` the LayerNorm output also feeds an Add (as BERT's
    post-LN residual does), so smoothing cannot fold into γ."""
    rng = np.random.default_rng(seed)
    gamma = np.ones(k, np.float32)
    gamma[:outliers] = factor
    inits = [_init("g", gamma), _init("b", np.zeros(k, np.float32)),
             _init("w", (rng.standard_normal((k, n)) * 0.1).astype(np.float32))]
    nodes = [helper.make_node("LayerNormalization", ["x", "g", "b"], ["h"], name="ln", axis=-1),
             helper.make_node("MatMul", ["h", "w"], ["y"], name="fc")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, seq, n])]
    if residual:
        nodes.append(helper.make_node("Add", ["h", "x"], ["r"], name="residual"))
        outputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, seq, k]))
    graph = helper.make_graph(nodes, "outliers",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                             [1, seq, k])],
                              outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model
