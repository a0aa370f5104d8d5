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
    return {
        "n": len(values),
        "mean": float(array.mean()),
        "p50": percentile(array, 50),
        "p95": percentile(array, 95),
        "p99": percentile(array, 99),
        "min": float(array.min()),
        "max": float(array.max()),
    }


def median_difference(a, b, resamples: int = 4000, seed: int = 0) -> dict:
    """median(b) - median(a) with a 95 % bootstrap interval; `significant` when it excludes zero."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not len(a) or not len(b):
        return {"difference": None, "low": None, "high": None, "significant": False}
    rng = np.random.default_rng(seed)
    diffs = np.median(rng.choice(b, (resamples, len(b))), axis=1) - np.median(
        rng.choice(a, (resamples, len(a))), axis=1
    )
    low, high = np.percentile(diffs, [2.5, 97.5])
    return {
        "difference": float(np.median(b) - np.median(a)),
        "low": float(low),
        "high": float(high),
        "significant": bool(low > 0 or high < 0),
    }


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
    return {
        "difference": float(np.median(diffs)),
        "low": float(low),
        "high": float(high),
        "significant": bool(low > 0 or high < 0),
        "paired": True,
    }


def sign_test(successes: int, trials: int) -> float | None:
    """One-sided p-value of at least `successes` heads in `trials` fair coin flips."""
    if trials == 0:
        return None
    return sum(math.comb(trials, k) for k in range(successes, trials + 1)) / 2**trials


def median_interval(values, resamples: int = 4000, seed: int = 0) -> dict:
    """The median of one sample with a 95 % bootstrap interval (None without values)."""
    values = np.asarray(values, dtype=float)
    if not len(values):
        return {"estimate": None, "low": None, "high": None, "n": 0}
    rng = np.random.default_rng(seed)
    low, high = np.percentile(np.median(rng.choice(values, (resamples, len(values))), axis=1), [2.5, 97.5])
    return {"estimate": float(np.median(values)), "low": float(low), "high": float(high), "n": int(len(values))}


# Verdicts. A claim is decided only when the whole 95 % interval lies on one side; an interval that
# straddles the boundary decides nothing, whatever the point estimate says.
ABOVE, BELOW, INCONCLUSIVE = "above", "below", "inconclusive"
MET, MISSED = "met", "missed"


def side_of(low: float | None, high: float | None, boundary: float = 0.0) -> str:
    """`above` when the interval lies wholly above `boundary`, `below` when wholly below, else `inconclusive`."""
    if low is None or high is None:
        return INCONCLUSIVE
    if low > boundary:
        return ABOVE
    if high < boundary:
        return BELOW
    return INCONCLUSIVE


def within_limit(low: float | None, high: float | None, limit: float) -> str:
    """A "value <= limit" target: `met` when the interval's top is within it, `missed` when its bottom is
    beyond it, else `inconclusive`."""
    if low is None or high is None:
        return INCONCLUSIVE
    if high <= limit:
        return MET
    if low > limit:
        return MISSED
    return INCONCLUSIVE


def interval_text(low: float | None, high: float | None, unit: str = " ms", digits: int = 1) -> str:
    """`95 % CI [low, high] unit`, for the verdicts."""
    if low is None or high is None:
        return "no interval (no data)"
    return f"95 % CI [{low:+,.{digits}f}, {high:+,.{digits}f}]{unit}"


def availability(outcomes, start: float, end: float) -> dict:
    """Time-weighted availability of a service from its clients' requests, over [start, end]: at each
    moment the service counts as up when the latest request to finish had succeeded (up before the
    first one). Returns the seconds down and the share of the window up."""
    window = end - start
    if window <= 0:
        return {"window_s": 0.0, "down_s": 0.0, "availability": None}
    down, up, since = 0.0, True, start
    for finished, ok in sorted((o["finished"], o["ok"]) for o in outcomes if start <= o["finished"] <= end):
        if not up:
            down += finished - since
        up, since = ok, finished
    if not up:
        down += end - since
    return {"window_s": window, "down_s": down, "availability": 1.0 - down / window}
