"""Train the demo's MNIST CNN under one precision method and measure it.

    result, model = train_method(METHODS["bf16-full"], mnist_digits(), TrainSettings())
    result.test_top1, result.final_loss, result.step_ms, result.samples_per_s
    result.peak_mb, result.train_profile.line(), result.inference_profile.line()
    export_onnx(model, "out/bf16-full.onnx")            # float32 ONNX for lowbit deploy

The network is the demo's LeNet (examples/mnist/train.py): conv5x5(32) → ReLU → pool →
conv5x5(64) → ReLU → pool → fc1024 → ReLU → dropout 0.5 → fc10, Adam, random shifts of up
to 2 pixels. Each method starts from the same seeded weights and sees the same batches.
``step_ms`` is the median wall time of a training step (forward, loss, backward, Adam)
after the first epoch's first 5 steps; samples/s is the training samples over the
training wall time; ``peak_mb`` the most tensor memory alive during one step
(lowbit.train.profiles); the profiles split a step and an inference batch of the test
digits by op type.
"""

from __future__ import annotations

import copy
import logging
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lowbit.errors import UsageError
from lowbit.train.data import CLASSES, Digits, Split
from lowbit.train.methods import Method
from lowbit.train.profiles import OpProfile, op_profile, peak_tensor_bytes, set_threads

log = logging.getLogger(__name__)

MAX_SHIFT = 2
WARMUP_STEPS = 5
INFERENCE_BATCH = 256


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 12
    batch: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    threads: int | None = None
    profile_steps: int = 3

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch < 1 or self.profile_steps < 1:
            raise UsageError("epochs, batch and profile steps must be positive")
        if not self.learning_rate > 0:
            raise UsageError(f"the learning rate must be positive; got {self.learning_rate}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be positive; got {self.threads}")


@dataclass(frozen=True)
class MethodResult:
    """One method's row of the seed table."""

    method: str
    label: str
    test_top1: float  # percent
    final_loss: float  # mean training loss of the last epoch
    step_ms: float
    samples_per_s: float
    train_seconds: float
    peak_mb: float | None
    inference_ms: float  # per INFERENCE_BATCH test digits
    train_profile: OpProfile
    inference_profile: OpProfile


class LeNet(nn.Module):
    """The demo's MNIST CNN."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 7 * 7, 1024), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(1024, CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def seeded_model(seed: int) -> LeNet:
    torch.manual_seed(seed)
    return LeNet()


def shift(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image translated by up to MAX_SHIFT pixels in x and y, zeros filling in."""
    padded = F.pad(batch, (MAX_SHIFT,) * 4)
    size = batch.shape[-1]
    offsets = torch.randint(0, 2 * MAX_SHIFT + 1, (batch.shape[0], 2), generator=generator)
    out = torch.empty_like(batch)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        out[i] = padded[i, :, dy:dy + size, dx:dx + size]
    return out


def train_method(method: Method, digits: Digits, settings: TrainSettings
                 ) -> tuple[MethodResult, nn.Module]:
    """Train a fresh seeded LeNet with ``method``; its row and the trained module."""
    set_threads(settings.threads)
    random.seed(settings.seed)
    np.random.seed(settings.seed)
    model, optimizer = method.prepare(seeded_model(settings.seed), settings.learning_rate)
    images = torch.from_numpy(digits.train.images)
    labels = torch.from_numpy(digits.train.labels)
    generator = torch.Generator().manual_seed(settings.seed)
    times: list[float] = []
    epoch_loss = float("nan")
    start = time.perf_counter()
    for epoch in range(settings.epochs):
        model.train()
        order = torch.randperm(len(images), generator=generator)
        total, count = 0.0, 0
        for first in range(0, len(order), settings.batch):
            index = order[first:first + settings.batch]
            batch = shift(images[index], generator)
            began = time.perf_counter()
            loss = _step(method, model, optimizer, batch, labels[index])
            times.append(time.perf_counter() - began)
            total += loss * len(index)
            count += len(index)
        epoch_loss = total / count
        log.info("%s epoch %d/%d: loss %.4f", method.name, epoch + 1, settings.epochs,
                 epoch_loss)
    seconds = time.perf_counter() - start
    timed = times[WARMUP_STEPS:] if len(times) > WARMUP_STEPS else times
    top1 = 100.0 * float((predict(method, model, digits.test) == digits.test.labels).mean())
    train_profile, peak = _step_profile(method, model, optimizer, images, labels, settings)
    inference_profile, inference_ms = _inference_profile(method, model, digits.test, settings)
    result = MethodResult(method.name, method.label, top1, epoch_loss,
                          1e3 * float(np.median(timed)),
                          settings.epochs * len(images) / seconds, seconds,
                          None if peak is None else peak / 2**20, inference_ms,
                          train_profile, inference_profile)
    return result, model


def _step(method: Method, model: nn.Module, optimizer: torch.optim.Optimizer,
          batch: torch.Tensor, labels: torch.Tensor) -> float:
    optimizer.zero_grad(set_to_none=True)
    with method.compute():
        logits = model(method.inputs(batch))
    loss = F.cross_entropy(logits.float(), labels)  # softmax and loss in FP32 for all
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def predict(method: Method, model: nn.Module, data: Split) -> np.ndarray:
    model.eval()
    out = []
    for first in range(0, len(data.images), INFERENCE_BATCH):
        with method.compute():
            logits = model(method.inputs(torch.from_numpy(data.images[first:first +
                                                                       INFERENCE_BATCH])))
        out.append(logits.float().argmax(1).numpy())
    return np.concatenate(out)


def _step_profile(method: Method, model: nn.Module, optimizer: torch.optim.Optimizer,
                  images: torch.Tensor, labels: torch.Tensor, settings: TrainSettings
                  ) -> tuple[OpProfile, int | None]:
    """A training step's op profile and tensor-memory peak, on a copy (so profiling
    leaves the trained weights as they are)."""
    twin = copy.deepcopy(model)
    twin_optimizer = type(optimizer)(twin.parameters(), **optimizer.defaults)
    twin_optimizer.load_state_dict(optimizer.state_dict())
    batch, target = images[:settings.batch], labels[:settings.batch]
    twin.train()

    def run() -> None:
        _step(method, twin, twin_optimizer, batch, target)

    run()
    return op_profile(run, settings.profile_steps), peak_tensor_bytes(run)


def _inference_profile(method: Method, model: nn.Module, data: Split,
                       settings: TrainSettings) -> tuple[OpProfile, float]:
    model.eval()
    x = method.inputs(torch.from_numpy(data.images[:INFERENCE_BATCH]))

    @torch.no_grad()
    def run() -> None:
        with method.compute():
            model(x)

    run()
    began = time.perf_counter()
    for _ in range(settings.profile_steps):
        run()
    ms = 1e3 * (time.perf_counter() - began) / settings.profile_steps
    return op_profile(run, settings.profile_steps), ms


def export_onnx(model: nn.Module, path: str | Path) -> Path:
    """The trained network as a float32 ONNX model (opset 17, input "input" [batch,1,28,28],
    output "logits" [batch,10]) that lowbit transforms, calibrates and deploys."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    twin = copy.deepcopy(model).float().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(twin, (torch.zeros(1, 1, 28, 28),), str(path), dynamo=False,
                          opset_version=17, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return path
