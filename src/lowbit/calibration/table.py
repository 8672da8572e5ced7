"""The calibration table: one text file, one line per tensor, tpu-mlir compatible.

    table = CalibrationTable(ranges={"x": TensorRange(2.5, -2.5, 1.0)}, method="kl",
                             num_samples=200, bins=2048)
    write_table(table, "model.calib")      # temp file + rename: never half-written
    table = read_table("model.calib")      # also reads tpu-mlir's calibration tables

The file reads::

    # lowbit calibration table v1
    # method: kl
    # samples: 200
    # bins: 2048
    # created: 2025-01-01T12:00:00+00:00
    # skipped: mask range not finite (min=-inf, max=0)
    x 2.5 -2.5 1.0

Numbers are written with repr precision (shortest text that reads back to the
same float64), so a table round-trips exactly.

Lines are ``name threshold min max``. Lines starting with ``#`` followed by a
space (or ``##``) are comments; a line like ``#int4_th`` or ``#weight_scale``
opens a section of tpu-mlir's table that lowbit does not read: the first block
of tensor lines is kept and such sections are skipped with a warning.

lowbit's own section ``#lowbit_input_means`` (written by ``lowbit calibrate``) follows
the ranges: one line per Conv/Gemm node, ``node shape values…``, the mean input each
kernel tap reads over the calibration samples (lowbit.calibration.input_means), from
which deploy corrects biases without the data set. ``#lowbit_channel_ranges`` holds,
per run-time input of a MatMul/Gemm, ``tensor K min_1…min_K max_1…max_K``: its
per-channel extremes (lowbit.calibration.channel_ranges), from which deploy applies
SmoothQuant and derives the smoothed tensors' ranges without the data set.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from lowbit.atomic import write_text_atomic
from lowbit.calibration.observers import TensorRange
from lowbit.errors import CalibrationError
from lowbit.io.kinds import what_file
from lowbit.io.sniff import protobuf_fields

log = logging.getLogger(__name__)

VERSION_LINE = "# lowbit calibration table v1"
MEANS_SECTION = "lowbit_input_means"
CHANNELS_SECTION = "lowbit_channel_ranges"
_SECTION = re.compile(r"#[^\s#]")
_HEADER = re.compile(r"#\s*([A-Za-z][A-Za-z _]*?)\s*:\s*(.*)$")


@dataclass
class CalibrationTable:
    """Per-tensor ranges and how they were obtained; `skipped` maps tensor -> why it has none."""

    ranges: dict[str, TensorRange]
    method: str
    num_samples: int
    bins: int | None = None
    percentile: float | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    # Conv/Gemm node → its mean input taps (lowbit.calibration.input_means), for bias
    # correction at deploy time; written as the table's #lowbit_input_means section.
    input_means: dict[str, np.ndarray] = field(default_factory=dict)
    # MatMul/Gemm input tensor → per-channel (min, max) over the samples, for SmoothQuant
    # at deploy time (lowbit.calibration.channel_ranges); the #lowbit_channel_ranges section.
    channel_ranges: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # "# note: …" lines (auto's output check)
    # input → the shape of its first sample ("# input: x 1x3x240x320"): deploy times a model
    # with free spatial dims at the size it was calibrated on (lowbit.recipe.steps.speed)
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def clipped(self) -> dict[str, float]:
        """Tensors whose threshold cuts into their observed range: name → the fraction of
        max(|min|, |max|) cut off (0.05 = the top 5 % of the range is clipped)."""
        cut = {}
        for name, rng in self.ranges.items():
            extent = max(abs(rng.min), abs(rng.max))
            if extent > 0 and rng.threshold < extent * (1 - 1e-6):
                cut[name] = 1 - rng.threshold / extent
        return cut

    def summary(self) -> str:
        """One line for deploy's notes: the method, the samples, what it clipped."""
        text = f"activation ranges: method {self.method} on {self.num_samples} samples"
        cut = self.clipped()
        if cut:
            worst = max(cut, key=lambda name: cut[name])
            text += (f"; {len(cut)} of {len(self.ranges)} tensors clipped below their "
                     f"observed max (mean {100 * sum(cut.values()) / len(cut):.1f} %, most "
                     f"{100 * cut[worst]:.1f} % on {worst})")
        elif self.ranges:
            text += f"; none of {len(self.ranges)} tensors clipped"
        return "; ".join([text, *self.notes])


def write_table(table: CalibrationTable, path: str | Path) -> Path:
    """Write the table atomically, read back before it replaces the file at ``path``; a
    tensor name that cannot be written raises CalibrationError."""
    return write_text_atomic(path, format_table(table), check=read_table)


