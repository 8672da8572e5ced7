"""Similarity metrics between a reference tensor a and a test tensor b.

    cosine(a, b)                 # a·b / (|a||b|)
    euclidean_similarity(a, b)   # 1 − |a−b| / |(a+b)/2|
    sqnr_db(a, b)                # 10·log10(Σa² / Σ(a−b)²)

All take arrays of any (equal) shape and compute in float64.
"""

from __future__ import annotations

import math

import numpy as np


def _flat(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = _flat(a), _flat(b)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def euclidean_similarity(a: np.ndarray, b: np.ndarray) -> float:
    a, b = _flat(a), _flat(b)
    denom = np.linalg.norm((a + b) / 2.0)
    diff = np.linalg.norm(a - b)
    if denom == 0.0:
        return 1.0 if diff == 0.0 else 0.0
    return float(1.0 - diff / denom)


def sqnr_db(a: np.ndarray, b: np.ndarray) -> float:
    a, b = _flat(a), _flat(b)
    noise = float(np.sum((a - b) ** 2))
    signal = float(np.sum(a**2))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def max_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    a, b = _flat(a), _flat(b)
    return float(np.max(np.abs(a - b))) if a.size else 0.0
