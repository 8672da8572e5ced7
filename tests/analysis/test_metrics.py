"""cosine, euclidean similarity, SQNR, max |error|, top-k, PSNR and SSIM on examples worked
out by hand or against a direct implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lowbit.analysis.metrics import (
    cosine,
    euclidean_similarity,
    max_abs_error,
    psnr,
    sqnr_db,
    ssim,
    topk_accuracy,
)

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


def test_topk_breaks_ties_like_argmax():
    scores = np.array([[1.0, 1.0, 0.0]])
    assert topk_accuracy(scores, np.array([0]), 1) == 100.0
    assert topk_accuracy(scores, np.array([1]), 1) == 0.0
    assert topk_accuracy(scores, np.array([2]), 5) == 100.0  # k is capped at the class count


def test_psnr_of_a_known_offset():
    reference = np.linspace(0.0, 1.0, 64).reshape(1, 8, 8)  # data range 1
    assert psnr(reference, reference + 0.1) == pytest.approx(20.0)


def _ssim_direct(x: np.ndarray, y: np.ndarray, peak: float) -> float:
    """Wang et al. SSIM of one 2-D image pair, window by window with the 2-D Gaussian."""
    taps = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    window = np.outer(taps, taps) / np.outer(taps, taps).sum()
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            a, b = x[i:i + 11, j:j + 11], y[i:i + 11, j:j + 11]
            mu_a, mu_b = (window * a).sum(), (window * b).sum()
            var_a = (window * (a - mu_a) ** 2).sum()
            var_b = (window * (b - mu_b) ** 2).sum()
            cov = (window * (a - mu_a) * (b - mu_b)).sum()
            values.append((2 * mu_a * mu_b + c1) * (2 * cov + c2)
                          / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)))
    return float(np.mean(values))


def test_ssim_matches_a_direct_implementation():
    rng = np.random.default_rng(5)
    reference = rng.uniform(0, 255, (2, 16, 14, 3))  # NHWC, 3 channels
    test = np.clip(reference + rng.normal(0, 20, reference.shape), 0, 255)
    peak = float(reference.max() - reference.min())
    expected = np.mean([_ssim_direct(reference[n, :, :, c], test[n, :, :, c], peak)
                        for n in range(2) for c in range(3)])
    assert ssim(reference, test) == pytest.approx(expected, rel=1e-9)
    assert ssim(reference, reference) == pytest.approx(1.0)
    assert ssim(test, reference) < 1.0
