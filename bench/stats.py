"""Summaries of latency samples, and a bootstrap test of whether two medians really differ."""
from __future__ import annotations

import math

import numpy as np


def percentile(values, q: float) -> float | None:
    """The q-th percentile (linear interpolation), or None for no values."""
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else None


def summarize(values) -> dict:
    """n, mean, p50, p95, p99, min and max of a list of numbers."""
    values = list(values)
    if not values:
        return {"n": 0}
    array = np.asarray(values, dtype=float)
    return {"n": len(values), "mean": float(array.mean()), "p50": percentile(array, 50),
            "p95": percentile(array, 95), "p99": percentile(array, 99), "min": float(array.min()),
            "max": float(array.max())}


def median_difference(a, b, resamples: int = 4000, seed: int = 0) -> dict:
    """median(b) - median(a) with a 95 % bootstrap interval; `significant` when it excludes zero."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not len(a) or not len(b):
        return {"difference": None, "low": None, "high": None, "significant": False}
    rng = np.random.default_rng(seed)
    diffs = (np.median(rng.choice(b, (resamples, len(b))), axis=1)
             - np.median(rng.choice(a, (resamples, len(a))), axis=1))
    low, high = np.percentile(diffs, [2.5, 97.5])
    return {"difference": float(np.median(b) - np.median(a)), "low": float(low), "high": float(high),
            "significant": bool(low > 0 or high < 0)}


def ratio(value: float | None, base: float | None) -> float | None:
    """value / base - 1 (0.05 means 5 % more), or None when either is missing."""
    if value is None or not base:
        return None
    return value / base - 1.0


def paired_median_difference(a, b, resamples: int = 4000, seed: int = 0) -> dict:
    """Median of b[i] - a[i] (twins: the same request, moments apart) with a 95 % bootstrap interval."""
    diffs = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if not len(diffs):
        return {"difference": None, "low": None, "high": None, "significant": False, "paired": True}
    rng = np.random.default_rng(seed)
    low, high = np.percentile(np.median(rng.choice(diffs, (resamples, len(diffs))), axis=1), [2.5, 97.5])
    return {"difference": float(np.median(diffs)), "low": float(low), "high": float(high),
            "significant": bool(low > 0 or high < 0), "paired": True}


def sign_test(successes: int, trials: int) -> float | None:
    """One-sided p-value of at least `successes` heads in `trials` fair coin flips."""
    if trials == 0:
        return None
    return sum(math.comb(trials, k) for k in range(successes, trials + 1)) / 2**trials
