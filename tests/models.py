"""Tiny models built with onnx.helper for tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def make_model(nodes, inputs, outputs, initializers, opset: int = OPSET,
               check: bool = True) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "test", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    if check:
        onnx.checker.check_model(model)
    return model


def init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def small_resnet(seed: int = 0, batch: int | str = "N") -> onnx.ModelProto:
    """Conv-BN-Relu stem, a residual block (BN, Add), max/global pooling, Flatten, Gemm."""
    rng = np.random.default_rng(seed)

    def conv_w(cout: int, cin: int, k: int) -> np.ndarray:
        return (rng.normal(size=(cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(
            np.float32)

    def bn(prefix: str, c: int) -> list[onnx.TensorProto]:
        return [init(f"{prefix}_g", rng.uniform(0.5, 1.5, c).astype(np.float32)),
                init(f"{prefix}_b", rng.normal(0, 0.1, c).astype(np.float32)),
                init(f"{prefix}_m", rng.normal(0, 0.1, c).astype(np.float32)),
                init(f"{prefix}_v", rng.uniform(0.5, 1.5, c).astype(np.float32))]

    nodes = [
        helper.make_node("Conv", ["input", "w0"], ["c0"], pads=[1, 1, 1, 1], name="stem_conv"),
        helper.make_node("BatchNormalization", ["c0", "bn0_g", "bn0_b", "bn0_m", "bn0_v"], ["b0"],
                         name="stem_bn"),
        helper.make_node("Relu", ["b0"], ["r0"], name="stem_relu"),
        helper.make_node("MaxPool", ["r0"], ["p0"], kernel_shape=[2, 2], strides=[2, 2],
                         name="pool"),
        helper.make_node("Conv", ["p0", "w1", "bias1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("BatchNormalization", ["c1", "bn1_g", "bn1_b", "bn1_m", "bn1_v"], ["b1"],
                         name="bn1"),
        helper.make_node("Relu", ["b1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("BatchNormalization", ["c2", "bn2_g", "bn2_b", "bn2_m", "bn2_v"], ["b2"],
                         name="bn2"),
        helper.make_node("Add", ["b2", "p0"], ["a"], name="residual_add"),
        helper.make_node("Relu", ["a"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1, name="fc"),
    ]
    inits = [init("w0", conv_w(16, 3, 3)), init("w1", conv_w(16, 16, 3)),
             init("bias1", rng.normal(0, 0.1, 16).astype(np.float32)),
             init("w2", conv_w(16, 16, 3)),
             init("fc_w", (rng.normal(size=(10, 16)) * 0.3).astype(np.float32)),
             init("fc_b", rng.normal(0, 0.1, 10).astype(np.float32))]
    inits += bn("bn0", 16) + bn("bn1", 16) + bn("bn2", 16)
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 16, 16])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])]
    return make_model(nodes, inputs, outputs, inits)


def minmax_ranges(model: onnx.ModelProto, feeds: dict[str, np.ndarray]):
    """Exact min/max of every float tensor, by running ORT with all of them exposed."""
    import onnxruntime as ort

    from lowbit.calibration.observers import TensorRange

    inferred = onnx.shape_inference.infer_shapes(model)
    exposed = onnx.ModelProto.FromString(inferred.SerializeToString())
    names = [o for n in exposed.graph.node for o in n.output if o]
    existing = {o.name for o in exposed.graph.output}
    for name in names:
        if name not in existing:
            exposed.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                                      None))
    sess = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    fetch = [o.name for o in sess.get_outputs()]
    values = dict(zip(fetch, sess.run(fetch, feeds), strict=True))
    values.update(feeds)
    ranges = {}
    for name, v in values.items():
        lo, hi = float(v.min()), float(v.max())
        ranges[name] = TensorRange(max(abs(lo), abs(hi)), lo, hi)
    return ranges
