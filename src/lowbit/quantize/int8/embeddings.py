"""Large embedding tables stored int8: a smaller file, no arithmetic changed.

    changed = quantize_embeddings(model)     # Gather node names, rewritten in place

Static INT8, dynamic INT8 and W4 all store a Gather's constant [V, H] table (65,536+
values) int8 with one scale per hidden channel and dequantize the gathered rows.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from lowbit.graph import FreshNames

EMBEDDING_MIN_ELEMENTS = 1 << 16


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
            array = numpy_helper.to_array(table).astype(np.float32)
            absmax = np.abs(array).max(axis=0)
            scale = np.where(absmax > 0, absmax / 127.0, 1.0).astype(np.float32)
            q = np.clip(np.rint(array / scale), -127, 127).astype(np.int8)
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
