"""Custom operators as ONNX functions (FunctionProto) built from standard ops.

    fn = function("PowerDifference", ["x", "y"], ["z"], [
        node("Sub", ["x", "y"], ["d"]),
        node("Constant", [], ["p"], value_float=attribute_ref("p")),
        node("Pow", ["d", "p"], ["z"]),
    ], attributes=["p"])
    model = add_function(model, fn)               # the model now declares lowbit.custom v1
    call = node("PowerDifference", ["a", "b"], ["c"], domain=fn.domain, p=2.0)
    flat = inline_functions(model)                # every call replaced by its body

``attribute_ref("p")`` makes a body node's attribute take the value the calling node
gives for ``p`` (ONNX's ``ref_attr_name``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import onnx
from onnx import helper, inliner

from lowbit.errors import UsageError
from lowbit.ops.custom import CUSTOM_DOMAIN

OPSET = 17


@dataclass(frozen=True)
class AttributeRef:
    """A body attribute that takes its value from the calling node's attribute ``name``."""

    name: str


def attribute_ref(name: str) -> AttributeRef:
    return AttributeRef(name)


_REF_TYPES = {"value_float": onnx.AttributeProto.FLOAT, "value_int": onnx.AttributeProto.INT,
              "value_floats": onnx.AttributeProto.FLOATS, "value_ints": onnx.AttributeProto.INTS,
              "value_string": onnx.AttributeProto.STRING}


def node(op_type: str, inputs: Sequence[str], outputs: Sequence[str], *, domain: str = "",
         name: str | None = None, **attributes: Any) -> onnx.NodeProto:
    """onnx.helper.make_node, where an attribute may be :func:`attribute_ref` (the type is
    taken from the attribute's name for Constant's ``value_*``, else given as ``type``)."""
    refs = {key: value for key, value in attributes.items() if isinstance(value, AttributeRef)}
    plain = {key: value for key, value in attributes.items() if key not in refs}
    made = helper.make_node(op_type, list(inputs), list(outputs), name=name, domain=domain,
                            **plain)
    for key, ref in refs.items():
        kind = _REF_TYPES.get(key)
        if kind is None:
            raise UsageError(f"attribute_ref for {op_type}'s {key!r}: lowbit knows the type "
                             f"only of Constant's {', '.join(_REF_TYPES)}")
        made.attribute.append(onnx.AttributeProto(name=key, ref_attr_name=ref.name,
                                                  type=kind))
    return made


def function(name: str, inputs: Sequence[str], outputs: Sequence[str],
             nodes: Sequence[onnx.NodeProto], *, domain: str = CUSTOM_DOMAIN,
             attributes: Sequence[str] = (), opset: int = OPSET,
             doc: str = "") -> onnx.FunctionProto:
    """A FunctionProto ``domain::name`` whose body is ``nodes`` (standard ONNX ops at
    ``opset``); checked by onnx's checker, UsageError when it is not valid."""
    if not name.isidentifier():
        raise UsageError(f"a custom operator's name is an identifier, got {name!r}")
    made = helper.make_function(domain, name, list(inputs), list(outputs), list(nodes),
                                [helper.make_opsetid("", opset)], list(attributes),
                                doc_string=doc)
    produced = {out for n in nodes for out in n.output} | set(inputs)
    missing = [i for n in nodes for i in n.input if i and i not in produced]
    unset = [o for o in outputs if o not in produced]
    if missing or unset:
        raise UsageError(f"function {domain}::{name}: body reads {', '.join(missing) or '-'} "
                         f"that nothing produces; outputs {', '.join(unset) or '-'} unset")
    return made


def add_function(model: onnx.ModelProto, fn: onnx.FunctionProto) -> onnx.ModelProto:
    """A copy of ``model`` holding ``fn`` and importing its domain (version 1)."""
    found = onnx.ModelProto()
    found.CopyFrom(model)
    if any((f.domain, f.name) == (fn.domain, fn.name) for f in found.functions):
        raise UsageError(f"the model already has a function {fn.domain}::{fn.name}")
    found.functions.append(fn)
    if not any(o.domain == fn.domain for o in found.opset_import):
        found.opset_import.append(helper.make_opsetid(fn.domain, 1))
    try:
        onnx.checker.check_model(found)
    except onnx.checker.ValidationError as err:
        raise UsageError(f"function {fn.domain}::{fn.name} does not fit the model: "
                         f"{str(err).splitlines()[0]}") from err
    return found


def inline_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with every call of a model-local function replaced by its body (so
    calibrate and deploy see, and quantize, the standard ops inside)."""
    return inliner.inline_local_functions(model)
