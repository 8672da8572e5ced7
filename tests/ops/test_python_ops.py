"""A custom operator whose kernel is a Python function (onnxruntime-extensions) runs in
calibrate, deploy (kept float, with the reason), compare, eval and bench; the op profile
shows what each call costs. Run in a fresh interpreter: a registration lasts for the process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime_extensions")

FLOW = r"""
import json, sys
import numpy as np, onnx
from onnx import numpy_helper
sys.path.insert(0, {root!r})
from lowbit.api import calibrate, compare, deploy, evaluate, transform
from lowbit.analysis.bench import BenchSettings, bench_models
from lowbit.analysis.profile import profile_model
from lowbit.ops import PYTHON_DOMAIN, node, python_op
from tests.models import small_resnet

calls = []

@python_op("PowerDifferencePy", inputs=2, attrs={{"p": "float"}})
def power_difference(x, y, **attrs):
    calls.append(x.shape)
    return ((x - y) ** attrs["p"]).astype(np.float32)

work = __import__("pathlib").Path({work!r})
model = small_resnet()
graph = model.graph
graph.initializer.append(numpy_helper.from_array(np.full((1, 16, 1, 1), 0.1, np.float32), "shift"))
index = next(i for i, n in enumerate(graph.node) if n.name == "conv2")
graph.node.insert(index, node("PowerDifferencePy", ["r1", "shift"], ["pd"], domain=PYTHON_DOMAIN,
                              name="powdiff", p=2.0))
graph.node[index + 1].input[0] = "pd"
model.opset_import.append(onnx.helper.make_opsetid(PYTHON_DOMAIN, 1))
onnx.save(model, work / "py.onnx")
rng = np.random.default_rng(0)
np.savez(work / "x.npz", input=rng.normal(size=(8, 3, 16, 16)).astype(np.float32),
         label=rng.integers(0, 10, 8))
f32 = transform(work / "py.onnx", work / "py.f32.onnx", test_input=work / "x.npz")
table = calibrate(f32.path, work / "x.npz", output=work / "py.calib", method="minmax",
                  progress=False)
result = deploy(f32.path, calibration_table=work / "py.calib", output=work / "py.int8.onnx",
                test_input=work / "x.npz", test_reference=f32.reference_path)
report = compare(f32.path, result.path, work / "x.npz", progress=False)
scores = evaluate(result.path, work / "x.npz")
timed = bench_models([result.path], BenchSettings(batches=(1,), repeats=3), progress=False)
profile = profile_model(result.path, batch=1, runs=3, threads=1)
print(json.dumps({{
    "calls": len(calls), "pd_range": "pd" in table.ranges,
    "left_float": {{d.name: d.reason for d in result.left_float}}, "passed": result.passed,
    "integer": result.advice.summary() if result.advice else "",
    "compared": {{d.name: d.op_type for d in report.diffs}},
    "evaluated": scores is not None, "bench_ms": timed.results[0].timing(1).median_ms,
    "profile": {{row.op_type: row.total_ms for row in profile.rows}},
    "explain": __import__("lowbit.analysis.explain", fromlist=["x"]).explain_int8(
        result.path, threads=1).summary(),
}}))
"""


def test_a_python_op_runs_through_every_verb(tmp_path: Path) -> None:
    root = str(Path(__file__).resolve().parents[2])
    done = subprocess.run([sys.executable, "-c", FLOW.format(root=root, work=str(tmp_path))],
                          capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["calls"] > 10 and found["pd_range"]  # ORT called it; calibrate observed it
    assert list(found["left_float"]) == ["powdiff"]
    assert "ai.onnx.contrib::PowerDifferencePy" in found["left_float"]["powdiff"]
    assert found["passed"] and found["integer"].startswith("4/4")
    assert found["compared"]["pd"] == "PowerDifferencePy"
    assert found["evaluated"] and found["bench_ms"] > 0
    assert found["profile"]["PowerDifferencePy"] > 0  # the bridge's cost, per op
    assert "in 1 custom op(s) (slowest powdiff PowerDifferencePy:" in found["explain"]


def test_registering_without_the_extra_or_twice_is_a_usage_error(tmp_path: Path) -> None:
    code = r"""
