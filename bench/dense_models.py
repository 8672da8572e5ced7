"""Public stand-ins for the dense-output models of the "every real model" issue, as ONNX.

    from dense_models import STAND_INS, export
    path = export("pnet", "/tmp/dense")            # writes /tmp/dense/pnet.onnx (cached)
    stand_in = STAND_INS["pnet"]
    calib = stand_in.samples(DEV, 64, seed=0)      # dense_data: real photos, DEV split
    stand_in.probabilities                          # outputs that are probabilities

    python bench/dense_models.py --out-dir /tmp/dense            # every model, with a summary
    python bench/dense_models.py --out-dir /tmp/dense --models pnet,text_direction --rebuild

Every model is written in torch and exported with ``torch.onnx.export(dynamo=False)``
at opset 17 (IR 8); input ``input``, float32 NCHW. Nothing is downloaded; the
weights are real where a PyPI package ships them, and fitted here (seeded, CPU,
well under two minutes) where not:

- ``pnet``, ``rnet``, ``onet`` — MTCNN's three stages with their trained weights, the
  state dicts in the ``facenet-pytorch`` wheel (``facenet_pytorch/data/*.pt``; install
  it with ``pip install --no-deps facenet-pytorch==2.6.0``: its dependencies would pull
  another torch, and the package itself is never imported, it needs torchvision). The
  architectures are written here and load the state dicts with ``strict=True``.
  P-Net is fully convolutional and exported with dynamic H and W: ``prob``
  [N,2,h,w] (softmax over face / not face) and ``box`` [N,4,h,w], h = ceil((H-2)/2)-4.
  R-Net takes 24x24 windows, O-Net 48x48: ``prob`` [N,2], ``box`` [N,4], and O-Net's
  ``landmarks`` [N,10]. Input (RGB - 127.5) / 128.
- ``lite0_edges`` — EfficientNet-Lite0's real ImageNet backbone (bench/efficientnet_lite0.py,
  taps at strides 4, 8, 16, 32) under an FPN decoder (1x1 laterals to 32 channels,
  nearest x2 upsampling and adds, a 3x3 conv, a 3x3 + 1x1 head, sigmoid), input
  256x256, output ``edge_prob`` [N,1,64,64] at 1/4 resolution. The decoder has no
  published weights, so it is fitted (backbone frozen) to an edge map of the DEV
  photos: the Sobel magnitude of the Gaussian-blurred (sigma 1.5) grey image, averaged
  over each 4x4 output cell and thresholded at its 80th percentile over the DEV crops,
  fitted with binary cross-entropy. Edges were chosen over a class-activation map
  because they are fine-grained and dense: every output pixel has a target, most of
  the detail comes through the stride-4 features, and a 0.5 threshold of the output is
  a meaningful mask, as a segmentation or heat map is. The backbone's CAM is 7x7-coarse
  at stride 32 and would test the decoder's upsampling more than its precision.
- ``text_direction`` — a PaddleOCR-style text-direction classifier: MobileNetV3-small
  at width 0.35 (hard-swish, squeeze-excite, 53 convolutions of 8-200 channels, as the
  issue's real model, where tiny convs make Q/DQ overhead count), input 48x192,
  ``probs`` [N,2] (upright, rotated 180°). Trained from scratch (seeded) on DEV text
  strips and photo strips, half of them turned upside down.
- ``mobilenet_v2_dyn`` — MobileNetV2 (width 1.0, ImageNet head) with random weights
  (He-normal, plausible BatchNorm statistics, damped residual branches, as
  bench/models.py, so activations stay of order one) and dynamic H and W: the
  memory benchmark feeds it 640x640.

The DEV / REPORT split of the data is in bench/dense_data.py: fitting and
calibration use DEV only. The two fitted models' architectures and fits, and what
the fits reach on REPORT, are in bench/dense_fitted.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dense_data import (
    PNET_SIZE,
    REPORT,
    TEXT_SIZE,
    Split,
    face_crops,
    photo_crops,
    pnet_windows,
    text_lines,
)
from dense_fitted import LITE0_SIZE, lite0_edges, text_direction

log = logging.getLogger("dense_models")

OPSET = 17
IR_VERSION = 8  # what opset 17 needs; newer IR versions are refused by older ORT builds
SEED = 0


# ---------------------------------------------------------------- MTCNN


def mtcnn_weights(stage: str) -> dict[str, torch.Tensor]:
    """The state dict of MTCNN's ``stage`` ("pnet", "rnet", "onet") from facenet-pytorch's
    wheel, found without importing the package (it imports torchvision)."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("MTCNN's weights come from a package: "
                         "pip install --no-deps facenet-pytorch==2.6.0")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / f"{stage}.pt"
    return torch.load(path, map_location="cpu", weights_only=True)


