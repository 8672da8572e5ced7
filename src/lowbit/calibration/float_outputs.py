"""The float model's own outputs on the first calibration samples, kept while calibrating.

    kept = FloatOutputs.for_model(model, count=32, max_bytes=budget.bytes // 4)
    table = collect_ranges(model, samples, settings, float_outputs=kept)
    check_auto_table(model, window, table, float_outputs=kept.samples)   # no float pass

The calibration runs compute the model's outputs anyway; fetching them for the samples
auto's output check scores spares that check a float pass over its samples (and a float
session). A run of several samples is split along the outputs' first axis, which is
trusted to be the batch axis only where every output names it as the inputs do (the same
symbolic first dimension); otherwise, or past ``max_bytes``, nothing is kept
(``samples`` is None) and the check runs the float model itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx


class FloatOutputs:
    """Per sample (in data set order, up to ``count``), its outputs by name."""

    def __init__(self, names: Sequence[str], count: int, max_bytes: int, *,
                 batch_axis: bool) -> None:
        self.names = list(names)
        self.count = count
        self.max_bytes = max_bytes
        self.batch_axis = batch_axis
        self.samples: list[dict[str, np.ndarray]] | None = [] if batch_axis else None
        self._held = 0

    @classmethod
    def for_model(cls, model: onnx.ModelProto, count: int, max_bytes: int) -> FloatOutputs:
        """A keeper of ``model``'s outputs on its first ``count`` samples."""
        return cls([o.name for o in model.graph.output], count, max_bytes,
                   batch_axis=_shares_batch_axis(model))

    @property
    def wanted(self) -> bool:
        """Whether the next run's outputs are still to be kept."""
        return self.samples is not None and len(self.samples) < self.count

    def add(self, values: Sequence[np.ndarray], rows: int) -> None:
        """A run's outputs (in ``names`` order), ``rows`` samples stacked along axis 0."""
        if self.samples is None:
            return
        if any(np.ndim(v) == 0 or np.shape(v)[0] != rows for v in values):
            self.samples = None  # not split by sample as the names said: keep nothing
            return
        for row in range(rows):
            if len(self.samples) == self.count:
                return
            sample = {name: np.array(value[row:row + 1])
                      for name, value in zip(self.names, values, strict=True)}
            self._held += sum(v.nbytes for v in sample.values())
            if self._held > self.max_bytes:
                self.samples = None
                return
            self.samples.append(sample)


def _shares_batch_axis(model: onnx.ModelProto) -> bool:
    """Every input and output has the same symbolic first dimension (the batch)."""
    constant = {init.name for init in model.graph.initializer}
    values = [v for v in model.graph.input if v.name not in constant]
    values += list(model.graph.output)
    firsts = set()
    for value in values:
        dims = value.type.tensor_type.shape.dim if value.type.HasField("tensor_type") else []
        if not dims or not dims[0].dim_param:
            return False
        firsts.add(dims[0].dim_param)
    return len(firsts) == 1
