"""Does one controller dominate another: F1 compared at equal FLOPs saved, along their λ curves.

A curve is a controller's points (FLOPs saved, F1) over λ at fixed pruning layers. Two curves rarely
share a FLOPs value, so the other curve's F1 is linearly interpolated at each point's FLOPs saved,
inside the FLOPs range the other curve covers (no extrapolation: a point outside it is not compared).
"Dominates" = higher F1 at every compared point. Torch-free and pure, so it is unit-tested.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Point = tuple[float, float]  # (FLOPs saved ratio, micro F1)


def interpolate_f1(curve: Sequence[Point], flops: float) -> float | None:
    """F1 of ``curve`` at ``flops`` saved, linearly interpolated; None outside its FLOPs range.

    Where several points share a FLOPs value, their best F1 is used (the curve's upper envelope)."""
    best: dict[float, float] = {}
    for x, y in curve:
        best[x] = max(y, best.get(x, y))
    xs = sorted(best)
    if not xs or not xs[0] <= flops <= xs[-1]:
        return None
    for lo, hi in zip(xs, xs[1:]):
        if lo <= flops <= hi:
            t = (flops - lo) / (hi - lo)
            return best[lo] + t * (best[hi] - best[lo])
    return best[xs[0]]  # a single point, at exactly its FLOPs


@dataclass(frozen=True)
class Comparison:
    """``challenger`` vs ``reference`` wherever their FLOPs ranges overlap (see :func:`compare`)."""

    n_compared: int  # points compared, of either curve
    min_gain_points: float | None  # smallest F1 gain (challenger − reference) in points; None: none compared
    mean_gain_points: float | None
    flops_range: tuple[float, float] | None  # FLOPs saved range of the compared points

    @property
    def dominates(self) -> bool:
        return self.n_compared > 0 and self.min_gain_points > 0


def compare(challenger: Sequence[Point], reference: Sequence[Point]) -> Comparison:
    """Compare both ways round the overlap: each curve's points against the other's interpolation,
    gains signed as challenger − reference."""
    gains, xs = [], []
    for points, other, sign in ((challenger, reference, 1), (reference, challenger, -1)):
        for x, y in points:
            there = interpolate_f1(other, x)
            if there is not None:
                gains.append(y - there if sign > 0 else there - y)  # not sign * (...): a tie stays +0.0
                xs.append(x)
    if not gains:
        return Comparison(0, None, None, None)
    return Comparison(len(gains), 100 * min(gains), 100 * sum(gains) / len(gains), (min(xs), max(xs)))
