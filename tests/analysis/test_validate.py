"""Tolerance parsing and compare_outputs: the pass/fail rule and its errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lowbit.analysis.validate import Tolerance, check_output, compare_outputs
from lowbit.errors import LowbitError, UsageError


@pytest.mark.parametrize(("text", "cos", "euc"), [
    ("0.99,0.90", 0.99, 0.90),
    (" 0.95 , 0.8 ", 0.95, 0.8),
    ("1,1", 1.0, 1.0),
    ("-1,-1", -1.0, -1.0),
    ("9.9e-1,0", 0.99, 0.0),
])
def test_tolerance_parses(text: str, cos: float, euc: float) -> None:
    tol = Tolerance.parse(text)
    assert (tol.cosine, tol.euclid) == (cos, euc)


@pytest.mark.parametrize("text", ["", "0.99", "0.99,0.9,0.8", "abc,0.9", "0.99;0.9",
                                  "1.5,0.9", "0.9,-2", "nan,0.9", "inf,0.9", "0.99,"])
def test_tolerance_rejects(text: str) -> None:
    with pytest.raises(UsageError) as info:
        Tolerance.parse(text)
    assert isinstance(info.value, LowbitError)


def test_tolerance_defaults_and_direct_construction_are_checked() -> None:
    assert (Tolerance().cosine, Tolerance().euclid) == (0.99, 0.90)
    with pytest.raises(UsageError, match="cosine"):
        Tolerance(cosine=2.0)


def _reference() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"logits": rng.normal(size=(4, 10)).astype(np.float32),
            "features": rng.normal(size=(4, 8, 2, 2)).astype(np.float32)}


def test_identical_outputs_pass() -> None:
    ref = _reference()
    report = compare_outputs(ref, {k: v.copy() for k, v in ref.items()}, Tolerance())
    assert report.passed and report.failed == []
    assert [c.name for c in report.checks] == ["logits", "features"]
    check = report.checks[1]
    assert check.shape == (4, 8, 2, 2)
    assert check.cosine == pytest.approx(1.0) and check.euclid == 1.0
    assert check.sqnr_db == math.inf and check.max_abs_error == 0.0


def test_small_noise_passes_and_big_noise_fails_one_output() -> None:
    ref = _reference()
    rng = np.random.default_rng(2)
    actual = {"logits": ref["logits"] + rng.normal(scale=1e-3, size=ref["logits"].shape),
              "features": ref["features"] + rng.normal(scale=1.0, size=ref["features"].shape)}
    report = compare_outputs(ref, actual, Tolerance(0.99, 0.9))
    assert not report.passed
    assert [c.name for c in report.failed] == ["features"]
    logits = report.checks[0]
    assert logits.passed and logits.sqnr_db > 40


def test_both_cosine_and_euclid_must_pass() -> None:
    a = np.array([1.0, 2.0, 3.0])
    b = 1.3 * a  # cosine 1, euclid 1 - 0.3/1.15 ≈ 0.739
    assert check_output("y", a, b, Tolerance(0.99, 0.7)).passed
    failed = check_output("y", a, b, Tolerance(0.99, 0.8))
    assert not failed.passed and failed.cosine == pytest.approx(1.0)
    assert failed.euclid == pytest.approx(1 - 0.3 / 1.15)


def test_threshold_is_inclusive() -> None:
    a = np.array([1.0, 0.0])
    b = np.array([1.0, 1.0])
    cos = 1 / math.sqrt(2)
    euc = 1 - 1 / math.sqrt(1 + 0.25)
    assert check_output("y", a, b, Tolerance(cos - 1e-12, euc - 1e-12)).passed
    assert not check_output("y", a, b, Tolerance(cos + 1e-9, euc - 1e-12)).passed


def test_shape_mismatch_names_the_output() -> None:
    ref = _reference()
    actual = dict(ref, logits=ref["logits"][:2])
    with pytest.raises(UsageError, match=r"logits.*\[4, 10\].*\[2, 10\]"):
        compare_outputs(ref, actual, Tolerance())


def test_reference_output_missing_from_model_names_it() -> None:
    ref = _reference()
    with pytest.raises(UsageError, match="features"):
        compare_outputs(ref, {"logits": ref["logits"]}, Tolerance())


def test_extra_model_outputs_are_ignored() -> None:
    ref = _reference()
    actual = dict(ref, extra=np.zeros(3))
    report = compare_outputs({"logits": ref["logits"]}, actual, Tolerance())
    assert [c.name for c in report.checks] == ["logits"] and report.passed


def test_nan_in_the_model_output_fails() -> None:
    ref = _reference()
    actual = {k: v.copy() for k, v in ref.items()}
    actual["logits"][1, 3] = np.nan
    report = compare_outputs(ref, actual, Tolerance(-1.0, -1.0))
    assert [c.name for c in report.failed] == ["logits"]
