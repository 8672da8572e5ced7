"""Large embedding tables stored int8: a smaller file, no arithmetic changed.

    changed = quantize_embeddings(model)     # Gather node names, rewritten in place

Static INT8, dynamic INT8 and W4 all store a Gather's constant [V, H] table (65,536+
values) int8 with one scale per hidden channel and dequantize the gathered rows. The
last few tables quantized are remembered by their bytes: auto's output check builds the
same model once per blend, and MiniLM's 30,522 x 384 table is then quantized once.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import onnx
from onnx import numpy_helper

from lowbit.graph import FreshNames

EMBEDDING_MIN_ELEMENTS = 1 << 16
_REMEMBERED = 2  # tables whose int8 form is kept (a model has one or two)
_remembered: OrderedDict[bytes, tuple[np.ndarray, np.ndarray]] = OrderedDict()


def quantize_embeddings(model: onnx.ModelProto, min_elements: int = EMBEDDING_MIN_ELEMENTS
                        ) -> list[str]:
    """Store each large embedding table (a constant float [V, H] that a Gather reads along
    axis 0) as int8 with one scale per hidden channel, and dequantize the gathered rows:
    Gather(table_q, ids) → DequantizeLinear(axis=-1). The lookup does no arithmetic, so
    this only shrinks the file (MiniLM's word embeddings are half of it); returns the
    Gather nodes changed (in place)."""
    graph = model.graph
    tables = {i.name: i for i in graph.initializer}
    names = FreshNames.of(model)
    done: dict[str, tuple[str, str, str]] = {}
    changed: list[str] = []
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        nodes.append(node)
        table = tables.get(node.input[0]) if node.op_type == "Gather" and node.input else None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if table is None or table.data_type != onnx.TensorProto.FLOAT or len(table.dims) != 2 \
                or axis != 0 or int(np.prod(table.dims)) < min_elements:
            continue
        if table.name not in done:
            q, scale = _quantized(table)
            created = []
            for suffix, value in (("quantized", q), ("scale", scale),
                                  ("zero_point", np.zeros(scale.shape, np.int8))):
                name = names.make(f"{table.name}_{suffix}")
                graph.initializer.append(numpy_helper.from_array(value, name))
                created.append(name)
            done[table.name] = (created[0], created[1], created[2])
        q_name, scale_name, zero_name = done[table.name]
        rows = names.make(f"{node.output[0]}_quantized")
        output = node.output[0]
        node.input[0] = q_name
        node.output[0] = rows
        nodes.append(onnx.helper.make_node(
            "DequantizeLinear", [rows, scale_name, zero_name], [output], axis=-1,
            name=names.make(f"{node.name or output}_DequantizeLinear")))
        changed.append(node.name or output)
    if changed:
        del graph.node[:]
        graph.node.extend(nodes)
        used = {x for n in graph.node for x in n.input}
        # Deleted one by one: rebuilding the list would copy every weight.
        for index in reversed(range(len(graph.initializer))):
            if graph.initializer[index].name not in used:
                del graph.initializer[index]
    return changed


def _quantized(table: onnx.TensorProto) -> tuple[np.ndarray, np.ndarray]:
    """The table as int8 with one scale per hidden channel (axis 1): (q [V, H], scale [H])."""
    stored = table.raw_data if table.HasField("raw_data") else \
        numpy_helper.to_array(table).tobytes()
    key = hashlib.sha1(stored, usedforsecurity=False).digest() + \
        np.asarray(table.dims, np.int64).tobytes() + bytes([table.data_type])
    del stored
    if key in _remembered:
        _remembered.move_to_end(key)
        return _remembered[key]
    values = numpy_helper.to_array(table).astype(np.float32)
    absmax = np.abs(values).max(axis=0)
    scale = np.where(absmax > 0, absmax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(values / scale), -127, 127).astype(np.int8)
    _remembered[key] = (q, scale)
    while len(_remembered) > _REMEMBERED:
        _remembered.popitem(last=False)
    return q, scale
