"""Checks every pass test shares: graph invariants and "computes what the original did".

    assert_invariants(model)                       # sorted, named, connected, checker passes
    assert_same_outputs(original, rewritten, feeds)

Models run on ONNX Runtime with its graph optimizations off, so ORT's own fusions
cannot hide a wrong rewrite.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir

from lowbit.passes import get_pass
from lowbit.passes.finish import finish
from lowbit.runtime import create_session


def ops(model: onnx.ModelProto) -> list[str]:
    return [node.op_type for node in model.graph.node]


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return create_session(model, graph_optimization=False).run(None, feeds)


def run_pass(model: onnx.ModelProto, name: str) -> tuple[onnx.ModelProto, int]:
    """The model after one registered pass (then sorted, named, shapes inferred), and its count."""
    ir_model = ir.from_proto(model)
    count = get_pass(name).run(ir_model)
    assert_ir_sorted(ir_model)  # before finish() sorts: the pass itself kept the order
    return finish(ir_model), count


def assert_ir_sorted(model: ir.Model) -> None:
    """Every node's inputs exist before it: graph inputs, initializers, earlier outputs."""
    seen: set[ir.Value] = set(model.graph.inputs) | set(model.graph.initializers.values())
    for node in model.graph:
        late = [v.name for v in node.inputs if v is not None and v not in seen]
        assert not late, f"{node.name} ({node.op_type}) reads {late} before they are computed"
        seen.update(node.outputs)


def assert_invariants(model: onnx.ModelProto) -> None:
    """Topological order, every input produced, unique node and value names, checker passes."""
    graph = model.graph
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    names: set[str] = set()
    for node in graph.node:
        missing = [name for name in node.input if name not in known]
        assert not missing, f"{node.name} ({node.op_type}) reads {missing} before they exist"
        assert node.name and node.name not in names, f"node name {node.name!r} missing or twice"
        names.add(node.name)
        for out in node.output:
            assert out not in known, f"value {out!r} is produced twice"
            known.add(out)
    assert all(o.name in known for o in graph.output), "a graph output is not produced"
    onnx.checker.check_model(model, full_check=True)


def assert_same_outputs(original: onnx.ModelProto, rewritten: onnx.ModelProto,
                        feeds: dict[str, np.ndarray], rtol: float = 1e-4) -> None:
    """Same output names, and values equal within float32 rounding of the rewritten weights."""
    assert [o.name for o in rewritten.graph.output] == [o.name for o in original.graph.output]
    for want, got in zip(run(original, feeds), run(rewritten, feeds), strict=True):
        assert got.shape == want.shape
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)
