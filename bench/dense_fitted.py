"""The two dense-benchmark stand-ins without published weights, fitted here on DEV photos.

    from dense_fitted import lite0_edges, text_direction
    edges = lite0_edges()          # EfficientNet-Lite0 backbone (ImageNet) + fitted FPN decoder
    classifier = text_direction()  # MobileNetV3-small-like text-direction net, trained
    edges_graph_only = lite0_edges(steps=0)   # same graph, decoder at its seeded init

bench/dense_models.py registers and exports them (``lite0_edges``,
``text_direction``) and says what each is and why; this file holds their
architectures and fits. Both fits run on one thread, seeded, on DEV data only
(bench/dense_data.py): about a minute each on an idle core.

What the fits reach (REPORT split, F32): the edge decoder's map thresholded at 0.5
has IoU 0.77 with the REPORT edge targets (0.78 on DEV), 20 % of cells on; the
text-direction classifier is right on 70 % of REPORT strips: 90 % of the handwritten
digit lines, 66 % of the handwritten-formula strips, chance on photo strips (DEV: 100 %
on the printed page it was trained on). Enough for a stand-in whose job is to be
compared with its own quantized copies, not to be a good classifier.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dense_data import DEV, photo_crops, text_lines

log = logging.getLogger("dense_fitted")

SEED = 0


# ---------------------------------------------------------------- EfficientNet-Lite0 + FPN


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Fit on one thread: the same sums in the same order on any machine (a reproducible
    fit), and no OpenMP barrier spinning when the cores are shared (2 threads ran 5x
    slower than 1 on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


LITE0_TAPS = (2, 4, 10, 15)  # last block of the stride 4 (24 ch), 8 (40), 16 (112), 32 (320)
LITE0_TAP_CHANNELS = (24, 40, 112, 320)
LITE0_SIZE = 256  # any multiple of 32 gets the same TF-SAME pads as the weights' 224
FPN_CHANNELS = 32
EDGE_SIGMA = 1.5
EDGE_QUANTILE = 0.8


class Lite0Edges(nn.Module):
    """EfficientNet-Lite0's stem and 16 blocks, then an FPN decoder to one map at 1/4."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.stem = backbone._conv_stem
        self.stem_bn = backbone._bn0
        self.blocks = backbone._blocks
        self.laterals = nn.ModuleList(nn.Conv2d(c, FPN_CHANNELS, 1)
                                      for c in LITE0_TAP_CHANNELS)
        self.smooth = nn.Conv2d(FPN_CHANNELS, FPN_CHANNELS, 3, padding=1)
        self.head = nn.Conv2d(FPN_CHANNELS, 16, 3, padding=1)
        self.out = nn.Conv2d(16, 1, 1)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self.stem_bn(self.stem(x)))
        taps = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in LITE0_TAPS:
                taps.append(x)
        return taps

    def decode(self, taps: list[torch.Tensor]) -> torch.Tensor:
        top = self.laterals[-1](taps[-1])
        for lateral, tap in zip(reversed(self.laterals[:-1]), reversed(taps[:-1]), strict=True):
            top = lateral(tap) + F.interpolate(top, scale_factor=2.0, mode="nearest")
        y = F.relu(self.smooth(top))
        return self.out(F.relu(self.head(y)))  # logits [N,1,H/4,W/4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode(self.features(x)))


