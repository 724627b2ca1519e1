"""Seeded, vectorised percentile bootstraps shared by the report's statistics (issue #17, items 1, 2 and 5).

Every resample is drawn as integer positions (numpy's default_rng(seed)) and every statistic is read off sorted
data with weights = how often each item was drawn, so no resample is ever materialised or sorted on its own.
"""

from __future__ import annotations

import numpy as np

from llmseg_mlflow.analysis.config import AnalyzeConfig
from llmseg_mlflow.config import default_of

N_BOOT = default_of(AnalyzeConfig, "bootstrap_resamples")  # resamples behind every interval in the report
SEED = 0
LEVEL = 0.95

_POSITIONS: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}


def _middle_positions(n: int, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """For n_boot resamples of n items (seeded), the positions in the sorted data of each resample's middle
    one(s): indexing sorted data with sorted positions gives each resample in order, so its median is read
    off there, with no sort per resample and per row; the positions depend on n alone, so they are drawn once."""
    key = (n, n_boot, seed)
    if key not in _POSITIONS:
        pos = np.sort(np.random.default_rng(seed).integers(0, n, size=(n_boot, n)), axis=1)
        _POSITIONS[key] = (pos[:, (n - 1) // 2].copy(), pos[:, n // 2].copy())
    return _POSITIONS[key]


def bootstrap_median_cis(
    diffs: list[np.ndarray], n_boot: int = N_BOOT, seed: int = SEED, level: float = LEVEL
) -> list[tuple[float, float]]:
    """Percentile bootstrap CI of the median of each array (n_boot resamples, seeded), arrays of one length
    in one numpy operation."""
    out: list[tuple[float, float]] = [(np.nan, np.nan)] * len(diffs)
    by_n: dict[int, list[int]] = {}
    for i, d in enumerate(diffs):
        if len(d):
            by_n.setdefault(len(d), []).append(i)
    for n, idx in by_n.items():
        lo_pos, hi_pos = _middle_positions(n, n_boot, seed)
        d = np.sort(np.vstack([np.asarray(diffs[i], dtype=float) for i in idx]), axis=1)
        medians = (d[:, lo_pos] + d[:, hi_pos]) / 2  # (arrays, resamples)
        for i, (a, b) in zip(idx, percentile_ci(medians, level)):
            out[i] = (float(a), float(b))
    return out


def bootstrap_median_ci(
    d: np.ndarray, n_boot: int = N_BOOT, seed: int = SEED, level: float = LEVEL
) -> tuple[float, float]:
    """Percentile bootstrap CI of the median of `d` (n_boot resamples, seeded), vectorised with numpy."""
    return bootstrap_median_cis([np.asarray(d, dtype=float)], n_boot, seed, level)[0]


def percentile_ci(samples: np.ndarray, level: float = LEVEL) -> np.ndarray:
    """(low, high) percentile interval over the last axis: shape (..., 2)."""
    tail = (1 - level) / 2 * 100
    return np.moveaxis(np.percentile(samples, [tail, 100 - tail], axis=-1), 0, -1)


def resample_counts(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """(n_boot, n): how often each of n items is drawn in each resample of n with replacement."""
    idx = rng.integers(0, n, size=(n_boot, n))
    flat = (idx + n * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.int32)


def cluster_medians(units: list[np.ndarray], counts: np.ndarray) -> np.ndarray:
    """Per resample (rows of `counts`, units drawn with replacement), the median of the pooled values of the
    drawn units, each unit's values as often as it was drawn: np.median(np.concatenate(drawn units)).
    Units are a cohort's models (their images pooled) or a dataset's images (a model's repeats on each).

    Binary search over the pooled sorted values: Q[j, u] = how many of unit u's values are among the j+1
    smallest, so a resample's weight up to j is counts @ Q[j]; ~log2(N) steps of (resamples x units)."""
    sizes = np.array([len(u) for u in units])
    values = np.concatenate([np.asarray(u, dtype=float) for u in units])
    order = np.argsort(values, kind="stable")
    values = values[order]
    labels = np.repeat(np.arange(len(units)), sizes)[order]
    q = np.zeros((len(values), len(units)), dtype=np.int32)
    q[np.arange(len(values)), labels] = 1
    q = np.cumsum(q, axis=0, dtype=np.int32)
    total = counts @ sizes
    out = np.full(len(counts), np.nan)
    ok = total > 0  # every drawn unit empty: no median (callers pass units with values, so never)
    c, t = counts[ok], total[ok]

    def at(pos: np.ndarray) -> np.ndarray:
        lo, hi = np.zeros(len(c), dtype=np.int64), np.full(len(c), len(values) - 1)
        while (active := lo < hi).any():  # the first j whose weight up to j passes pos lies in [lo, hi]
            mid = (lo + hi) // 2
            above = np.einsum("ru,ru->r", c, q[mid]) > pos
            hi, lo = np.where(active & above, mid, hi), np.where(active & ~above, mid + 1, lo)
        return values[lo]

    out[ok] = (at((t - 1) // 2) + at(t // 2)) / 2
    return out
