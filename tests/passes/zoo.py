"""A small zoo of models built with onnx.helper, for running every graph pass on each.

    for name, build in ZOO.items():
        model, feeds = build()

Each builder returns the model and random feeds for it. Between them the models hold
something for every pass to rewrite: Conv/ConvTranspose/Gemm + BatchNormalization,
Mul/Add by per-channel constants, Identity, Dropout, no-op Casts, shape subgraphs and
Reshape chains, Concat/Split pairs, duplicated subgraphs, Convs and MatMuls sharing
an input, a transformer-ish block.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper

from tests.models import init, make_model, small_resnet

Built = tuple[onnx.ModelProto, dict[str, np.ndarray]]


def vi(name: str, shape: list[int | str], dtype: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


class _Params:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.inits: list[onnx.TensorProto] = []

    def add(self, name: str, array: np.ndarray) -> str:
        self.inits.append(init(name, array))
        return name

    def normal(self, name: str, *shape: int, scale: float = 1.0) -> str:
        return self.add(name, (self.rng.normal(size=shape) * scale).astype(np.float32))

    def conv_weight(self, name: str, cout: int, cin: int, k: int) -> str:
        return self.normal(name, cout, cin, k, k, scale=float(np.sqrt(2.0 / (cin * k * k))))

    def bn(self, prefix: str, c: int) -> list[str]:
        rng = self.rng
        return [self.add(f"{prefix}_g", rng.uniform(0.5, 1.5, c).astype(np.float32)),
                self.add(f"{prefix}_b", rng.normal(0, 0.1, c).astype(np.float32)),
                self.add(f"{prefix}_m", rng.normal(0, 0.1, c).astype(np.float32)),
                self.add(f"{prefix}_v", rng.uniform(0.5, 1.5, c).astype(np.float32))]

    def ints(self, name: str, values: list[int]) -> str:
        return self.add(name, np.asarray(values, np.int64))

    def feed(self, *shape: int) -> np.ndarray:
        return self.rng.normal(size=shape).astype(np.float32)


def conv_bn_relu() -> Built:
    """Conv-BN-Relu twice (one Conv without bias), Identity and Dropout between, Gemm-BN head."""
    p = _Params(1)
    nodes = [
        helper.make_node("Conv", ["x", p.conv_weight("w0", 8, 3, 3), p.normal("b0", 8)], ["c0"],
                         pads=[1, 1, 1, 1], name="conv0"),
        helper.make_node("BatchNormalization", ["c0", *p.bn("bn0", 8)], ["n0"], name="bn0"),
        helper.make_node("Relu", ["n0"], ["r0"], name="relu0"),
        helper.make_node("Identity", ["r0"], ["i0"], name="identity"),
        helper.make_node("Conv", ["i0", p.conv_weight("w1", 8, 8, 3)], ["c1"],
                         pads=[1, 1, 1, 1], strides=[2, 2], name="conv1"),
        helper.make_node("BatchNormalization", ["c1", *p.bn("bn1", 8)], ["n1"], epsilon=1e-3,
                         name="bn1"),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("Dropout", ["r1"], ["d1"], name="dropout"),
        helper.make_node("GlobalAveragePool", ["d1"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", p.normal("fc_w", 5, 8), p.normal("fc_b", 5)], ["g"],
                         transB=1, name="fc"),
        helper.make_node("BatchNormalization", ["g", *p.bn("bn_fc", 5)], ["y"], name="bn_fc"),
    ]
    model = make_model(nodes, [vi("x", [2, 3, 8, 8])], [vi("y", [2, 5])], p.inits)
    return model, {"x": p.feed(2, 3, 8, 8)}


def residual_block() -> Built:
    """tests.models.small_resnet: stem, a residual block with BN, pooling, Gemm."""
    return small_resnet(seed=2), {"input": _Params(2).feed(2, 3, 16, 16)}


def depthwise_net() -> Built:
    """MobileNet-style: 1x1 expand, depthwise 3x3 (group = C), 1x1 project; per-channel Mul/Add
    after Convs (a Keras-style BN), a Pad before the depthwise Conv, ConvTranspose + BN."""
    p = _Params(3)
    c = 12
    scale = p.add("scale", p.rng.uniform(0.5, 1.5, (1, c, 1, 1)).astype(np.float32))
    shift = p.add("shift", p.rng.normal(0, 0.1, (c, 1, 1)).astype(np.float32))
    nodes = [
        helper.make_node("Conv", ["x", p.conv_weight("w_exp", c, 4, 1)], ["e"], name="expand"),
        helper.make_node("BatchNormalization", ["e", *p.bn("bn_e", c)], ["en"], name="bn_e"),
        helper.make_node("Clip", ["en", p.add("lo", np.array(0, np.float32)),
                                  p.add("hi", np.array(6, np.float32))], ["er"], name="relu6"),
        helper.make_node("Pad", ["er", p.ints("pads", [0, 0, 0, 0, 0, 0, 2, 2])], ["erp"],
                         name="same_pad"),  # TF-style "same": all the padding at the end
        helper.make_node("Conv", ["erp", p.conv_weight("w_dw", c, 1, 3), p.normal("b_dw", c)],
                         ["dw"], group=c, name="depthwise"),
        helper.make_node("Mul", ["dw", scale], ["dws"], name="dw_scale"),
        helper.make_node("Add", [shift, "dws"], ["dwa"], name="dw_shift"),
        helper.make_node("Relu", ["dwa"], ["dwr"], name="dw_relu"),
        helper.make_node("Conv", ["dwr", p.conv_weight("w_proj", 6, c, 1)], ["pr"],
                         name="project"),
        helper.make_node("Sub", ["pr", p.normal("sub_c", 6, 1, 1)], ["ps"], name="proj_sub"),
        helper.make_node("Div", ["ps", p.add("div_c", np.float32(2.0))], ["pd"], name="proj_div"),
        helper.make_node("ConvTranspose", ["pd", p.normal("w_up", 6, 2, 2, 2, scale=0.5)],
                         ["up"], strides=[2, 2], group=3, name="upsample"),
        helper.make_node("BatchNormalization", ["up", *p.bn("bn_up", 6)], ["y"], name="bn_up"),
    ]
    model = make_model(nodes, [vi("x", ["N", 4, 8, 8])], [vi("y", ["N", 6, 16, 16])], p.inits)
    return model, {"x": p.feed(2, 4, 8, 8)}


def mlp() -> Built:
    """Gemm and MatMul layers: MatMul scaled by a constant, a no-op Cast, Dropout, two MatMuls
    reading one input (horizontal fusion), a duplicated Relu·Mul chain (CSE)."""
    p = _Params(4)
    nodes = [
        helper.make_node("Gemm", ["x", p.normal("w0", 16, 10, scale=0.3), p.normal("b0", 16)],
                         ["h0"], transB=1, name="fc0"),
        helper.make_node("Mul", ["h0", p.normal("s0", 16)], ["h0s"], name="fc0_scale"),
        helper.make_node("Relu", ["h0s"], ["r0"], name="relu0"),
        helper.make_node("Cast", ["r0"], ["r0c"], to=TensorProto.FLOAT, name="noop_cast"),
        helper.make_node("Dropout", ["r0c", p.add("ratio", np.array(0.3, np.float32))], ["d0"],
                         name="dropout"),
        helper.make_node("MatMul", ["d0", p.normal("wa", 16, 8, scale=0.3)], ["ha"], name="mm_a"),
        helper.make_node("MatMul", ["d0", p.normal("wb", 16, 6, scale=0.3)], ["hb"], name="mm_b"),
        helper.make_node("Mul", ["ha", p.add("two", np.float32(2.0))], ["has"], name="mm_a_x2"),
        helper.make_node("Relu", ["hb"], ["rb1"], name="relu_b1"),
        helper.make_node("Relu", ["hb"], ["rb2"], name="relu_b2"),  # duplicate
        helper.make_node("Add", ["rb1", "rb2"], ["rb"], name="add_b"),
        helper.make_node("Concat", ["has", "rb"], ["cat"], axis=1, name="concat"),
        helper.make_node("Gemm", ["cat", p.normal("w2", 14, 3, scale=0.3)], ["g2"], name="fc2"),
        helper.make_node("Add", ["g2", p.normal("b2", 1, 3)], ["y"], name="fc2_bias"),
    ]
    model = make_model(nodes, [vi("x", ["N", 10])], [vi("y", ["N", 3])], p.inits)
    return model, {"x": p.feed(3, 10)}


def shape_subgraph() -> Built:
    """A static shape subgraph (Shape→Gather→Unsqueeze→Concat→Reshape), a Reshape chain, a
    Reshape to the input's own shape, a Constant node, Concat→Split with matching sizes, a
    Concat of one input and a Cast to the same type."""
    p = _Params(5)
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", p.add("i0", np.array(0, np.int64))], ["batch"],
                         axis=0, name="gather_batch"),
        helper.make_node("Unsqueeze", ["batch", p.ints("axes0", [0])], ["batch1"],
                         name="unsqueeze"),
        helper.make_node("Constant", [], ["minus1"], name="const_minus1",
                         value=helper.make_tensor("m1", TensorProto.INT64, [1], [-1])),
        helper.make_node("Concat", ["batch1", "minus1"], ["flat_shape"], axis=0,
                         name="concat_shape"),
        helper.make_node("Reshape", ["x", "flat_shape"], ["flat"], name="reshape_flat"),
        helper.make_node("Reshape", ["flat", p.ints("s_3d", [2, 6, 8])], ["r3"],
                         name="reshape_3d"),
        helper.make_node("Reshape", ["r3", p.ints("s_2d", [2, 48])], ["r2"],
                         name="reshape_2d"),  # a chain: r3 feeds only this
        helper.make_node("Reshape", ["r2", p.ints("s_same", [0, -1])], ["same"],
                         name="reshape_same"),
        helper.make_node("Cast", ["same"], ["same_c"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("MatMul", ["same_c", p.normal("w", 48, 6, scale=0.2)], ["h"],
                         name="matmul"),
        helper.make_node("Relu", ["h"], ["hr"], name="relu"),
        helper.make_node("Neg", ["h"], ["hn"], name="neg"),
        helper.make_node("Concat", ["hr", "hn"], ["cat"], axis=-1, name="concat"),
        helper.make_node("Split", ["cat", p.ints("sizes", [6, 6])], ["s0", "s1"], axis=1,
                         name="split"),
        helper.make_node("Concat", ["s0"], ["single"], axis=1, name="concat_one"),
        helper.make_node("Sub", ["single", "s1"], ["y"], name="sub"),
    ]
    model = make_model(nodes, [vi("x", [2, 3, 4, 4])], [vi("y", [2, 6])], p.inits)
    return model, {"x": p.feed(2, 3, 4, 4)}


def transformer_block() -> Built:
    """LayerNormalization, Q/K/V MatMuls reading one input, scaled dot-product attention with
    Reshape/Transpose, Softmax, output projection with bias Add, residual Add, Gelu-ish MLP."""
    p = _Params(6)
    seq, dim, heads = 5, 8, 2
    hd = dim // heads
    qkv_shape = p.ints("qkv_shape", [1, seq, heads, hd])
    nodes = [helper.make_node("LayerNormalization", ["x", p.add("ln_g", np.ones(dim, np.float32)),
                                                     p.normal("ln_b", dim, scale=0.1)], ["ln"],
                              axis=-1, name="ln")]
    for name in ("q", "k", "v"):
        nodes += [
            helper.make_node("MatMul", ["ln", p.normal(f"w_{name}", dim, dim, scale=0.3)],
                             [f"{name}_mm"], name=f"{name}_proj"),
            helper.make_node("Add", [f"{name}_mm", p.normal(f"b_{name}", dim, scale=0.1)],
                             [f"{name}_b"], name=f"{name}_bias"),
            helper.make_node("Reshape", [f"{name}_b", qkv_shape], [f"{name}_r"],
                             name=f"{name}_reshape"),
            helper.make_node("Transpose", [f"{name}_r"], [f"{name}_t"],
                             perm=[0, 2, 3, 1] if name == "k" else [0, 2, 1, 3],
                             name=f"{name}_transpose"),
        ]
    nodes += [
        helper.make_node("MatMul", ["q_t", "k_t"], ["scores"], name="scores"),
        helper.make_node("Mul", ["scores", p.add("inv_sqrt", np.float32(1 / np.sqrt(hd)))],
                         ["scaled"], name="scale"),
        helper.make_node("Softmax", ["scaled"], ["attn"], axis=-1, name="softmax"),
        helper.make_node("MatMul", ["attn", "v_t"], ["ctx"], name="context"),
        helper.make_node("Transpose", ["ctx"], ["ctx_t"], perm=[0, 2, 1, 3], name="ctx_t"),
        helper.make_node("Reshape", ["ctx_t", p.ints("merge", [1, seq, dim])], ["ctx_m"],
                         name="merge_heads"),
        helper.make_node("MatMul", ["ctx_m", p.normal("w_o", dim, dim, scale=0.3)], ["o"],
                         name="out_proj"),
        helper.make_node("Add", ["o", "x"], ["res"], name="residual"),
        helper.make_node("MatMul", ["res", p.normal("w_up", dim, 16, scale=0.3)], ["up"],
                         name="mlp_up"),
        helper.make_node("Sigmoid", ["up"], ["gate"], name="gate"),
        helper.make_node("Mul", ["up", "gate"], ["act"], name="silu"),
        helper.make_node("MatMul", ["act", p.normal("w_down", 16, dim, scale=0.3)], ["down"],
                         name="mlp_down"),
        helper.make_node("Add", ["down", "res"], ["y"], name="residual2"),
    ]
    model = make_model(nodes, [vi("x", [1, seq, dim])], [vi("y", [1, seq, dim])], p.inits)
    return model, {"x": p.feed(1, seq, dim)}


def inception_branches() -> Built:
    """Three 1x1 Convs (and two 3x3) reading one input, concatenated: horizontal fusion's case;
    a duplicated Conv (same weight value) for CSE."""
    p = _Params(7)
    w_dup = p.conv_weight("w_dup", 4, 6, 1)
    nodes = [
        helper.make_node("Conv", ["x", p.conv_weight("w_a", 4, 6, 1), p.normal("b_a", 4)],
                         ["a"], name="branch_a"),
        helper.make_node("Conv", ["x", p.conv_weight("w_b", 5, 6, 1)], ["b"], name="branch_b"),
        helper.make_node("Conv", ["x", w_dup], ["c"], name="branch_c"),
        helper.make_node("Conv", ["x", w_dup], ["c2"], name="branch_c_again"),
        helper.make_node("Add", ["c", "c2"], ["cc"], name="add_c"),
        helper.make_node("Conv", ["x", p.conv_weight("w_d", 3, 6, 3)], ["d"], pads=[1, 1, 1, 1],
                         name="branch_d"),
        helper.make_node("Conv", ["x", p.conv_weight("w_e", 2, 6, 3), p.normal("b_e", 2)], ["e"],
                         pads=[1, 1, 1, 1], name="branch_e"),
        helper.make_node("Concat", ["a", "b", "cc", "d", "e"], ["cat"], axis=1, name="concat"),
        helper.make_node("Relu", ["cat"], ["y"], name="relu"),
    ]
    model = make_model(nodes, [vi("x", ["N", 6, 6, 6])], [vi("y", ["N", 18, 6, 6])], p.inits)
    return model, {"x": p.feed(2, 6, 6, 6)}


ZOO: dict[str, Callable[[], Built]] = {
    "conv_bn_relu": conv_bn_relu,
    "residual_block": residual_block,
    "depthwise_net": depthwise_net,
    "mlp": mlp,
    "shape_subgraph": shape_subgraph,
    "transformer_block": transformer_block,
    "inception_branches": inception_branches,
}
