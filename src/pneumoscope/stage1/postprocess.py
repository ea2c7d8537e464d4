"""The SIIM-ACR winners' post-processing rule and its search on validation.

A mask is kept only when the area of ``prob > top`` reaches ``min_area`` (a fraction of the
image area, so the rule transfers across resolutions: "is there a pneumothorax at all");
a kept mask is ``prob > bottom`` (its extent). The triplet is searched on the validation
images to maximise ``dice_kaggle`` and saved with the run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..folders import Run

TOPS = (0.5, 0.6, 0.7, 0.8, 0.9)
MIN_AREAS = (0.0, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016)
BOTTOMS = (0.2, 0.3, 0.4, 0.5)


@dataclass(frozen=True)
class Rule:
    """Threshold triplet; the plain 0.5 threshold is ``Rule(0.5, 0.0, 0.5)``."""

    top: float = 0.5
    min_area: float = 0.0  # fraction of the image area
    bottom: float = 0.5

    def apply(self, prob: np.ndarray) -> np.ndarray:
        """Binary mask (bool) of one probability map, or of a stack (N, H, W)."""
        p = np.asarray(prob, dtype=np.float32)
        pix = p.shape[-1] * p.shape[-2]
        keep = (p > self.top).reshape(*p.shape[:-2], -1).sum(-1) >= max(1.0, self.min_area * pix)
        return (p > self.bottom) & np.asarray(keep)[..., None, None]

    def to_dict(self) -> dict:
        """The triplet as a mapping (what the run saves)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Rule":
        """A rule from :meth:`to_dict` output (extra keys ignored)."""
        return cls(float(d["top"]), float(d["min_area"]), float(d["bottom"]))


def load_rule(run: Run) -> Rule | None:
    """The rule saved in a run, or None."""
    saved = run.read_postprocess()
    return None if saved is None else Rule.from_dict(saved)


def save_rule(run: Run, rule: Rule, score: float | None = None, baseline: float | None = None,
              objective: str = "dice_kaggle", bound: float | None = None, searched_on: str = "validation") -> None:
    """Save a rule in a run with its score (``objective``) on the images it was searched on, that of the
    plain threshold, and the bound its minimum area was held under."""
    run.write_postprocess({**rule.to_dict(), "objective": objective, f"val_{objective}": score, f"val_{objective}_plain": baseline,
                           "min_area_bound": bound, "bound_rule": f"{AREA_PERCENTILE:g}th percentile of the training positives' areas",
                           "searched_on": searched_on})


AREA_PERCENTILE = 5.0  # the rule's minimum area never exceeds this percentile of the training positives' areas


def area_bound(masks: np.ndarray, percentile: float = AREA_PERCENTILE) -> float | None:
    """The largest minimum area (a fraction of the image) a rule may have: the ``percentile``-th
    percentile of the areas of the positive ``masks`` (N, H, W) training shows to be real, so that no
    finding as large as most real ones is ever erased. None without positive masks."""
    m = np.asarray(masks)
    areas = (m.reshape(len(m), -1) > 0).mean(1) if len(m) else np.zeros(0)
    areas = areas[areas > 0]
    return float(np.percentile(areas, percentile)) if len(areas) else None


def search(probs: np.ndarray, truths: np.ndarray, objective: str = "dice_kaggle",
           max_min_area: float | None = None) -> tuple[Rule, float, float]:
    """Grid search of the triplet maximising mean per-image Dice (empty-empty = 1).

    ``probs`` float (N, H, W), ``truths`` 0/1 (N, H, W). ``objective``: ``dice_kaggle`` (the mean over
    all images, the leaderboard's); ``balanced``: the mean of the positives' mean Dice and the normals'
    mean (1 for an empty prediction), so that when normals outnumber positives, emptying every mask is
    not the best rule; ``guarded``: ``dice_kaggle``, among the rules that keep a mask on at least half
    of the validation positives the plain threshold finds (never "draw nothing" because normals are
    many). ``max_min_area`` (see :func:`area_bound`): no candidate's minimum area exceeds it.
    Returns the best rule, its score and that of the plain 0.5 threshold.
    """
    n = len(probs)
    p = probs.reshape(n, -1).astype(np.float32)
    t = truths.reshape(n, -1) > 0
    tsum = t.sum(1)
    pos = tsum > 0
    pix = p.shape[1]
    top_area = {top: (p > top).sum(1) for top in TOPS}
    parts = {}
    for b in BOTTOMS:
        m = p > b
        parts[b] = ((m & t).sum(1), m.sum(1))

    plain_found = int((pos & (top_area[0.5] >= 1)).sum())

    def score(top: float, min_area: float, bottom: float) -> float:
        keep = top_area[top] >= max(1.0, min_area * pix)
        if objective == "guarded" and 2 * int((keep & pos & (parts[bottom][1] > 0)).sum()) < plain_found:
            return -1.0  # loses more than half of the positives the plain threshold finds: not a candidate
        inter, psum = parts[bottom]
        denom = np.where(keep, psum, 0) + tsum
        dice = np.where(denom == 0, 1.0, 2.0 * np.where(keep, inter, 0) / np.maximum(denom, 1))
        if objective == "balanced" and pos.any() and (~pos).any():
            return float(0.5 * dice[pos].mean() + 0.5 * dice[~pos].mean())
        return float(dice.mean())

    best, best_score = Rule(), -1.0
    for top in TOPS:
        for min_area in MIN_AREAS:
            if max_min_area is not None and min_area > max_min_area:
                continue
            for bottom in BOTTOMS:
                if bottom > top:
                    continue
                s = score(top, min_area, bottom)
                if s > best_score + 1e-12:
                    best, best_score = Rule(top, min_area, bottom), s
    return best, best_score, score(0.5, 0.0, 0.5)
