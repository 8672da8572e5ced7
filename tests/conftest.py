"""Settings of lowbit's test suite, and its options (an initial conftest: every folder
under tests/ reads them).

    pytest tests/fuzz --fuzz-long        # the fuzzing suite as a soak: many examples, random seeds
"""

from __future__ import annotations

import os

import pytest

# Deploy's speed guard times INT8 against float and keeps float what loses; on a shared
# test machine those timings mean nothing, and the tests check quantization, not this
# machine's speed. The guard's own tests (tests/recipe/test_speed.py) turn it on.
os.environ.setdefault("LOWBIT_SPEED", "off")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz-long", action="store_true", default=False,
                     help="run tests/fuzz as a soak: many examples per property and a random "
                     "seed each run (CI runs a fixed seed and a small budget)")
