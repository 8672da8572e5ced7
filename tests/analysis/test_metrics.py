"""cosine, euclidean similarity, SQNR and max |error| on examples worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lowbit.analysis.metrics import cosine, euclidean_similarity, max_abs_error, sqnr_db

A = np.array([3.0, -4.0, 12.0], dtype=np.float32)  # |A| = 13


def test_identical_tensors() -> None:
    assert cosine(A, A) == pytest.approx(1.0)
    assert euclidean_similarity(A, A) == 1.0
    assert sqnr_db(A, A) == math.inf
    assert max_abs_error(A, A) == 0.0


def test_scaled_copy() -> None:
    # b = 2a: same direction; |a-b| = |a|, |(a+b)/2| = 1.5|a|; signal/noise = 1.
    assert cosine(A, 2 * A) == pytest.approx(1.0)
    assert euclidean_similarity(A, 2 * A) == pytest.approx(1 - 1 / 1.5)
    assert sqnr_db(A, 2 * A) == pytest.approx(0.0, abs=1e-12)
    # b = 0.9a: |a-b| = 0.1|a|, |(a+b)/2| = 0.95|a|; signal/noise = 100 -> 20 dB.
    b = 0.9 * A.astype(np.float64)
    assert euclidean_similarity(A, b) == pytest.approx(1 - 0.1 / 0.95)
    assert sqnr_db(A, b) == pytest.approx(20.0)
    assert max_abs_error(A, b) == pytest.approx(1.2)


def test_orthogonal_tensors() -> None:
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert cosine(a, b) == pytest.approx(0.0)
    # |a-b| = sqrt2, |(a+b)/2| = sqrt(0.5): 1 - 2 = -1
    assert euclidean_similarity(a, b) == pytest.approx(-1.0)
    assert sqnr_db(a, b) == pytest.approx(10 * math.log10(1 / 2))


def test_opposite_tensors() -> None:
    assert cosine(A, -A) == pytest.approx(-1.0)
    assert euclidean_similarity(A, -A) == 0.0  # (a+b)/2 = 0 while a != b
    assert sqnr_db(A, -A) == pytest.approx(10 * math.log10(1 / 4))


def test_zeros() -> None:
    zeros = np.zeros(3)
    assert cosine(zeros, zeros) == 1.0
    assert euclidean_similarity(zeros, zeros) == 1.0
    assert sqnr_db(zeros, zeros) == math.inf
    # A zero reference against a non-zero test: no signal, all noise.
    assert cosine(zeros, A) == 0.0
    assert euclidean_similarity(zeros, A) == pytest.approx(-1.0)
    assert sqnr_db(zeros, A) == -math.inf
    # A test output that collapsed to zero: noise equals signal.
    assert cosine(A, zeros) == 0.0
    assert sqnr_db(A, zeros) == pytest.approx(0.0)


def test_known_values_on_a_small_example() -> None:
    a, b = np.array([1.0, 2.0, 2.0]), np.array([1.0, 2.0, 3.0])
    # a·b = 11, |a| = 3, |b| = sqrt14
    assert cosine(a, b) == pytest.approx(11 / (3 * math.sqrt(14)))
    # |a-b| = 1, (a+b)/2 = (1, 2, 2.5): |.| = sqrt(11.25)
    assert euclidean_similarity(a, b) == pytest.approx(1 - 1 / math.sqrt(11.25))
    # Σa² = 9, Σ(a-b)² = 1
    assert sqnr_db(a, b) == pytest.approx(10 * math.log10(9))
    assert max_abs_error(a, b) == 1.0


def test_any_shape_is_flattened_and_computed_in_float64() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 3, 4)).astype(np.float16)
    b = (a.astype(np.float64) + rng.normal(scale=0.01, size=a.shape)).astype(np.float16)
    assert cosine(a, b) == pytest.approx(cosine(a.reshape(-1), b.reshape(-1)))
    assert sqnr_db(a, b) == pytest.approx(sqnr_db(a.reshape(6, 4), b.reshape(6, 4)))
    # float16 products would overflow: 300² > 65504
    big = np.full(4, 300.0, dtype=np.float16)
    assert cosine(big, big) == pytest.approx(1.0)
    assert math.isfinite(sqnr_db(big, big * np.float16(0.5)))


def test_empty_arrays() -> None:
    empty = np.zeros((0, 3))
    assert max_abs_error(empty, empty) == 0.0
    assert cosine(empty, empty) == 1.0
