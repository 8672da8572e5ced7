"""Settings of lowbit's test suite."""

from __future__ import annotations

import os

# Deploy's speed guard times INT8 against float and keeps float what loses; on a shared
# test machine those timings mean nothing, and the tests check quantization, not this
# machine's speed. The guard's own tests (tests/recipe/test_speed.py) turn it on.
os.environ.setdefault("LOWBIT_SPEED", "off")
