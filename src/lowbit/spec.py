"""Shapes and types of model inputs, shared by every layer, and what a feed must be.

    spec = TensorSpec("input", (1, 1, 28, 28), np.dtype("float32"))
    spec.matches((1, 1, 28, 28))   # True; a None or named dimension matches anything
    TensorSpec("x", (-1, 3, -1, -1), f32).shape     # (None, 3, None, None): -1 is dynamic
    spec.feed(array, "sample 0 in calib.npz")       # the array as ONNX Runtime gets it

A feed is held to ONNX Runtime's own rules, no stricter: the same rank, and the fixed
dimensions equal (a negative ``dim_value``, as paddle2onnx writes, is dynamic; a zero
one is a fixed size 0, which ONNX Runtime holds to); a declared scalar takes any
shape, and a 1-element array given for one is reshaped to it. ONNX Runtime refuses
every dtype other than the declared one; lowbit converts where the values survive:
float to float and integer to float (rounding to the model's precision, as the model
computes), integer to integer and whole floats to integer where every value fits,
0/1 to bool. Anything else is a DatasetError naming the input and both shapes or
dtypes. A dim name shared by two inputs is not checked either (ONNX Runtime does not
check it), but ONNX Runtime plans memory as if it had one size, so a model may fail to
run where it has two: :func:`named_dim_conflict` says where.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from lowbit.errors import DatasetError

Dim = int | str | None


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (None or a name for a dynamic dimension) and dtype of a model tensor.

    A negative int dimension is dynamic: it is stored as None."""

    name: str
    shape: tuple[Dim, ...]
    dtype: np.dtype

    def __post_init__(self) -> None:
        dims = tuple(None if isinstance(d, int) and d < 0 else d for d in self.shape)
        object.__setattr__(self, "shape", dims)

    def matches(self, shape: Sequence[int]) -> bool:
        if len(shape) != len(self.shape):
            return False
        return all(not isinstance(d, int) or d == s for d, s in zip(self.shape, shape, strict=True))

    def feed_shape(self, shape: Sequence[int]) -> tuple[int, ...] | None:
        """The shape an array of ``shape`` is fed as, or None where ONNX Runtime refuses it.

        ONNX Runtime checks no shape for a declared scalar; a 1-element array becomes the
        scalar the graph expects, any other is fed as it is."""
        if self.matches(shape):
            return tuple(shape)
        if not self.shape:
            return () if int(np.prod(shape, dtype=np.int64)) == 1 else tuple(shape)
        return None

    def feed(self, array: np.ndarray, where: str) -> np.ndarray:
        """``array`` in this input's dtype and shape, C-contiguous; ``where`` names the
        sample in errors ("sample 3 in calib.npz")."""
        array = np.asarray(array)
        shape = self.feed_shape(array.shape)
        if shape is None:
            raise DatasetError(f"input '{self.name}' expects {self.shape_text()}, {where} has "
                               f"{_dims_text(array.shape)}")
        converted = convert_dtype(array, self.dtype, f"input '{self.name}'", where)
        # np.ascontiguousarray would make a scalar 1-D
        return np.asarray(converted.reshape(shape), order="C")

    def shape_text(self) -> str:
        return "[" + ",".join("?" if not isinstance(d, int) else str(d) for d in self.shape) + "]"


def named_dim_conflict(shapes: Mapping[str, Sequence[Dim]],
                       feeds: Mapping[str, np.ndarray]) -> str | None:
    """Where ``feeds`` give one named dim of the declared ``shapes`` two sizes, e.g.
    "inputs 'a' and 'b' give the dim 'N' sizes 2 and 5"; None where they do not."""
    seen: dict[str, tuple[str, int]] = {}
    for name, shape in shapes.items():
        feed = feeds.get(name)
        if feed is None or len(np.shape(feed)) != len(shape):
            continue
        for dim, size in zip(shape, np.shape(feed), strict=True):
            if not isinstance(dim, str) or not dim:
                continue
            first = seen.setdefault(dim, (name, int(size)))
            if first[1] != size:
                which = f"input '{name}' gives" if first[0] == name else \
                    f"inputs '{first[0]}' and '{name}' give"
                return f"{which} the dim '{dim}' sizes {first[1]} and {size}"
    return None


def convert_dtype(array: np.ndarray, dtype: np.dtype, what: str, where: str) -> np.ndarray:
    """``array`` as ``dtype`` where no value changes beyond float rounding; else a
    DatasetError naming ``what`` (the input), ``where`` (the sample) and both dtypes."""
    if array.dtype == dtype:
        return array
    source, target = array.dtype, np.dtype(dtype)
    problem = _lost_values(array, target)
    if problem:
        raise DatasetError(f"{what} is {target}, {where} is {source} {problem} (ONNX Runtime "
                           f"takes only {target}; lowbit converts where no value changes)")
    return array.astype(target)


def _lost_values(array: np.ndarray, target: np.dtype) -> str:
    """Why casting ``array`` to ``target`` would change a value ("" when it would not)."""
    kind = array.dtype.kind
    if kind not in "biuf":
        return "(not numeric)"
    if target.kind not in "biu" or array.size == 0:
        return ""   # to float: rounding to the model's precision (out of range: Inf)
    if kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            return "with NaN or Inf values"
        fraction = array[array != np.round(array)]
        if fraction.size:
            return f"with non-integer values (e.g. {fraction.flat[0]:g})"
    low, high = array.min(), array.max()
    if target.kind == "b":
        return "" if ((array == 0) | (array == 1)).all() else \
            f"with values other than 0 and 1 (from {float(low):g} to {float(high):g})"
    info = np.iinfo(target)
    # Python compares ints and floats exactly: no rounding near int64's ends.
    lo, hi = (float(low), float(high)) if kind == "f" else (int(low), int(high))
    if lo < info.min or hi > info.max:
        return f"with values from {lo:g} to {hi:g}, outside {target}'s range"
    return ""


def _dims_text(shape: Sequence[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"