def edge_targets(x: np.ndarray, threshold: float | None = None) -> tuple[np.ndarray, float]:
    """The decoder's target for Lite0-normalised crops (N,3,H,W): per 4x4 cell, the mean
    Sobel magnitude of the blurred grey image; 1 above ``threshold`` (the DEV 80th
    percentile when None, returned)."""
    from skimage.filters import gaussian, sobel

    grey = (x * 128.0 + 127.0).mean(axis=1) / 255.0  # [N,H,W] in [0,1]
    n, h, w = grey.shape
    mags = np.stack([sobel(gaussian(g, sigma=EDGE_SIGMA)) for g in grey])
    cells = mags.reshape(n, h // 4, 4, w // 4, 4).mean(axis=(2, 4))
    if threshold is None:
        threshold = float(np.quantile(cells, EDGE_QUANTILE))
    return (cells > threshold).astype(np.float32)[:, None], threshold


def lite0_edges(steps: int = 300, samples: int = 192, seed: int = SEED) -> Lite0Edges:
    """The backbone with its ImageNet weights and the decoder fitted on DEV crops."""
    with _one_thread():
        return _fit_lite0_edges(steps, samples, seed)


def _fit_lite0_edges(steps: int, samples: int, seed: int) -> Lite0Edges:
    from efficientnet_lite0 import build

    torch.manual_seed(seed)
    model = Lite0Edges(build()).eval()
    if steps == 0:
        return model
    x = photo_crops(DEV, samples, seed=seed, size=LITE0_SIZE)
    target, _ = edge_targets(x)
    with torch.no_grad():  # the backbone is frozen: its features are computed once
        taps = [model.features(torch.from_numpy(x[i:i + 32])) for i in range(0, samples, 32)]
        features = [torch.cat(level) for level in zip(*taps, strict=True)]
    decoder = [*model.laterals.parameters(), *model.smooth.parameters(),
               *model.head.parameters(), *model.out.parameters()]
    optimizer = torch.optim.Adam(decoder, lr=3e-3)
    labels = torch.from_numpy(target)
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        batch = torch.randint(0, samples, (16,), generator=generator)
        loss = F.binary_cross_entropy_with_logits(
            model.decode([f[batch] for f in features]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == steps - 1:
            log.info("lite0_edges step %d: BCE %.4f", step, loss.item())
    return model.eval()


# ---------------------------------------------------------------- text direction


def _divisible(value: float, by: int = 8) -> int:
    rounded = max(by, int(value + by / 2) // by * by)
    return rounded + by if rounded < 0.9 * value else rounded


# MobileNetV3-small (Howard et al. 2019): kernel, expansion, out channels, SE, hard-swish,
# stride.
_V3_SMALL = (
    (3, 16, 16, True, False, 2), (3, 72, 24, False, False, 2), (3, 88, 24, False, False, 1),
    (5, 96, 40, True, True, 2), (5, 240, 40, True, True, 1), (5, 240, 40, True, True, 1),
    (5, 120, 48, True, True, 1), (5, 144, 48, True, True, 1), (5, 288, 96, True, True, 2),
    (5, 576, 96, True, True, 1), (5, 576, 96, True, True, 1),
)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, _divisible(channels / 4), 1)
        self.expand = nn.Conv2d(_divisible(channels / 4), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.expand(F.relu(self.reduce(F.adaptive_avg_pool2d(x, 1))))
        return x * F.hardsigmoid(scale)


class V3Block(nn.Module):
    """1x1 expand, kxk depthwise, [SE], 1x1 project, each conv with BN; residual when shapes
    allow. The expansion conv is always there, as in PaddleOCR's MobileNetV3."""

    def __init__(self, c_in: int, hidden: int, c_out: int, kernel: int, se: bool,
                 hard_swish: bool, stride: int) -> None:
        super().__init__()
        act: type[nn.Module] = nn.Hardswish if hard_swish else nn.ReLU
        self.expand = nn.Sequential(nn.Conv2d(c_in, hidden, 1, bias=False),
                                    nn.BatchNorm2d(hidden), act())
        self.depthwise = nn.Sequential(
            nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), act())
        self.se = SqueezeExcite(hidden) if se else nn.Identity()
        self.project = nn.Sequential(nn.Conv2d(hidden, c_out, 1, bias=False),
                                     nn.BatchNorm2d(c_out))
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.residual else y


class TextDirection(nn.Module):
    """MobileNetV3-small at ``width``: stem, 11 blocks, a 1x1 conv, pool, fc, softmax."""

    def __init__(self, width: float = 0.35, classes: int = 2) -> None:
        super().__init__()
        c_in = _divisible(16 * width)
        layers: list[nn.Module] = [nn.Sequential(
            nn.Conv2d(3, c_in, 3, 2, 1, bias=False), nn.BatchNorm2d(c_in), nn.Hardswish())]
        for kernel, expand, c_out, se, hard_swish, stride in _V3_SMALL:
            out = _divisible(c_out * width)
            layers.append(V3Block(c_in, _divisible(expand * width), out, kernel, se,
                                  hard_swish, stride))
            c_in = out
        last = _divisible(576 * width)
        layers.append(nn.Sequential(nn.Conv2d(c_in, last, 1, bias=False),
                                    nn.BatchNorm2d(last), nn.Hardswish()))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(last, classes)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)


def text_direction(steps: int = 400, samples: int = 2048, seed: int = SEED) -> TextDirection:
    """The classifier trained from scratch (Adam, batch 64, cosine decay) on DEV strips."""
    with _one_thread():
        return _fit_text_direction(steps, samples, seed)


def _fit_text_direction(steps: int, samples: int, seed: int) -> TextDirection:
    torch.manual_seed(seed)
    model = TextDirection()
    if steps == 0:
        return model.eval()
    x, labels = text_lines(DEV, samples, seed=seed)
    images, targets = torch.from_numpy(x), torch.from_numpy(labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        batch = torch.randint(0, samples, (64,), generator=generator)
        loss = F.cross_entropy(model.logits(images[batch]), targets[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            log.info("text_direction step %d: cross-entropy %.4f", step, loss.item())
    return model.eval()
