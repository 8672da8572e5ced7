"""Standard ImageNet models built with onnx.helper, random weights, for the benchmarks.

    from models import resnet18, mobilenet_v2, save
    save(resnet18(), "resnet18.onnx")          # input "input" [N,3,224,224] -> "logits" [N,1000]
    save(mobilenet_v2(batch=1), "mbv2.onnx")   # a fixed batch instead of the dynamic "N"
    images = photo_crops(200, seed=0)          # (200,3,224,224) crops of real photos

Weights are He-initialised with a fixed numpy seed; BatchNormalization stays in
the graph (lowbit transform folds it) with random but plausible gamma, beta,
mean and variance, and the last BN of every residual branch gets a small gamma,
so activations stay of order one through the whole network. Speed, not accuracy,
is what these models are for; the layer shapes are the published ones.

Run it to write both models and print their output statistics:

    python bench/models.py --out-dir /tmp/models
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # what opset 17 needs; newer IR versions are refused by older ORT builds
SEED = 0


class _Builder:
    """Accumulates nodes and initializers; each layer returns its output tensor name."""

    def __init__(self, seed: int = SEED) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def _name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}_{self.count}"

    def _init(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def conv(self, x: str, c_in: int, c_out: int, k: int, stride: int = 1,
             group: int = 1) -> str:
        name = self._name("conv")
        fan_in = (c_in // group) * k * k
        weight = self.rng.standard_normal((c_out, c_in // group, k, k)) * np.sqrt(2.0 / fan_in)
        self._init(f"{name}.weight", weight)
        pad = k // 2
        self.nodes.append(helper.make_node(
            "Conv", [x, f"{name}.weight"], [name], name=name, kernel_shape=[k, k],
            strides=[stride, stride], pads=[pad] * 4, group=group))
        return name

    def bn(self, x: str, channels: int, gamma_range: tuple[float, float] = (0.7, 1.2)) -> str:
        name = self._name("bn")
        rng = self.rng
        self._init(f"{name}.gamma", rng.uniform(*gamma_range, channels))
        self._init(f"{name}.beta", rng.normal(0.0, 0.1, channels))
        self._init(f"{name}.mean", rng.normal(0.0, 0.1, channels))
        self._init(f"{name}.var", rng.uniform(0.7, 1.5, channels))
        self.nodes.append(helper.make_node(
            "BatchNormalization",
            [x, f"{name}.gamma", f"{name}.beta", f"{name}.mean", f"{name}.var"], [name],
            name=name, epsilon=1e-5))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs: Any) -> str:
        name = self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name

    def relu6(self, x: str) -> str:
        if "relu6.min" not in {i.name for i in self.inits}:
            self.inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "relu6.min"))
            self.inits.append(numpy_helper.from_array(np.array(6.0, np.float32), "relu6.max"))
        return self.op("Clip", [x, "relu6.min", "relu6.max"])

    def classifier(self, x: str, c_in: int, classes: int = 1000) -> str:
        pooled = self.op("GlobalAveragePool", [x])
        flat = self.op("Flatten", [pooled], axis=1)
        weight = self.rng.standard_normal((classes, c_in)) * np.sqrt(1.0 / c_in)
        self._init("fc.weight", weight)
        self._init("fc.bias", np.zeros(classes))
        self.nodes.append(helper.make_node("Gemm", [flat, "fc.weight", "fc.bias"], ["logits"],
                                           name="fc", transB=1))
        return "logits"

    def model(self, name: str, batch: int | str, classes: int = 1000) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 224, 224])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
            self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="lowbit-bench")
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        return model


def resnet18(batch: int | str = "N") -> onnx.ModelProto:
    """ResNet-18 (He et al. 2015, torchvision layout): 11.7 M parameters, 1.8 GFLOPs."""
    b = _Builder()
    x = b.op("Relu", [b.bn(b.conv("input", 3, 64, 7, stride=2), 64)])
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c_in = 64
    for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        x = _basic_block(b, x, c_in, c_out, stride)
        x = _basic_block(b, x, c_out, c_out, 1)
        c_in = c_out
    b.classifier(x, 512)
    return b.model("resnet18", batch)


def _basic_block(b: _Builder, x: str, c_in: int, c_out: int, stride: int) -> str:
    y = b.op("Relu", [b.bn(b.conv(x, c_in, c_out, 3, stride), c_out)])
    y = b.bn(b.conv(y, c_out, c_out, 3), c_out, gamma_range=(0.2, 0.5))
    shortcut = x
    if stride != 1 or c_in != c_out:
        shortcut = b.bn(b.conv(x, c_in, c_out, 1, stride), c_out)
    return b.op("Relu", [b.op("Add", [y, shortcut])])


# (expansion t, output channels c, repeats n, first stride s), from the MobileNetV2 paper.
_MOBILENET_V2_SETTINGS = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)


def mobilenet_v2(batch: int | str = "N") -> onnx.ModelProto:
    """MobileNetV2 (Sandler et al. 2018, width 1.0): 3.5 M parameters, 0.3 GFLOPs."""
    b = _Builder()
    x = b.relu6(b.bn(b.conv("input", 3, 32, 3, stride=2), 32))
    c_in = 32
    for t, c, n, s in _MOBILENET_V2_SETTINGS:
        for i in range(n):
            x = _inverted_residual(b, x, c_in, c, s if i == 0 else 1, t)
            c_in = c
    x = b.relu6(b.bn(b.conv(x, c_in, 1280, 1), 1280))
    b.classifier(x, 1280)
    return b.model("mobilenet_v2", batch)


def _inverted_residual(b: _Builder, x: str, c_in: int, c_out: int, stride: int,
                       expand: int) -> str:
    hidden = c_in * expand
    y = x
    if expand != 1:
        y = b.relu6(b.bn(b.conv(y, c_in, hidden, 1), hidden))
    y = b.relu6(b.bn(b.conv(y, hidden, hidden, 3, stride, group=hidden), hidden))
    residual = stride == 1 and c_in == c_out
    # Linear bottleneck; damped where it is added onto the shortcut.
    y = b.bn(b.conv(y, hidden, c_out, 1), c_out,
             gamma_range=(0.2, 0.5) if residual else (0.7, 1.2))
    return b.op("Add", [x, y]) if residual else y


IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def photo_crops(count: int, seed: int, size: int = 224, *, split: str = "dev") -> np.ndarray:
    """``count`` random crops/flips of real photos, ImageNet-normalised, NCHW float32.

    Random normal images give activation ranges no real input produces; crops of
    photographs give plausible ones. The photos are one side of bench/splits.py's split
    by photo: "dev" (the default: calibration, tuning) or "report" (held-out figures). A
    random area 10-100 %, aspect 3:4-4:3, resized to ``size`` (bilinear), flipped half
    the time.
    """
    import sys

    from PIL import Image

    sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when loaded by path
    from splits import load_image, split_named

    photos = [load_image(name) for name in split_named(split).photos]
    rng = np.random.default_rng(seed)
    out = np.empty((count, 3, size, size), np.float32)
    for i in range(count):
        photo = photos[rng.integers(len(photos))]
        crop = _random_crop(photo, rng)
        image = Image.fromarray(crop).resize((size, size), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, np.float32) / 255.0
        if rng.random() < 0.5:
            pixels = pixels[:, ::-1]
        out[i] = ((pixels - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
    return out


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).astype(np.uint8) if image.max() <= 1 else \
            image.astype(np.uint8)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3])


def _random_crop(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    for _ in range(10):
        area = height * width * rng.uniform(0.1, 1.0)
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        w = round(float(np.sqrt(area * aspect)))
        h = round(float(np.sqrt(area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = rng.integers(0, height - h + 1)
            left = rng.integers(0, width - w + 1)
            return image[top:top + h, left:left + w]
    side = min(height, width)
    return image[(height - side) // 2:(height + side) // 2, (width - side) // 2:(width + side) // 2]


def save(model: onnx.ModelProto, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


BUILDERS = {"resnet18": resnet18, "mobilenet_v2": mobilenet_v2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("."))
    args = parser.parse_args()
    import onnxruntime as ort

    x = photo_crops(8, seed=1)
    for name, build in BUILDERS.items():
        path = save(build(), args.out_dir / f"{name}.onnx")
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        logits = session.run(None, {"input": x})[0]
        params = sum(int(np.prod(i.dims)) for i in onnx.load(str(path)).graph.initializer)
        print(f"{name}: {path} {params / 1e6:.1f} M params, logits std {logits.std():.3f}, "
              f"max |logit| {np.abs(logits).max():.2f}")


if __name__ == "__main__":
    main()