import importlib.abc, sys
from lowbit.errors import UsageError
from lowbit.ops import python_op
try:
    python_op("Bad name")
except UsageError as err:
    print("name:", err)
python_op("Twice")(lambda x: x)
try:
    python_op("Twice")(lambda x: x)
except UsageError as err:
    print("twice:", err)
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.startswith("onnxruntime_extensions"):
            raise ImportError(name)
sys.meta_path.insert(0, Block())
for key in [k for k in sys.modules if k.startswith("onnxruntime_extensions")]:
    del sys.modules[key]
try:
    python_op("Other")
except UsageError as err:
    print("missing:", err)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "name: a custom operator's name is an identifier" in done.stdout
    assert "twice: a Python operator Twice is already registered" in done.stdout
    assert "missing: Python custom operators need onnxruntime-extensions" in done.stdout
    assert "pip install '.[custom-ops]'" in done.stdout


def test_the_example_with_a_python_kernel(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "examples" / "custom_op" / "power_difference.py"
    done = subprocess.run([sys.executable, str(script), "--out", str(tmp_path), "--python"],
                          capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "left float: powdiff (PowerDifference): no INT8 rule for ai.onnx.contrib" in done.stdout
    assert "profile: PowerDifference" in done.stdout


OPS_FILE = r"""
import numpy as np
from lowbit.ops import python_op

@python_op("PowerDifferencePy", inputs=2, attrs={"p": "float"})
def power_difference(x, y, **attrs):
    return ((x - y) ** attrs["p"]).astype(np.float32)
"""

MAKE_MODEL = r"""
import sys
import numpy as np, onnx
from onnx import numpy_helper
sys.path.insert(0, {root!r})
from lowbit.ops import PYTHON_DOMAIN, node
from tests.models import small_resnet
model = small_resnet()
graph = model.graph
graph.initializer.append(numpy_helper.from_array(np.full((1, 16, 1, 1), 0.1, np.float32), "shift"))
index = next(i for i, n in enumerate(graph.node) if n.name == "conv2")
graph.node.insert(index, node("PowerDifferencePy", ["r1", "shift"], ["pd"], domain=PYTHON_DOMAIN,
                              name="powdiff", p=2.0))
graph.node[index + 1].input[0] = "pd"
model.opset_import.append(onnx.helper.make_opsetid(PYTHON_DOMAIN, 1))
onnx.save(model, {path!r})
np.savez({data!r}, input=np.random.default_rng(0).normal(size=(8, 3, 16, 16)).astype(np.float32))
"""


def test_the_command_line_registers_python_ops_with_ops_file(tmp_path: Path) -> None:
    """`lowbit --ops FILE` runs the file first, so every command knows the op; without it
    the op is one line naming how to register it."""
    root = str(Path(__file__).resolve().parents[2])
    model, data = tmp_path / "py.onnx", tmp_path / "x.npz"
    subprocess.run([sys.executable, "-c", MAKE_MODEL.format(root=root, path=str(model),
                                                           data=str(data))], check=True)
    ops = tmp_path / "my_ops.py"
    ops.write_text(OPS_FILE)
    lowbit = [sys.executable, "-m", "lowbit.cli.main"]
    done = subprocess.run([*lowbit, "--ops", str(ops), "calibrate", str(model), "--data",
                           str(data), "-o", str(tmp_path / "t.calib"), "--method", "minmax",
                           "--no-progress"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([*lowbit, "--ops", str(ops), "deploy", str(model),
                           "--calibration-table", str(tmp_path / "t.calib"), "--test-data",
                           str(data), "-o", str(tmp_path / "m.int8.onnx")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PowerDifferencePy powdiff" in done.stdout and "PASSED" in done.stdout
    missing = subprocess.run([*lowbit, "calibrate", str(model), "--data", str(data), "-o",
                              str(tmp_path / "u.calib")], capture_output=True, text=True, check=False)
    assert missing.returncode == 2 and "python_op" in missing.stderr
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    done = subprocess.run([*lowbit, "--ops", str(broken), "info", str(model)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "--ops" in done.stderr and "RuntimeError: boom" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
