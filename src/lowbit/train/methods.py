"""How a network trains in BF16 on a CPU: the two methods `lowbit train` compares with FP32.

    method = METHODS["bf16-autocast"]
    model, optimizer = method.prepare(model, learning_rate=1e-3)
    with method.compute():
        logits = model(method.inputs(x))
    loss = cross_entropy(logits.float(), labels)          # FP32 for every method

- ``fp32``: weights, activations, gradients and Adam's state in FP32.
- ``bf16-autocast`` (method 1): FP32 master weights and Adam state; the forward runs under
  ``torch.autocast("cpu", torch.bfloat16)``, which casts each FP32 weight to BF16 right
  before its conv/linear and computes in BF16 (gradients flow back to the FP32 weights,
  updated in FP32).
- ``bf16-full`` (method 2): the whole network converted to BF16 — weights, activations,
  gradients and Adam's moments; only the logits are cast to FP32 for the softmax and the
  loss. Half the memory of weights and state, but an update smaller than a weight's
  BF16 step (8 bits of mantissa) is lost.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    weights: torch.dtype  # parameters and optimizer state
    autocast: torch.dtype | None = None  # compute dtype under torch.autocast

    def prepare(self, model: torch.nn.Module, learning_rate: float
                ) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        model = model.to(self.weights)
        return model, torch.optim.Adam(model.parameters(), lr=learning_rate)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.weights)

    @contextlib.contextmanager
    def compute(self) -> Iterator[None]:
        if self.autocast is None:
            yield
            return
        with torch.autocast("cpu", dtype=self.autocast):
            yield

    @property
    def precision(self) -> str:
        """The deploy precision that matches the trained weights' storage."""
        return "F32" if self.weights == torch.float32 and self.autocast is None else "BF16"


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("fp32", "FP32", torch.float32),
    Method("bf16-autocast", "BF16 method 1: autocast, FP32 master weights", torch.float32,
           torch.bfloat16),
    Method("bf16-full", "BF16 method 2: whole network BF16, softmax/loss FP32",
           torch.bfloat16),
)}
