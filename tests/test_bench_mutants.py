"""bench/mutants.py still reaches what it mutates: a renamed function would make a mutant
fail to apply (an error in the pre-release check) instead of being killed.

Each mutant is applied in one child process (the swaps must not leak into this session)
and the child checks that the named objects were really replaced.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import mutants
from lowbit.calibration.observers import AutoObserver
from lowbit.quantize.int8 import params
from lowbit.quantize.prepare import adaround, bias_correction, smoothquant
from lowbit.quantize.w4 import gptq

targets = {
    "auto-minmax": lambda: AutoObserver._search,
    "bias-correction-off": lambda: bias_correction.correct_biases,
    "smooth-alpha-flip": lambda: smoothquant._smoothing_scale,
    "paired-7bit": lambda: params.quantize_weight_on,
    "adaround-nearest": lambda: adaround.optimize_rounding,
    "gptq-rtn": lambda: gptq.gptq_quantize,
    "per-tensor": lambda: params.quantize_weight,
    "zero-point": lambda: params.activation_params,
}
assert set(targets) == set(mutants.MUTANTS), sorted(mutants.MUTANTS)
for name, target in targets.items():
    before = target()
    mutants.MUTANTS[name].apply()
    assert target() is not before, f"{name} did not replace its target"
print("applied", len(targets))
"""


def test_every_mutant_applies_and_replaces_its_target():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, (str(REPO / "bench"), os.environ.get("PYTHONPATH", ""))))}
    env.pop("LOWBIT_MUTANT", None)
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "applied 8" in done.stdout


def test_the_plugin_refuses_an_unknown_mutant(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import mutants

    monkeypatch.setenv("LOWBIT_MUTANT", "no-such-mutant")
    with pytest.raises(SystemExit, match="no such mutant.*auto-minmax"):
        mutants.pytest_configure(None)
