"""lowbit-run imports only onnxruntime, numpy, Pillow and the standard library.

It runs in a fresh interpreter in which importing any ``lowbit`` module, onnx or the other
packages lowbit depends on raises ImportError (a meta-path finder placed first), and the
third-party modules it loaded are checked against those ``import onnxruntime, numpy,
PIL.Image`` loads by itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.package_work import Work

BLOCKED = ("lowbit", "onnx", "onnx_ir", "onnxscript", "rich", "matplotlib", "ml_dtypes",
           "torch", "openvino", "tensorflow")

_BLOCKER = """
import importlib.abc, json, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in %r:
            raise ImportError(f"blocked: {name}")
        return None

sys.meta_path.insert(0, Block())
"""

_LOADED = """
import json, sys

def third_party():
    return sorted({m.split(".")[0] for m in sys.modules} - set(sys.stdlib_module_names)
                  - {"__main__", "_distutils_hack"} - {m for m in sys.builtin_module_names})
"""


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=300)


def test_lowbit_run_works_with_lowbit_and_its_other_dependencies_blocked(
        work: Work, tmp_path: Path) -> None:
    out = tmp_path / "y.npz"
    code = _BLOCKER % (BLOCKED,) + _LOADED + f"""
from lowbit_run.cli import main
code = main([{str(work.int8_bundle)!r}, "--input", {str(work.image)!r}, "--output",
             {str(out)!r}])
print(json.dumps({{"code": code, "modules": third_party()}}))
"""
    done = _python(code)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, done.stderr
    assert "photo.png: top 5 of 'logits'" in done.stdout
    assert np.load(out)["logits"].shape == (1, 10)

    baseline = _python(_LOADED + "import onnxruntime, numpy, PIL.Image\n"
                       "print(json.dumps(third_party()))")
    assert baseline.returncode == 0, baseline.stderr
    allowed = set(json.loads(baseline.stdout)) | {"lowbit_run"}
    assert set(result["modules"]) <= allowed, set(result["modules"]) - allowed
    assert not any(name in result["modules"] for name in BLOCKED)


def test_the_console_script_is_the_same_main() -> None:
    from importlib.metadata import entry_points

    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts.get("lowbit-run") == "lowbit_run.cli:main"
