"""The qtable: which ops leave INT8, and at what precision (tpu-mlir compatible).

    table = QTable({"conv5": "F32", "fc": "F16"})
    write_qtable(table, "model.qtable")        # temp file + rename: never half-written
    table = read_qtable("model.qtable")        # also reads tpu-mlir's qtables as they are
    keep = resolve_qtable(table, model)        # {node name: precision}, INT8 rows dropped

The file reads::

    # lowbit qtable v1
    # loss: order name op_type sqnr_db cosine
    # loss 1 conv5 Conv 31.2 0.99961
    conv5 F32
    fc F16

Lines are ``op_name PRECISION`` with PRECISION one of F32, F16, BF16, INT8. Lines
starting with ``#`` are comments; ``# loss`` lines carry the sensitivity ranking the
table was chosen from (``QTable.loss``). tpu-mlir names an op by its output tensor, so
a name matches a node's name or, failing that, the name of its first output.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import onnx

from lowbit.atomic import write_text_atomic
from lowbit.errors import CalibrationError, UsageError

log = logging.getLogger(__name__)

VERSION_LINE = "# lowbit qtable v1"
PRECISIONS = ("F32", "F16", "BF16", "INT8")
FLOAT_PRECISIONS = ("F32", "F16", "BF16")
_LOSS_HEADER = "# loss: order name op_type sqnr_db cosine"


@dataclass(frozen=True)
class LossRow:
    """One op's sensitivity: the network output vs F32 when this op alone stays float."""

    order: int
    name: str
    op_type: str
    sqnr_db: float
    cosine: float


@dataclass
class QTable:
    """Op name → precision; ``loss``: the ranking it was chosen from, when known."""

    precisions: dict[str, str]
    loss: list[LossRow] | None = None

    def __post_init__(self) -> None:
        for name, precision in self.precisions.items():
            if precision not in PRECISIONS:
                raise UsageError(f"qtable entry '{name}' has precision '{precision}'; "
                                 f"choose one of {', '.join(PRECISIONS)}")
            if not name or any(ch.isspace() for ch in name):
                raise UsageError(f"qtable op name {name!r} cannot be written: it is empty or "
                                 "holds white space")


def format_qtable(table: QTable) -> str:
    """The text of a qtable file."""
    lines = [VERSION_LINE]
    if table.loss:
        lines.append(_LOSS_HEADER)
        lines += [f"# loss {row.order} {row.name} {row.op_type} {row.sqnr_db!r} {row.cosine!r}"
                  for row in table.loss]
    lines += [f"{name} {precision}" for name, precision in table.precisions.items()]
    return "\n".join(lines) + "\n"


def write_qtable(table: QTable, path: str | Path) -> Path:
    """Write the table atomically (temp file in the same folder, read back, then renamed)."""
    return write_text_atomic(path, format_qtable(table), check=read_qtable)


def read_qtable(path: str | Path) -> QTable:
    """Read a lowbit or tpu-mlir qtable; a bad line raises CalibrationError naming file:line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CalibrationError(f"qtable not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CalibrationError(f"qtable {path} cannot be read: {err}") from err
    precisions: dict[str, str] = {}
    loss: list[LossRow] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        where = f"{path}:{number}"
        if line.startswith("#"):
            if line.startswith("# loss ") and not line.startswith("# loss:"):
                loss.append(_loss_row(line, where))
            continue
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise CalibrationError(f"{where}: expected 'op_name PRECISION', found {line!r}")
        name, precision = parts[0], parts[1].upper()
        if precision not in PRECISIONS:
            raise CalibrationError(f"{where}: unknown precision '{parts[1]}' for '{name}'; "
                                   f"valid: {', '.join(PRECISIONS)}")
        if name in precisions and precisions[name] != precision:
            raise CalibrationError(f"{where}: '{name}' is listed twice, as {precisions[name]} "
                                   f"and {precision}")
        precisions[name] = precision
    return QTable(precisions, loss or None)


def _loss_row(line: str, where: str) -> LossRow:
    parts = line.split()[2:]
    try:
        order, name, op_type, sqnr, cos = parts
        return LossRow(int(order), name, op_type, float(sqnr), float(cos))
    except ValueError:
        raise CalibrationError(f"{where}: expected '# loss ORDER NAME OP_TYPE SQNR_DB COSINE', "
                               f"found {line!r}") from None


def resolve_qtable(table: QTable | Mapping[str, str], model: onnx.ModelProto) -> dict[str, str]:
    """Map the table's entries to node names of ``model`` (INT8 rows dropped).

    A name matches a node's name first, else a node's first output (tpu-mlir's naming).
    Names that match nothing raise UsageError listing them.
    """
    precisions = table.precisions if isinstance(table, QTable) else dict(table)
    by_name = {node.name: node.name for node in model.graph.node if node.name}
    by_output = {node.output[0]: node.name for node in model.graph.node
                 if node.output and node.output[0] and node.name}
    resolved: dict[str, str] = {}
    unknown: list[str] = []
    for name, precision in precisions.items():
        if name in by_name:
            node = by_name[name]
            log.debug("qtable '%s' matches a node name", name)
        elif name in by_output:
            node = by_output[name]
            log.debug("qtable '%s' matches the first output of node '%s'", name, node)
        else:
            unknown.append(name)
            continue
        if precision != "INT8":
            resolved[node] = precision
    if unknown:
        shown = ", ".join(unknown[:8]) + (f" and {len(unknown) - 8} more" if len(unknown) > 8
                                          else "")
        raise UsageError(f"the qtable names {len(unknown)} op(s) not in the model: {shown} "
                         "(neither a node name nor a node's first output)")
    return resolved
