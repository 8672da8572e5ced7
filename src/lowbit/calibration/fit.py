"""Whether a calibration table was made for this model: checked once, before any
stage uses it.

    check_table_fits(table, model, "work/model.calib")   # CalibrationError if not
"""

from __future__ import annotations

import logging

import onnx

from lowbit.calibration.channel_ranges import linear_inputs
from lowbit.calibration.table import CalibrationTable
from lowbit.errors import CalibrationError

log = logging.getLogger(__name__)


def check_table_fits(table: CalibrationTable, model: onnx.ModelProto, source: object) -> None:
    """The table names this model's tensors (a few strays are ignored with a warning), and
    its per-channel ranges have as many channels as the MatMul/Gemm inputs they describe."""
    names = {o for node in model.graph.node for o in node.output}
    names |= {i.name for i in model.graph.input}
    if not table.ranges:
        raise CalibrationError(f"calibration table {source} holds no tensor ranges; give the "
                               f"table lowbit calibrate wrote for this model")
    unknown = [name for name in table.ranges if name not in names]
    # A table made for this model names only its tensors; a few shared names (an "input", an
    # "a") must not make another model's table look like it belongs here.
    if 2 * len(unknown) > len(table.ranges):
        raise CalibrationError(
            f"calibration table {source} does not fit this model: {len(unknown)} of its "
            f"{len(table.ranges)} tensors (e.g. '{unknown[0]}') are not in the model; was it "
            f"made for another model?")
    if unknown:
        log.warning("calibration table %s names %d tensor(s) not in the model, e.g. '%s'; "
                    "they are ignored", source, len(unknown), unknown[0])
    if table.channel_ranges:
        channels = linear_inputs(model)
        for tensor, (low, _) in table.channel_ranges.items():
            if tensor in channels and low.size != channels[tensor]:
                raise CalibrationError(
                    f"calibration table {source}: the channel ranges of {tensor!r} have "
                    f"{low.size} channels, but the model's MatMul/Gemm reading it has "
                    f"{channels[tensor]}: the table was made for another model; re-run "
                    "lowbit calibrate")
