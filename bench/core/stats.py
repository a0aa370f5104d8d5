"""Summaries of latency samples, and a bootstrap test of whether two medians really differ.

`percentile` is the one percentile of every benchmark and of the evaluation: linear interpolation between
the two nearest ranks (numpy's default, "linear"). Intervals are scipy's percentile bootstrap (95 %,
4000 resamples, a fixed seed); the sign test is scipy's exact binomial test.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as scipy_stats


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


def _bootstrap(samples: tuple, statistic, resamples: int, seed: int, paired: bool = False) -> tuple[float, float]:
    """The 95 % percentile-bootstrap interval of `statistic` over `samples`, each resampled on its own (or,
    `paired`, the same positions drawn from every sample: twins stay together)."""
    # scipy needs two values per sample; [x, x] resamples to exactly what [x] does (x every time).
    samples = tuple(np.repeat(sample, 2) if len(sample) == 1 else sample for sample in samples)
    interval = scipy_stats.bootstrap(
        samples,
        statistic,
        n_resamples=resamples,
        vectorized=True,
        confidence_level=0.95,
        method="percentile",
        paired=paired,
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return float(interval.low), float(interval.high)


def _median_of_difference(a, b, axis=-1):
    return np.median(b, axis=axis) - np.median(a, axis=axis)


def _median(values, axis=-1):
    return np.median(values, axis=axis)


def median_difference(a, b, resamples: int = 4000, seed: int = 0) -> dict:
    """median(b) - median(a) with a 95 % bootstrap interval; `significant` when it excludes zero."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not len(a) or not len(b):
        return {"difference": None, "low": None, "high": None, "significant": False}
    low, high = _bootstrap((a, b), _median_of_difference, resamples, seed)
    return {
        "difference": float(np.median(b) - np.median(a)),
        "low": low,
        "high": high,
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
    low, high = _bootstrap((diffs,), _median, resamples, seed)
    return {
        "difference": float(np.median(diffs)),
        "low": low,
        "high": high,
        "significant": bool(low > 0 or high < 0),
        "paired": True,
    }


def _ratio_of_medians(a, b, axis=-1):
    return np.median(b, axis=axis) / np.median(a, axis=axis)


def paired_ratio_of_medians(a, b, resamples: int = 4000, seed: int = 0) -> dict:
    """median(b) / median(a) over twins (a[i] and b[i]: the same question, moments apart), with a 95 % bootstrap
    interval that resamples the twins together."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} and {len(b)}")
    if not len(a) or np.median(a) <= 0:
        return {"ratio": None, "low": None, "high": None, "n": int(len(a))}
    low, high = _bootstrap((a, b), _ratio_of_medians, resamples, seed, paired=True)
    return {"ratio": float(np.median(b) / np.median(a)), "low": low, "high": high, "n": int(len(a))}


def sign_test(successes: int, trials: int) -> float | None:
    """One-sided p-value of at least `successes` heads in `trials` fair coin flips."""
    if trials == 0:
        return None
    return float(scipy_stats.binomtest(successes, trials, 0.5, alternative="greater").pvalue)


def median_interval(values, resamples: int = 4000, seed: int = 0) -> dict:
    """The median of one sample with a 95 % bootstrap interval (None without values)."""
    values = np.asarray(values, dtype=float)
    if not len(values):
        return {"estimate": None, "low": None, "high": None, "n": 0}
    low, high = _bootstrap((values,), _median, resamples, seed)
    return {"estimate": float(np.median(values)), "low": low, "high": high, "n": int(len(values))}


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
