"""Shapes and types of model inputs, shared by every layer.

    spec = TensorSpec("input", (1, 1, 28, 28), np.dtype("float32"))
    spec.matches((1, 1, 28, 28))   # True; a None or named dimension matches anything
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Dim = int | str | None


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (None or a name for a dynamic dimension) and dtype of a model tensor."""

    name: str
    shape: tuple[Dim, ...]
    dtype: np.dtype

    def matches(self, shape: tuple[int, ...]) -> bool:
        if len(shape) != len(self.shape):
            return False
        return all(not isinstance(d, int) or d == s for d, s in zip(self.shape, shape, strict=True))

    def shape_text(self) -> str:
        return "[" + ",".join("?" if not isinstance(d, int) else str(d) for d in self.shape) + "]"
