"""Custom operators written once as ONNX functions, through transform → calibrate → deploy →
compare; an op with no function or kernel is refused in one line that says how to register it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from lowbit.api import calibrate, compare, deploy, transform
from lowbit.cli.main import main
from lowbit.errors import UnsupportedOpError, UsageError
from lowbit.ops import (
    CUSTOM_DOMAIN,
    add_function,
    attribute_ref,
    check_custom_ops,
    function,
    inline_functions,
    node,
)
from lowbit.runtime import create_session
from tests.models import small_resnet

X = np.random.default_rng(0).normal(size=(8, 3, 16, 16)).astype(np.float32)


def power_difference() -> onnx.FunctionProto:
    """PowerDifference(x, y; p) = (x - y)^p."""
    return function("PowerDifference", ["x", "y"], ["z"], [
        node("Sub", ["x", "y"], ["d"]),
        node("Constant", [], ["p"], value_float=attribute_ref("p")),
        node("Pow", ["d", "p"], ["z"]),
    ], attributes=["p"])


def cnn_with(fn: onnx.FunctionProto | None, domain: str = CUSTOM_DOMAIN) -> onnx.ModelProto:
    """small_resnet with PowerDifference(relu1, 0.1; p=2) feeding conv2."""
    model = small_resnet()
    graph = model.graph
    graph.initializer.append(numpy_helper.from_array(np.full((1, 16, 1, 1), 0.1, np.float32),
                                                     "shift"))
    index = next(i for i, n in enumerate(graph.node) if n.name == "conv2")
    graph.node.insert(index, node("PowerDifference", ["r1", "shift"], ["pd"], domain=domain,
                                  name="powdiff", p=2.0))
    graph.node[index + 1].input[0] = "pd"
    if fn is None:
        model.opset_import.append(onnx.helper.make_opsetid(domain, 1))
        return model
    return add_function(model, fn)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("custom_ops")
    onnx.save(cnn_with(power_difference()), root / "fn.onnx")
    np.savez(root / "x.npz", input=X)
    return root


def test_the_function_computes_its_body() -> None:
    model = cnn_with(power_difference())
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"input": X[:2]}
    # The same graph with the function's body written out by hand gives the same outputs.
    flat = inline_functions(model)
    assert not flat.functions and {"Sub", "Pow"} <= {n.op_type for n in flat.graph.node}
    expected = ort.InferenceSession(flat.SerializeToString(),
                                    providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(session.run(None, feeds)[0], expected, rtol=1e-6, atol=1e-6)


def test_onnx_runtime_inlines_it_so_it_runs_as_standard_kernels(tmp_path) -> None:
    """Full speed: the graph ORT executes holds Sub and Pow kernels, no function call."""
    path = tmp_path / "optimized.onnx"
    create_session(cnn_with(power_difference()), optimized_model_path=path,
                   optimization_level="basic")
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert {"Sub", "Pow"} <= ops and "PowerDifference" not in ops


def test_calibrate_and_deploy_quantize_around_it(work: Path) -> None:
    f32 = transform(work / "fn.onnx", work / "fn.f32.onnx", test_input=work / "x.npz")
    table = calibrate(f32.path, work / "x.npz", output=work / "fn.calib", method="minmax",
                      progress=False)
    assert "pd" in table.ranges  # the function's output is observed
    result = deploy(f32.path, calibration_table=work / "fn.calib",
                    output=work / "fn.int8.onnx", test_input=work / "x.npz",
                    test_reference=f32.reference_path)
    kept = {d.name: d.reason for d in result.left_float}
    assert list(kept) == ["powdiff"] and "PowerDifference" in kept["powdiff"]
    assert result.passed
    assert result.advice is not None and not result.advice.float_ops  # every conv integer
    assert any(f.name == "PowerDifference" for f in onnx.load(result.path).functions)


def test_compare_shows_it_layer_by_layer(work: Path) -> None:
    if not (work / "fn.int8.onnx").exists():
        pytest.skip("needs the deploy test's model")
    report = compare(work / "fn.f32.onnx", work / "fn.int8.onnx", work / "x.npz",
                     progress=False)
    row = next(d for d in report.diffs if d.name == "pd")
    assert row.op_type == "PowerDifference" and row.cosine > 0.99 and row.passed


def test_inlined_it_is_calibrated_inside(work: Path) -> None:
    f32 = transform(work / "fn.onnx", work / "inside.f32.onnx",
                    passes="inline_functions,fold_constants,lift_constants,remove_dead_nodes")
    model = onnx.load(f32.path)
    assert not model.functions and "Pow" in {n.op_type for n in model.graph.node}
    table = calibrate(f32.path, work / "x.npz", output=work / "inside.calib", method="minmax",
                      progress=False)
    subtracted = next(n.output[0] for n in model.graph.node if n.op_type == "Sub")
    assert subtracted in table.ranges  # a tensor inside the function


def test_an_op_nothing_implements_is_one_line_exit_2(tmp_path, capsys) -> None:
    onnx.save(cnn_with(None, domain="custom.ops"), tmp_path / "unknown.onnx")
    out = tmp_path / "m.f32.onnx"
    assert main(["transform", str(tmp_path / "unknown.onnx"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    for needle in ("powdiff", "PowerDifference", "domain custom.ops", "lowbit.ops.function",
                   "the custom-ops extra"):
        assert needle in err
    assert not out.exists()
    assert main(["bench", str(tmp_path / "unknown.onnx"), "--repeats", "1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "custom operator PowerDifference" in err


def test_check_custom_ops_accepts_functions_and_known_domains() -> None:
    check_custom_ops(cnn_with(power_difference()))
    check_custom_ops(small_resnet())
    with pytest.raises(UnsupportedOpError, match="domain ai.onnx.contrib"):
        check_custom_ops(cnn_with(None, domain="ai.onnx.contrib"))


def test_the_helper_refuses_a_broken_body() -> None:
    with pytest.raises(UsageError, match="reads q that nothing produces"):
        function("Broken", ["x"], ["z"], [node("Mul", ["x", "q"], ["z"])])
    with pytest.raises(UsageError, match="already has a function"):
        add_function(cnn_with(power_difference()), power_difference())


def test_lowbit_ops_is_importable_from_the_top() -> None:
    import lowbit.ops

    assert lowbit.ops.function is function


def test_the_example_runs_around_and_inside(tmp_path) -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "examples" / "custom_op" / "power_difference.py"
    around = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "a")],
                            capture_output=True, text=True, check=False, timeout=600)
    assert around.returncode == 0, around.stderr
    assert "left float: powdiff (PowerDifference)" in around.stdout
    assert "3/3 conv/matmul/gemm run as integer kernels" in around.stdout
    inside = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "i"),
                             "--inside"], capture_output=True, text=True, check=False,
                            timeout=600)
    assert inside.returncode == 0, inside.stderr
    assert "Pow" in inside.stdout and "PowerDifference" not in inside.stdout
