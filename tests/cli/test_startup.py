"""The command line starts fast: `lowbit --help` and `import lowbit` load no heavy module
(onnx, ONNX Runtime, numpy, matplotlib, ...), read off `python -X importtime`."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("onnx", "onnxruntime", "numpy", "matplotlib", "onnxscript", "onnx_ir", "sympy",
         "torch", "tensorflow", "openvino", "PIL", "rich", "ml_dtypes")


def _imported(code: str) -> set[str]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code],
                          capture_output=True, text=True, check=True)
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


@pytest.mark.parametrize("code", [
    "import lowbit",
    "from lowbit.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
    ("from lowbit.cli.main import main\ntry:\n    main(['deploy', '--help'])\n"
     "except SystemExit:\n    pass"),
])
def test_no_heavy_module_at_start(code: str) -> None:
    imported = _imported(code)
    assert imported, "importtime printed nothing"
    heavy = sorted(name for name in imported if name.split(".")[0] in HEAVY)
    assert not heavy, f"{code!r} imports {heavy[:8]}"


def test_a_verb_still_loads_what_it_needs() -> None:
    """The lazy names resolve to the real functions (and the package named quantize stays
    a package)."""
    imported = _imported("import lowbit\nlowbit.deploy\nimport lowbit.quantize.int8")
    assert "onnx" in imported and "lowbit.api.deploy" in imported
    done = subprocess.run([sys.executable, "-c", ("import lowbit, lowbit.quantize.int8\n"
                           "print(callable(lowbit.quantize_model), callable(lowbit.deploy))")],
                          capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "True"]
