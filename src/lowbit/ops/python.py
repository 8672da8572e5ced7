"""Custom operators as Python (numpy) code, run by onnxruntime-extensions (the custom-ops extra).

    @python_op("PowerDifferencePy", inputs=2, attrs={"p": "float"})
    def power_difference(x, y, **attrs):
        return (x - y) ** attrs["p"]

    node("PowerDifferencePy", ["a", "b"], ["c"], domain=PYTHON_DOMAIN, p=2.0)

Once registered, every ONNX Runtime session lowbit creates loads onnxruntime-extensions'
library, which calls the function on every run: the model calibrates (its output is
observed like any tensor), deploys (the node stays float, with the reason), compares,
evaluates and benches. Each call crosses from ONNX Runtime into Python and back, which
costs far more than the same math in standard ops: ``lowbit bench --profile`` shows
that time per op. Inputs and outputs are float32 tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lowbit.errors import UsageError, install_hint

PYTHON_DOMAIN = "ai.onnx.contrib"  # the one domain onnxruntime-extensions' Python ops use
_ATTRIBUTE_TYPES = ("float", "int", "string")
_REGISTERED: dict[str, Callable[..., Any]] = {}


def python_op(op_type: str, *, inputs: int = 1, outputs: int = 1,
              attrs: Mapping[str, str] | None = None
              ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as the kernel of ``ai.onnx.contrib::op_type``
    (float32 inputs and outputs; ``attrs`` maps attribute names to float, int or string,
    passed to the function as keywords). UsageError when the extra is missing."""
    try:
        from onnxruntime_extensions import PyCustomOpDef, onnx_op
    except ImportError as err:
        raise UsageError("Python custom operators need onnxruntime-extensions: "
                         f"{install_hint('custom-ops')}") from err
    if not op_type.isidentifier():
        raise UsageError(f"a custom operator's name is an identifier, got {op_type!r}")
    if op_type in _REGISTERED:
        raise UsageError(f"a Python operator {op_type} is already registered")
    kinds = {"float": PyCustomOpDef.dt_float, "int": PyCustomOpDef.dt_int64,
             "string": PyCustomOpDef.dt_string}
    unknown = {name: kind for name, kind in (attrs or {}).items() if kind not in kinds}
    if unknown:
        raise UsageError(f"attribute types must be {', '.join(_ATTRIBUTE_TYPES)}; got {unknown}")

    def register(function: Callable[..., Any]) -> Callable[..., Any]:
        onnx_op(op_type=op_type, inputs=[PyCustomOpDef.dt_float] * inputs,
                outputs=[PyCustomOpDef.dt_float] * outputs,
                attrs={name: kinds[kind] for name, kind in (attrs or {}).items()})(function)
        _register_schema(op_type, inputs, outputs, attrs or {})
        _REGISTERED[op_type] = function
        return function

    return register


def _register_schema(op_type: str, inputs: int, outputs: int,
                     attrs: Mapping[str, str]) -> None:
    """An ONNX schema saying the op's inputs and outputs are float tensors, so that shape
    inference types its outputs and calibrate observes them like any other tensor."""
    import onnx
    from onnx import defs

    kinds = {"float": defs.OpSchema.AttrType.FLOAT, "int": defs.OpSchema.AttrType.INT,
             "string": defs.OpSchema.AttrType.STRING}
    schema = defs.OpSchema(
        op_type, PYTHON_DOMAIN, 1,
        inputs=[defs.OpSchema.FormalParameter(f"input_{i}", "tensor(float)")
                for i in range(inputs)],
        outputs=[defs.OpSchema.FormalParameter(f"output_{i}", "tensor(float)")
                 for i in range(outputs)],
        attributes=[defs.OpSchema.Attribute(name, kinds[kind], "", required=False)
                    for name, kind in attrs.items()])

    def infer(context: Any) -> None:  # every output a float32 tensor of unknown shape
        for index in range(context.get_num_outputs()):
            found = onnx.TypeProto()
            found.tensor_type.elem_type = onnx.TensorProto.FLOAT
            context.set_output_type(index, found)

    schema.set_type_and_shape_inference_function(infer)
    defs.register_schema(schema)


def registered_python_ops() -> frozenset[str]:
    return frozenset(_REGISTERED)


def extensions_library() -> str | None:
    """The onnxruntime-extensions library to load into every session, once a Python op is
    registered in this process; else None (sessions stay as they were)."""
    if not _REGISTERED:
        return None
    from onnxruntime_extensions import get_library_path

    return str(get_library_path())
