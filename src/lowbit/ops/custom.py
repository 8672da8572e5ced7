"""Which custom operators a model uses, and which of them nothing can run.

    unregistered_ops(model)          # [("custom.ops", "PowerDifference", "powdiff")]
    check_custom_ops(model, "m.onnx")  # UnsupportedOpError naming the op and how to register it

An op is custom when its domain is not one ONNX Runtime's CPU provider implements
(the ONNX domains and com.microsoft). It runs when the model holds a function of the
same domain and name, or when it is a Python op registered in this process
(lowbit.ops.python_op); otherwise nothing lowbit loads can run it.
"""

from __future__ import annotations

import re

import onnx

from lowbit.errors import UnsupportedOpError

CUSTOM_DOMAIN = "lowbit.custom"
# Domains ONNX Runtime's CPU provider has kernels for.
KNOWN_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training",
                           "com.microsoft", "com.microsoft.nchwc", "com.ms.internal.nhwc"})
_ORT_UNREGISTERED = re.compile(r"([\w.]*):(\w+)\(-?\d+\) is not a registered function/op")


def registration_hint(domain: str, op_type: str) -> str:
    return (f"register {domain}::{op_type} once: as an ONNX function of standard ops "
            f"(lowbit.ops.function, added with lowbit.ops.add_function) or, for Python code, "
            f"with lowbit.ops.python_op (the custom-ops extra: pip install '.[custom-ops]')")


def unregistered_ops(model: onnx.ModelProto) -> list[tuple[str, str, str]]:
    """(domain, op type, node name) of every node whose op nothing implements."""
    from lowbit.ops.python import PYTHON_DOMAIN, registered_python_ops

    functions = {(f.domain, f.name) for f in model.functions}
    functions |= {(PYTHON_DOMAIN, name) for name in registered_python_ops()}
    found = []
    for graph_node in _all_nodes(model.graph):
        key = (graph_node.domain, graph_node.op_type)
        if graph_node.domain not in KNOWN_DOMAINS and key not in functions:
            found.append((graph_node.domain, graph_node.op_type, graph_node.name))
    return found


def check_custom_ops(model: onnx.ModelProto, where: str = "the model") -> None:
    """UnsupportedOpError, in one line, for the first op with no function or kernel."""
    missing = unregistered_ops(model)
    if missing:
        domain, op_type, name = missing[0]
        more = f" (and {len(missing) - 1} more node(s))" if len(missing) > 1 else ""
        raise UnsupportedOpError(
            f"{where}: node {name or '(unnamed)'} is a custom operator {op_type} of domain "
            f"{domain} with no kernel{more}; {registration_hint(domain, op_type)}")


def explain_ort_error(message: str, where: str) -> str | None:
    """ORT's "X:Y(-1) is not a registered function/op" as lowbit's one line, else None."""
    match = _ORT_UNREGISTERED.search(message)
    if match is None:
        return None
    domain, op_type = match.group(1), match.group(2)
    return (f"{where} uses the custom operator {op_type} of domain {domain}, which has no "
            f"kernel; {registration_hint(domain, op_type)}")


def _all_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    found = []
    for graph_node in graph.node:
        found.append(graph_node)
        for attribute in graph_node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                found += _all_nodes(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for sub in attribute.graphs:
                    found += _all_nodes(sub)
    return found
