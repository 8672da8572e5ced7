"""package --format tvm (experimental): compiled, re-loaded, validated, timed beside ORT."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from lowbit.api import package
from lowbit.errors import UsageError
from tests.package_work import Work

tvm = pytest.importorskip("tvm")


def test_f32_compiles_validates_and_is_timed(work: Work, tmp_path) -> None:
    result = package(work.f32, tmp_path / "m.so", format="tvm", test_input=work.x)
    assert result.files == (tmp_path / "m.so",) and result.passed
    assert result.conversion_error is not None and result.conversion_error < 1e-4
    assert "against ONNX Runtime's" in result.notes[0] and "untuned" in result.notes[0]
    assert [p.name for p in tmp_path.iterdir()] == ["m.so"]  # no temporary folder left
    from lowbit.runtime.tvm_module import TvmRunner

    runner = TvmRunner(result.path, input_names=["input"], output_names=["logits"])
    x = np.load(work.x)["input"][:1]
    expected = np.load(work.reference)["logits"][:1]
    np.testing.assert_allclose(runner.run({"input": x})["logits"], expected, rtol=1e-4,
                               atol=1e-4)


def test_int8_is_validated_and_said_to_gain_nothing(work: Work, tmp_path) -> None:
    result = package(work.int8, tmp_path / "q.so", format="tvm")
    assert result.validation is not None and result.passed  # deploy's data and reference
    assert any("simulated quantization" in note for note in result.notes)


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"target": "cuda"}, "CPUs only"),
    ({"target": "llvm -mcpu=skylake"}, "takes targets as JSON"),
    ({"target": '{"kind": "llvm", "mcpu": '}, "not valid JSON"),
    ({"target_platform": "arm"}, "target_platform applies to format ort"),
])
def test_unsupported_targets_are_refused_before_writing(work: Work, tmp_path, kwargs,
                                                        needle) -> None:
    with pytest.raises(UsageError, match=needle):
        package(work.f32, tmp_path / "m.so", format="tvm", **kwargs)
    with pytest.raises(UsageError, match=r"\.so file"):
        package(work.f32, tmp_path / "m.lowbit", format="tvm")
    with pytest.raises(UsageError, match="applies to format tvm"):
        package(work.f32, tmp_path / "m.lowbit", target="{}")
    assert list(tmp_path.iterdir()) == []


def test_without_the_extra_it_is_one_line_exit_2(work: Work, tmp_path) -> None:
    """apache-tvm missing: the command names the extra to install and writes nothing."""
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tvm":
            raise ImportError("No module named 'tvm'")
sys.meta_path.insert(0, Block())
from lowbit.cli.main import main
sys.exit(main(["package", {str(work.f32)!r}, "--format", "tvm", "-o",
               {str(tmp_path / "m.so")!r}]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "lowbit[tvm]" in lines[0] and "Apache TVM" in lines[0]
    assert list(tmp_path.iterdir()) == []
