"""Custom operators: write one once as an ONNX function and every verb runs models using it.

    power_difference = function("PowerDifference", ["x", "y"], ["z"], [
        node("Sub", ["x", "y"], ["d"]),
        node("Constant", [], ["p"], value_float=attribute_ref("p")),
        node("Pow", ["d", "p"], ["z"]),
    ], attributes=["p"])
    model = add_function(model, power_difference)       # a node of domain "lowbit.custom"
    inside = inline_functions(model)                     # Sub/Pow in the graph: quantized inside
    check_custom_ops(model)                              # UnsupportedOpError: op with no kernel

A model-local function (a FunctionProto, written by :func:`function` or already in the
model) is made of standard ops: ONNX Runtime inlines it when it loads the model, so it
runs at full speed, and lowbit calibrates through it, quantizes around it (the function
node stays float, with the reason, while its neighbours run integer kernels) or, after
:func:`inline_functions` (the ``inline_functions`` graph pass), inside it, and compares it
layer by layer. Arbitrary Python/numpy code registers with :func:`python_op`
(onnxruntime-extensions): it runs in every verb, stays float
in deploy, and pays a Python round trip per call. An op of another domain with neither
a function nor a kernel is refused by :func:`check_custom_ops`, in one line that names
it and says how to register it.
"""

from lowbit.ops.custom import CUSTOM_DOMAIN, check_custom_ops, registration_hint, unregistered_ops
from lowbit.ops.function import add_function, attribute_ref, function, inline_functions, node
from lowbit.ops.python import PYTHON_DOMAIN, python_op, registered_python_ops

__all__ = ["CUSTOM_DOMAIN", "PYTHON_DOMAIN", "add_function", "attribute_ref",
           "check_custom_ops", "function", "inline_functions", "node", "python_op",
           "registered_python_ops", "registration_hint", "unregistered_ops"]
