"""Calibration: stream a data set through a model and record every activation's range.

    from lowbit.calibration import CalibrationSettings, collect_ranges, write_table

    settings = CalibrationSettings(method="kl", bins=2048)
    table = collect_ranges(model, samples, settings, num_samples=200)
    write_table(table, "model.calib")
    table = read_table("model.calib")      # table.ranges["conv1_out"].threshold
"""

from lowbit.calibration.collect import ActivationTensors, collect_ranges, find_activation_tensors
from lowbit.calibration.observers import (
    METHODS,
    CalibrationSettings,
    HistogramObserver,
    KLObserver,
    MinMaxObserver,
    MSEObserver,
    Observer,
    PercentileObserver,
    TensorRange,
    kl_threshold,
    make_observer,
    mse_threshold,
    percentile_threshold,
    register_observer,
)
from lowbit.calibration.table import (
    CalibrationTable,
    format_table,
    parse_table,
    read_table,
    write_table,
)

__all__ = [
    "METHODS",
    "ActivationTensors",
    "CalibrationSettings",
    "CalibrationTable",
    "HistogramObserver",
    "KLObserver",
    "MSEObserver",
    "MinMaxObserver",
    "Observer",
    "PercentileObserver",
    "TensorRange",
    "collect_ranges",
    "find_activation_tensors",
    "format_table",
    "kl_threshold",
    "make_observer",
    "mse_threshold",
    "parse_table",
    "percentile_threshold",
    "read_table",
    "register_observer",
    "write_table",
]
