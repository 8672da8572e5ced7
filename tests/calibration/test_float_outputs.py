"""The float outputs calibration keeps for auto's output check: the model's own outputs,
per sample, or nothing where they cannot be split by sample or do not fit."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from lowbit.calibration import CalibrationSettings, collect_ranges
from lowbit.calibration.float_outputs import FloatOutputs
from tests.calibration.test_collect import _model, _samples


def _plain_outputs(batch: int | str, samples: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    session = ort.InferenceSession(_model(batch).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return [session.run(["y"], sample)[0] for sample in samples]


def test_calibration_keeps_the_outputs_of_the_first_samples() -> None:
    """Fetched from the batched calibration runs and split by sample: the float model's
    outputs on each of the first ``count`` samples, batch-1 like the samples."""
    samples = _samples(11)
    kept = FloatOutputs.for_model(_model("N"), count=6, max_bytes=1 << 20)
    collect_ranges(_model("N"), samples, CalibrationSettings("auto"), progress=False,
                   max_batch=4, float_outputs=kept)
    assert kept.samples is not None and len(kept.samples) == 6
    for got, want in zip(kept.samples, _plain_outputs("N", samples[:6]), strict=True):
        assert got["y"].shape == (1, 10)
        np.testing.assert_allclose(got["y"], want, rtol=1e-5, atol=1e-6)


def test_nothing_is_kept_without_a_batch_axis_or_past_the_budget() -> None:
    samples = _samples(5)
    fixed = FloatOutputs.for_model(_model(1), count=4, max_bytes=1 << 20)
    collect_ranges(_model(1), samples, CalibrationSettings("auto"), progress=False,
                   float_outputs=fixed)
    assert fixed.samples is None  # no symbolic batch axis: not trusted to split
    small = FloatOutputs.for_model(_model("N"), count=4, max_bytes=3 * 10 * 4)
    collect_ranges(_model("N"), samples, CalibrationSettings("auto"), progress=False,
                   float_outputs=small)
    assert small.samples is None  # the fourth sample's 40 bytes would not fit