def format_table(table: CalibrationTable) -> str:
    """The text of a table file."""
    lines = [VERSION_LINE, f"# method: {table.method}", f"# samples: {table.num_samples}"]
    if table.bins is not None:
        lines.append(f"# bins: {table.bins}")
    if table.percentile is not None:
        lines.append(f"# percentile: {table.percentile!r}")
    lines.append(f"# created: {datetime.now(UTC).isoformat(timespec='seconds')}")
    lines += [f"# note: {' '.join(note.split())}" for note in table.notes]
    for name, shape in table.input_shapes.items():
        _check_name(name)
        lines.append(f"# input: {name} {'x'.join(str(d) for d in shape) or 'scalar'}")
    for name, reason in table.skipped.items():
        _check_name(name)
        lines.append(f"# skipped: {name} {' '.join(reason.split()) or 'unknown'}")
    lines.append("# name threshold min max")
    for name, rng in table.ranges.items():
        _check_name(name)
        values = (rng.threshold, rng.min, rng.max)
        if not all(math.isfinite(v) for v in values):
            raise CalibrationError(f"tensor {name!r} has a non-finite range {values}; "
                                   "list it in `skipped` instead")
        lines.append(" ".join([name, *(repr(float(v)) for v in values)]))
    if table.input_means:
        lines.append(f"#{MEANS_SECTION}")
        lines.append("# node shape values (the mean input each kernel tap reads)")
        for name, means in table.input_means.items():
            _check_name(name)
            shape = ",".join(str(d) for d in means.shape)
            lines.append(" ".join([name, shape, *(f"{v:.7g}" for v in means.ravel())]))
    if table.channel_ranges:
        lines.append(f"#{CHANNELS_SECTION}")
        lines.append("# tensor channels min… max… (per channel of the last axis)")
        for name, (low, high) in table.channel_ranges.items():
            _check_name(name)
            lines.append(" ".join([name, str(low.size), *(f"{v:.9g}" for v in low),
                                   *(f"{v:.9g}" for v in high)]))
    return "\n".join(lines) + "\n"