class PNet(nn.Module):
    """12x12 proposal net, fully convolutional: 3 convs (10, 16, 32) with PReLU, one
    2x2 max-pool; a 1x1 face/not-face head (softmax) and a 1x1 box-regression head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, 3)
        self.prelu1 = nn.PReLU(10)
        self.conv2 = nn.Conv2d(10, 16, 3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, 3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return torch.softmax(self.conv4_1(x), dim=1), self.conv4_2(x)


class RNet(nn.Module):
    """24x24 refinement net: convs 28, 48, 64 with PReLU and 3x3/2 max-pools, dense 128."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, 3)
        self.prelu1 = nn.PReLU(28)
        self.conv2 = nn.Conv2d(28, 48, 3)
        self.prelu2 = nn.PReLU(48)
        self.conv3 = nn.Conv2d(48, 64, 2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(x))  # [N,64,3,3]
        # The Caffe original flattens W,H,C (transposed); the weights expect that order.
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).flatten(1)))
        return torch.softmax(self.dense5_1(x), dim=1), self.dense5_2(x)


class ONet(nn.Module):
    """48x48 output net: convs 32, 64, 64, 128 with PReLU and max-pools, dense 256; face
    probability, box regression and five landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.prelu1 = nn.PReLU(32)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.prelu2 = nn.PReLU(64)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.prelu3 = nn.PReLU(64)
        self.conv4 = nn.Conv2d(64, 128, 2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu4(self.conv4(x))  # [N,128,3,3]
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).flatten(1)))
        return torch.softmax(self.dense6_1(x), dim=1), self.dense6_2(x), self.dense6_3(x)


def mtcnn(stage: str) -> nn.Module:
    """MTCNN's ``stage`` in eval mode with its real weights (strict: every key matches)."""
    model = {"pnet": PNet, "rnet": RNet, "onet": ONet}[stage]()
    model.load_state_dict(mtcnn_weights(stage), strict=True)
    return model.eval()


# ---------------------------------------------------------------- MobileNetV2, dynamic H x W


