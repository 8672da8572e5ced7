"""Similarity and accuracy metrics between a reference tensor a and a test tensor b.

    cosine(a, b)                 # a·b / (|a||b|)
    euclidean_similarity(a, b)   # 1 − |a−b| / |(a+b)/2|
    sqnr_db(a, b)                # 10·log10(Σa² / Σ(a−b)²)
    max_abs_error(a, b)          # max |a−b|

These take arrays of any (equal) shape and compute in float64. Per-sample metrics take
a batch (first axis = samples):

    topk_accuracy(scores, labels, 5)   # % of rows whose label is among the 5 highest scores
    top1_agreement(a, b)               # % of rows whose argmax agrees (score vectors only)
    mean_cosine(reference, test)       # mean over samples of cosine()
    psnr(reference, test)              # mean dB over the samples that differ
    ssim(reference, test)              # Wang et al. 2004 on image outputs, 11×11 Gaussian

lowbit.analysis.evaluate documents the data range, windows and image layouts in full.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from lowbit.errors import DatasetError, UsageError

log = logging.getLogger(__name__)

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


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


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """% of rows whose label is among the k highest scores (ties: lower index first)."""
    labels = np.asarray(labels, dtype=np.int64)
    return float(100.0 * topk_hits(scores, labels, k) / max(labels.shape[0], 1))


def topk_hits(scores: np.ndarray, labels: np.ndarray, k: int, *, first_index: int = 0) -> int:
    """Rows whose label is among the k highest scores (ties: lower index first); the rows
    are samples ``first_index`` .. of the data set (what an error names)."""
    scores = _score_rows(scores)
    labels = np.asarray(labels, dtype=np.int64)
    if scores.shape[0] != labels.shape[0]:
        raise DatasetError(f"{scores.shape[0]} predictions but {labels.shape[0]} labels")
    classes = scores.shape[1]
    if labels.size and int(labels.max()) >= classes:
        first = int(np.argmax(labels >= classes))
        raise DatasetError(f"label {int(labels[first])} of sample {first_index + first} is "
                           f"outside the model's {classes} classes (0..{classes - 1}); are "
                           f"the labels 1-based or for another model?")
    k = min(k, classes)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return int(np.count_nonzero(np.any(top == labels[:, None], axis=1)))


def top1_agreement(a: np.ndarray, b: np.ndarray) -> float | None:
    """% of samples where the argmax of a and b agree; None unless both are score vectors."""
    agreeing = agreeing_rows(a, b)
    return None if agreeing is None else float(100.0 * agreeing / a.shape[0])


def agreeing_rows(a: np.ndarray, b: np.ndarray) -> int | None:
    """Samples where the argmax of a and b agree; None unless both are score vectors."""
    if a.shape != b.shape or not _is_score_vector(a):
        return None
    first, second = _score_rows(a), _score_rows(b)
    return int(np.count_nonzero(np.argmax(first, axis=1) == np.argmax(second, axis=1)))


def mean_cosine(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean over samples (axis 0) of the cosine similarity of each flattened pair."""
    return float(np.mean(sample_cosines(reference, test)))


def sample_cosines(reference: np.ndarray, test: np.ndarray) -> np.ndarray:
    """The cosine similarity of each sample's flattened pair (axis 0 = samples)."""
    return np.array([cosine(r, t) for r, t in zip(reference, test, strict=True)])


