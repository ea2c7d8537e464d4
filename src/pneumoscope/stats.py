"""Confidence intervals: the percentile bootstrap over patients, and paired differences.

A metric computed on 7 positive images is a guess; its interval says how good a guess. Every
interval here resamples *patients* (all images of a patient are drawn together; an image without a
patient id is its own patient) with replacement, ``draws`` times with a fixed seed, recomputes the
metric on each resample, and reports the 2.5th and 97.5th percentiles (a 95 % percentile
interval, Efron & Tibshirani 1993, ch. 13). A resample on which a metric is undefined (no
positive image for ``dice_pos``, one class only for ROC AUC) is left out of that metric's
percentiles, and the number of defined draws is kept.

A comparison (encoder against encoder, after tuning against before) is a *paired* bootstrap: the
same resampled patients for both, so the interval is that of the difference itself, not two
overlapping intervals side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

DRAWS = 2000
SEED = 0
FEW_POSITIVES = 10  # below this many positives an interval is reported as too wide to say much

Statistic = Callable[[np.ndarray], dict[str, float]]  # indices of the items -> metric values


@dataclass(frozen=True)
class Resampler:
    """Bootstrap resamples of items grouped by patient."""

    groups: tuple[np.ndarray, ...]  # item indices of each patient
    draws: int = DRAWS
    seed: int = SEED

    @classmethod
    def over(cls, patients: Sequence[str] | None, n: int, draws: int = DRAWS, seed: int = SEED) -> Resampler:
        """Resamples of ``n`` items, grouped by ``patients`` (None or "" entries: one item each)."""
        if patients is None:
            return cls(tuple(np.array([i]) for i in range(n)), draws, seed)
        keys = [str(p) if p not in (None, "") and str(p) != "nan" else f"\0item{i}" for i, p in enumerate(patients)]
        order: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            order.setdefault(k, []).append(i)
        return cls(tuple(np.array(v) for v in order.values()), draws, seed)

    @property
    def n_patients(self) -> int:
        return len(self.groups)

    def indices(self) -> list[np.ndarray]:
        """The ``draws`` resamples, as item indices (the same for every metric and every model)."""
        rng = np.random.default_rng(self.seed)
        picks = rng.integers(0, len(self.groups), size=(self.draws, len(self.groups)))
        return [np.concatenate([self.groups[g] for g in row]) for row in picks]


def interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, int]:
    """Percentile interval of bootstrap values (undefined ones left out) and how many were defined."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), 0
    lo, hi = np.percentile(v, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi), int(len(v))


def bootstrap(statistic: Statistic, resampler: Resampler) -> dict[str, list[float]]:
    """``{metric: [low, high]}``: 95 % percentile intervals of every metric ``statistic`` returns."""
    draws: dict[str, list[float]] = {}
    for idx in resampler.indices():
        for k, v in statistic(idx).items():
            draws.setdefault(k, []).append(v)
    return {k: list(interval(v)[:2]) for k, v in draws.items()}


def paired(statistic_a: Statistic, statistic_b: Statistic, resampler: Resampler, n: int) -> dict[str, dict]:
    """``{metric: {"difference", "ci95"}}`` of B minus A, both on the same resampled patients."""
    everyone = np.arange(n)
    a0, b0 = statistic_a(everyone), statistic_b(everyone)
    diffs: dict[str, list[float]] = {k: [] for k in a0 if k in b0}
    for idx in resampler.indices():
        a, b = statistic_a(idx), statistic_b(idx)
        for k in diffs:
            diffs[k].append(b[k] - a[k])
    return {k: {"difference": b0[k] - a0[k], "ci95": list(interval(v)[:2])} for k, v in diffs.items()}


def too_wide(n_positive: int) -> str | None:
    """The note a report puts beside a number resting on too few positives, or None."""
    if n_positive < FEW_POSITIVES:
        return (f"rests on {n_positive} positive image(s): the interval is too wide to say much "
                f"(fewer than {FEW_POSITIVES})")
    return None


def fmt(value: float | None, ci: Sequence[float] | None, digits: int = 3) -> str:
    """``0.406 [0.221, 0.583]`` (or ``–`` for an undefined value)."""
    if value is None or value != value:
        return "–"
    if not ci or any(c is None or c != c for c in ci):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def describe(metrics: dict, keys: Sequence[str], digits: int = 4, with_n: bool = True) -> str:
    """``dice_pos 0.4060 [0.2210, 0.5830], ...; n = 22 images (7 positive, 22 patients), 95 % bootstrap
    intervals`` and, with fewer than 10 positives, the note that the intervals are too wide
    (``with_n=False``: the metrics alone, for a caller that says the n itself)."""
    ci = metrics.get("ci95", {})
    parts = [f"{k} {fmt(metrics[k], ci.get(k), digits)}" for k in keys if metrics.get(k) is not None and metrics[k] == metrics[k]]
    n, pos = metrics.get("n_images"), metrics.get("n_positive")
    if n is None or not with_n:
        return ", ".join(parts)
    line = ", ".join(parts) + f"; n = {n} images ({pos} positive"
    line += f", {metrics['n_patients']} patients)" if "n_patients" in metrics else ")"
    if ci:
        line += ", 95 % bootstrap intervals over patients"
    note = too_wide(pos) if pos is not None else None
    return line + (f"; {note}" if note else "")