_V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
             relu6: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2,
                                         groups=groups, bias=False), nn.BatchNorm2d(c_out)]
    return nn.Sequential(*layers, nn.ReLU6()) if relu6 else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        layers = [_conv_bn(c_in, hidden, 1)] if expand != 1 else []
        layers += [_conv_bn(hidden, hidden, 3, stride, hidden),
                   _conv_bn(hidden, c_out, 1, relu6=False)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al. 2018, width 1.0), global pooling: any H and W."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, 32, 3, 2)]
        c_in = 32
        for t, c, n, s in _V2_SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(c_in, c, s if i == 0 else 1, t))
                c_in = c
        layers.append(_conv_bn(c_in, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(1280, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def mobilenet_v2_random(seed: int = SEED) -> MobileNetV2:
    """Random weights as bench/models.py draws them: He-normal convs, BN gamma 0.7-1.2
    (0.2-0.5 on a residual branch's last BN), beta, mean ~ N(0, 0.1), var 0.7-1.5."""
    torch.manual_seed(seed)
    model = MobileNetV2()
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.7, 1.2)
            nn.init.normal_(module.bias, 0.0, 0.1)
            nn.init.normal_(module.running_mean, 0.0, 0.1)
            nn.init.uniform_(module.running_var, 0.7, 1.5)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, (1.0 / module.in_features) ** 0.5)
            nn.init.zeros_(module.bias)
    for module in model.modules():
        if isinstance(module, InvertedResidual) and module.residual:
            nn.init.uniform_(module.body[-1][1].weight, 0.2, 0.5)  # damped residual branch
    return model.eval()


# ---------------------------------------------------------------- export and the registry


@dataclass(frozen=True)
class Samples:
    """Model inputs (N, 3, H, W) float32 and, for a classifier with true labels, the labels."""

    x: np.ndarray
    labels: np.ndarray | None = None


@dataclass(frozen=True)
class StandIn:
    """One stand-in: how to build it, its outputs, and its data on either split."""

    name: str
    build: Callable[[], nn.Module]
    example_shape: tuple[int, int, int, int]  # the export's dummy input
    outputs: tuple[str, ...]
    dynamic_hw: bool
    samples: Callable[[Split, int, int], Samples]
    probabilities: tuple[str, ...] = ()  # per-pixel probability maps (IoU at 0.5)
    classes: tuple[str, ...] = ()  # per-sample class probabilities (top-1 agreement)
    padded: bool = False  # TF-SAME Pad nodes to fold into the Convs after export
    speed_batches: tuple[int, ...] = (1, 8)


def _mtcnn_samples(stage: str) -> Callable[[Split, int, int], Samples]:
    size = {"rnet": 24, "onet": 48}[stage]
    return lambda split, n, seed: Samples(face_crops(split, n, seed, size))


def _text_samples(split: Split, n: int, seed: int) -> Samples:
    x, labels = text_lines(split, n, seed)
    return Samples(x, labels)


STAND_INS: dict[str, StandIn] = {s.name: s for s in (
    StandIn("pnet", lambda: mtcnn("pnet"), (1, 3, *PNET_SIZE), ("prob", "box"), True,
            lambda split, n, seed: Samples(pnet_windows(split, n, seed)),
            probabilities=("prob",)),
    StandIn("rnet", lambda: mtcnn("rnet"), (1, 3, 24, 24), ("prob", "box"), False,
            _mtcnn_samples("rnet"), classes=("prob",), speed_batches=(1, 32)),
    StandIn("onet", lambda: mtcnn("onet"), (1, 3, 48, 48), ("prob", "box", "landmarks"),
            False, _mtcnn_samples("onet"), classes=("prob",), speed_batches=(1, 32)),
    StandIn("lite0_edges", lite0_edges, (1, 3, LITE0_SIZE, LITE0_SIZE), ("edge_prob",),
            False, lambda split, n, seed: Samples(photo_crops(split, n, seed, LITE0_SIZE)),
            probabilities=("edge_prob",), padded=True),
    StandIn("text_direction", text_direction, (1, 3, *TEXT_SIZE), ("probs",), False,
            _text_samples, classes=("probs",), speed_batches=(1, 32)),
    StandIn("mobilenet_v2_dyn", mobilenet_v2_random, (1, 3, 640, 640), ("logits",), True,
            lambda split, n, seed: Samples(photo_crops(split, n, seed, 640, mean=127.5,
                                                       scale=64.0))),
)}


def export_module(model: nn.Module, path: str | Path, example_shape: tuple[int, ...],
                  outputs: tuple[str, ...], dynamic_hw: bool = False,
                  padded: bool = False) -> Path:
    """Export ``model`` (opset 17, IR 8, dynamic batch; dynamic H, W with ``dynamic_hw``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_hw else {0: "batch"}
    dynamic = {"input": axes, **{name: {0: "batch"} for name in outputs}}
    if dynamic_hw:
        dynamic.update({name: {0: "batch", 2: "out_height", 3: "out_width"}
                        for name in outputs if name in ("prob", "box")})
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the legacy exporter, chosen on purpose
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (torch.zeros(example_shape),), str(path), dynamo=False,
                          opset_version=OPSET, input_names=["input"],
                          output_names=list(outputs), dynamic_axes=dynamic)
    proto = onnx.load(str(path))
    if padded:
        from efficientnet_lite0 import fold_pads_into_convs
        proto = fold_pads_into_convs(proto)
    proto.ir_version = min(proto.ir_version, IR_VERSION)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def export(name: str, out_dir: str | Path, rebuild: bool = False) -> Path:
    """Write stand-in ``name`` to ``out_dir/name.onnx`` (kept when present) and return it."""
    stand_in = STAND_INS[name]
    path = Path(out_dir) / f"{name}.onnx"
    if path.exists() and not rebuild:
        return path
    start = time.perf_counter()
    model = stand_in.build()
    export_module(model, path, stand_in.example_shape, stand_in.outputs, stand_in.dynamic_hw,
                  stand_in.padded)
    log.info("%s: built and exported in %.1f s -> %s", name, time.perf_counter() - start, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("dense_models"))
    parser.add_argument("--models", default=",".join(STAND_INS),
                        help=f"comma-separated, from {', '.join(STAND_INS)}")
    parser.add_argument("--rebuild", action="store_true", help="rebuild files already there")
    parser.add_argument("--num", type=int, default=64, help="REPORT samples to summarise on")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import onnxruntime as ort

    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        stand_in = STAND_INS[name]
        path = export(name, args.out_dir, args.rebuild)
        proto = onnx.load(str(path))
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        data = stand_in.samples(REPORT, args.num, 1)
        outputs = dict(zip(stand_in.outputs, session.run(None, {"input": data.x}),
                           strict=True))
        convs = sum(node.op_type == "Conv" for node in proto.graph.node)
        parts = [(f"{name}: {path.stat().st_size / 1e6:.2f} MB, {convs} Conv, "
                  f"{len(proto.graph.node)} nodes")]
        for output, value in outputs.items():
            parts.append(f"{output} {list(value.shape)} mean {value.mean():.3f}")
        for output in stand_in.probabilities:
            parts.append(f"{output} > 0.5: {100 * (outputs[output][:, -1] > 0.5).mean():.1f} %")
        for output in stand_in.classes:
            predicted = outputs[output].argmax(1)
            if data.labels is not None:
                parts.append(f"REPORT accuracy {100 * (predicted == data.labels).mean():.1f} %")
            else:
                parts.append(f"class 1 on {100 * predicted.mean():.1f} %")
        print("; ".join(parts))


if __name__ == "__main__":
    main()