def sample_mse(reference: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Each sample's mean squared error, in float64 (axis 0 = samples)."""
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(test, dtype=np.float64)
    return np.mean((ref - out).reshape(ref.shape[0], -1) ** 2, axis=1)


def psnr(reference: np.ndarray, test: np.ndarray, data_range: float | None = None) -> float:
    """Mean per-sample PSNR (dB) over the samples that differ; inf when none differs."""
    ref = np.asarray(reference, dtype=np.float64)
    peak = _data_range(ref) if data_range is None else float(data_range)
    mse = sample_mse(ref, test)
    differ = mse > 0
    if not differ.any():
        return math.inf
    if not differ.all():
        log.info("psnr: %d of %d samples equal their reference and are left out of the mean",
                 int((~differ).sum()), mse.size)
    return float(np.mean(10.0 * np.log10(peak**2 / mse[differ])))


def ssim(reference: np.ndarray, test: np.ndarray, data_range: float | None = None) -> float:
    """Mean SSIM over samples and channels of image outputs; see the module docstring."""
    peak = _data_range(np.asarray(reference, dtype=np.float64)) if data_range is None \
        else float(data_range)
    return float(np.mean(sample_ssim(reference, test, peak)))


def sample_ssim(reference: np.ndarray, test: np.ndarray, data_range: float) -> np.ndarray:
    """Each sample's SSIM, the mean over its channels and window positions."""
    ref = _channel_images(np.asarray(reference))
    out = _channel_images(np.asarray(test))
    if ref.shape != out.shape:
        raise UsageError(f"ssim needs images of one shape; found {list(ref.shape)} and "
                         f"{list(out.shape)} (N, C, H, W)")
    window = gaussian_window(min(SSIM_WINDOW, _largest_odd(min(ref.shape[2:]))), SSIM_SIGMA)
    return np.array([ssim_map(r, t, data_range, window).mean()
                     for r, t in zip(ref, out, strict=True)])


def ssim_map(reference: np.ndarray, test: np.ndarray, data_range: float,
             window: np.ndarray) -> np.ndarray:
    """SSIM at every 'valid' window position of (C, H, W) images -> (C, H−w+1, W−w+1)."""
    x = np.asarray(reference, dtype=np.float64)
    y = np.asarray(test, dtype=np.float64)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = _filter(x, window), _filter(y, window)
    var_x = _filter(x * x, window) - mu_x**2
    var_y = _filter(y * y, window) - mu_y**2
    cov = _filter(x * y, window) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1)
                                                       * (var_x + var_y + c2))


def gaussian_window(size: int, sigma: float) -> np.ndarray:
    """The normalised 1-D Gaussian of ``size`` taps; the 2-D window is its outer product."""
    taps = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    weights = np.exp(-(taps**2) / (2.0 * sigma**2))
    return weights / weights.sum()


def _filter(images: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of (C, H, W) along H then W."""
    size = taps.size
    rows = images.shape[1] - size + 1
    cols = images.shape[2] - size + 1
    along_h = np.zeros((images.shape[0], rows, images.shape[2]))
    for i in range(size):
        along_h += taps[i] * images[:, i:i + rows, :]
    result = np.zeros((images.shape[0], rows, cols))
    for i in range(size):
        result += taps[i] * along_h[:, :, i:i + cols]
    return result


def _channel_images(array: np.ndarray) -> np.ndarray:
    """(N,H,W) -> (N,1,H,W); (N,C,H,W) as is; (N,H,W,C) with C ≤ 4 < H -> (N,C,H,W)."""
    if array.ndim == 3:
        return array[:, None]
    if array.ndim == 4:
        if array.shape[1] > 4 and array.shape[3] <= 4:
            return np.moveaxis(array, 3, 1)
        return array
    raise UsageError(f"ssim needs image outputs (N,H,W), (N,C,H,W) or (N,H,W,C); the output "
                     f"has shape {list(array.shape)}")


def _data_range(reference: np.ndarray) -> float:
    if not reference.size:
        return data_range_between(0.0, 0.0)
    return data_range_between(float(reference.min()), float(reference.max()))


def data_range_between(low: float, high: float) -> float:
    """The data range R = high − low of a reference for psnr/ssim (1.0 when constant)."""
    if high - low > 0:
        return high - low
    log.warning("the reference is constant; using a data range of 1.0 for psnr/ssim")
    return 1.0


def _largest_odd(n: int) -> int:
    return n if n % 2 else max(n - 1, 1)


def _score_rows(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores)
    return scores.reshape(scores.shape[0], -1)


def _is_score_vector(outputs: np.ndarray) -> bool:
    return sum(1 for d in outputs.shape[1:] if d > 1) <= 1