def read_table(path: str | Path) -> CalibrationTable:
    """Read a lowbit or tpu-mlir calibration table; bad content raises CalibrationError."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"calibration table not found: {path}")
    kind = what_file(path)
    if kind is not None and "calibration table" not in kind:
        raise CalibrationError(f"{path} is {kind}, not a calibration table (lowbit calibrate "
                               "writes one)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        what = "an ONNX model or another binary file" if path.suffix.lower() == ".onnx" or \
            not protobuf_fields(path).invalid else "a binary file"
        raise CalibrationError(f"{path} is {what}, not a calibration table (a text file "
                               "lowbit calibrate writes)") from None
    except OSError as err:
        raise CalibrationError(f"cannot read calibration table {path}: {err}") from err
    return parse_table(text, source=str(path))


def parse_table(text: str, *, source: str = "<text>") -> CalibrationTable:
    """Parse the text of a table; `source` names it in error messages."""
    header: dict[str, str] = {}
    skipped: dict[str, str] = {}
    ranges: dict[str, TensorRange] = {}
    first_line: dict[str, int] = {}
    means: dict[str, np.ndarray] = {}
    channels: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    notes: list[str] = []
    shapes: dict[str, tuple[int, ...]] = {}
    section: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if _SECTION.match(line):
            section = line[1:].split()[0]
            if section not in (MEANS_SECTION, CHANNELS_SECTION):
                log.warning("%s:%d: ignoring section %r of the calibration table",
                            source, number, section)
            continue
        if line.startswith("#"):
            _read_comment(line, header, skipped, notes, shapes)
            continue
        if section == MEANS_SECTION:
            name, array = _parse_means(line, source, number)
            means[name] = array
            continue
        if section == CHANNELS_SECTION:
            name, extremes = _parse_channels(line, source, number)
            channels[name] = extremes
            continue
        if section is not None:
            continue
        name, rng = _parse_range(line, source, number)
        if name in ranges:
            raise CalibrationError(f"{source}:{number}: tensor {name!r} appears twice "
                                   f"(first on line {first_line[name]})")
        ranges[name] = rng
        first_line[name] = number
    return CalibrationTable(
        ranges=ranges,
        method=header.get("method", "unknown"),
        num_samples=_header_int(header, ("samples", "sample number"), source) or 0,
        bins=_header_int(header, ("bins", "histogram number"), source),
        percentile=_header_float(header, "percentile", source),
        skipped=skipped,
        input_means=means,
        channel_ranges=channels,
        notes=notes,
        input_shapes=shapes,
    )


def _parse_channels(line: str, source: str, number: int
                    ) -> tuple[str, tuple[np.ndarray, np.ndarray]]:
    fields = line.split()
    try:
        count = int(fields[1])
        values = np.array([float(v) for v in fields[2:]], np.float64)
    except (IndexError, ValueError) as err:
        raise CalibrationError(f"{source}:{number}: a #{CHANNELS_SECTION} line reads 'tensor "
                               f"channels min... max...', found {line[:80]!r}") from err
    if count < 1 or values.size != 2 * count or not np.isfinite(values).all():
        raise CalibrationError(f"{source}:{number}: tensor {fields[0]!r}: expected "
                               f"{2 * max(count, 0)} finite values for {count} channels, "
                               f"found {values.size}")
    low, high = values[:count], values[count:]
    if np.any(low > high):
        raise CalibrationError(f"{source}:{number}: tensor {fields[0]!r}: a channel's min "
                               f"exceeds its max")
    return fields[0], (low, high)


def _parse_means(line: str, source: str, number: int) -> tuple[str, np.ndarray]:
    fields = line.split()
    try:
        shape = tuple(int(d) for d in fields[1].split(","))
        values = np.array([float(v) for v in fields[2:]], np.float64)
    except (IndexError, ValueError) as err:
        raise CalibrationError(f"{source}:{number}: a #{MEANS_SECTION} line reads 'node "
                               f"shape values...', found {line[:80]!r}") from err
    if values.size != math.prod(shape) or not np.isfinite(values).all():
        raise CalibrationError(f"{source}:{number}: node {fields[0]!r}: expected "
                               f"{math.prod(shape)} finite values for shape {shape}, "
                               f"found {values.size}")
    return fields[0], values.reshape(shape)


def _read_comment(line: str, header: dict[str, str], skipped: dict[str, str],
                  notes: list[str], shapes: dict[str, tuple[int, ...]]) -> None:
    match = _HEADER.match(line)
    if match is None:
        return
    key, value = match.group(1).strip().lower(), match.group(2).strip()
    if key == "note":
        notes.append(value)
    elif key == "input":
        name, _, dims = value.partition(" ")
        try:
            shape = tuple(int(d) for d in dims.strip().split("x")) if dims.strip() not in (
                "", "scalar") else ()
        except ValueError:
            return  # a shape lowbit did not write: the table still holds its ranges
        if name and all(d > 0 for d in shape):
            shapes[name] = shape
    elif key == "skipped":
        name, _, reason = value.partition(" ")
        if name:
            skipped[name] = reason.strip()
    else:
        header.setdefault(key, value)


def _parse_range(line: str, source: str, number: int) -> tuple[str, TensorRange]:
    fields = line.split()
    if len(fields) != 4:
        raise CalibrationError(f"{source}:{number}: expected 'name threshold min max', "
                               f"found {len(fields)} fields: {line[:80]!r}")
    name = fields[0]
    try:
        threshold, low, high = (float(v) for v in fields[1:])
    except ValueError as err:
        raise CalibrationError(f"{source}:{number}: tensor {name!r}: "
                               f"a value is not a number: {line[:80]!r}") from err
    if not all(math.isfinite(v) for v in (threshold, low, high)):
        raise CalibrationError(f"{source}:{number}: tensor {name!r}: "
                               f"values must be finite, found {line[:80]!r}")
    if threshold < 0 or low > high:
        raise CalibrationError(f"{source}:{number}: tensor {name!r}: expected threshold >= 0 "
                               f"and min <= max, found {threshold} {low} {high}")
    return name, TensorRange(threshold, low, high)


def _check_name(name: str) -> None:
    if not name or any(c.isspace() for c in name) or name.startswith("#"):
        raise CalibrationError(f"tensor name {name!r} cannot be written to a calibration table "
                               "(names must be non-empty, without whitespace, not start with '#')")


def _header_int(header: dict[str, str], keys: tuple[str, ...], source: str) -> int | None:
    for key in keys:
        if key in header:
            try:
                return int(header[key])
            except ValueError as err:
                raise CalibrationError(f"{source}: header '{key}' should be an integer, "
                                       f"found {header[key]!r}") from err
    return None


def _header_float(header: dict[str, str], key: str, source: str) -> float | None:
    if key not in header:
        return None
    try:
        return float(header[key])
    except ValueError as err:
        raise CalibrationError(f"{source}: header '{key}' should be a number, "
                               f"found {header[key]!r}") from err
