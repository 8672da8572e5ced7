"""Check a model's outputs against reference outputs with an explicit tolerance.

    tol = Tolerance.parse("0.99,0.90")                  # cosine, euclidean similarity
    report = compare_outputs(reference, actual, tol)   # dicts name -> array
    report.passed, report.checks[0].cosine

A check passes when both its cosine and its euclidean similarity reach the
tolerance (tpu-mlir's rule); SQNR is reported beside them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from lowbit.analysis.metrics import cosine, euclidean_similarity, max_abs_error, sqnr_db
from lowbit.errors import ArgumentError, UsageError


@dataclass(frozen=True)
class Tolerance:
    cosine: float = 0.99
    euclid: float = 0.90

    def __post_init__(self) -> None:
        for name, value in (("cosine", self.cosine), ("euclidean similarity", self.euclid)):
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not -1.0 <= value <= 1.0:
                raise ArgumentError(f"{{tolerance}} {name} must be a number within [-1, 1], "
                                    f"got {value!r}")

    @classmethod
    def parse(cls, text: str) -> Tolerance:
        parts = [p.strip() for p in text.split(",")]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != 2:
            raise ArgumentError(f"{{tolerance}} must be 'cosine,euclid' such as 0.99,0.90; "
                                f"got '{text[:60]}'")
        return cls(values[0], values[1])


def checked_tolerance(value: object, name: str = "tolerance") -> Tolerance:
    """A Tolerance from None (the default), 'cosine,euclid' text, a pair of numbers or a
    Tolerance; anything else is an ArgumentError naming ``name``."""
    if value is None:
        return Tolerance()
    if isinstance(value, Tolerance):
        return value
    if isinstance(value, str):
        return Tolerance.parse(value)
    if isinstance(value, Sequence) and len(value) == 2:
        return Tolerance(*value)
    raise ArgumentError(f"{{{name}}} must be 'cosine,euclid' text such as '0.99,0.90', a pair "
                        f"of numbers or a Tolerance; got {value!r}"[:300])


@dataclass(frozen=True)
class OutputCheck:
    name: str
    shape: tuple[int, ...]
    cosine: float
    euclid: float
    sqnr_db: float
    max_abs_error: float
    passed: bool


@dataclass(frozen=True)
class ValidationReport:
    tolerance: Tolerance
    checks: tuple[OutputCheck, ...]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failed(self) -> list[OutputCheck]:
        return [check for check in self.checks if not check.passed]


def check_output(name: str, reference: np.ndarray, actual: np.ndarray,
                 tolerance: Tolerance) -> OutputCheck:
    if reference.shape != actual.shape:
        raise UsageError(f"output '{name}': reference shape {list(reference.shape)} differs from "
                         f"the model's {list(actual.shape)}")
    cos = cosine(reference, actual)
    euc = euclidean_similarity(reference, actual)
    return OutputCheck(name, tuple(reference.shape), cos, euc, sqnr_db(reference, actual),
                       max_abs_error(reference, actual),
                       cos >= tolerance.cosine and euc >= tolerance.euclid)


def compare_outputs(reference: Mapping[str, np.ndarray], actual: Mapping[str, np.ndarray],
                    tolerance: Tolerance) -> ValidationReport:
    missing = [name for name in reference if name not in actual]
    if missing:
        raise UsageError(f"reference outputs {', '.join(missing)} are not outputs of the model "
                         f"(it has {', '.join(actual)})")
    checks = tuple(check_output(name, np.asarray(reference[name]), np.asarray(actual[name]),
                                tolerance) for name in reference)
    return ValidationReport(tolerance, checks)
