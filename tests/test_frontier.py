"""Comparing controllers at equal FLOPs saved (training/analysis/frontier.py)."""
from __future__ import annotations

import pytest

from training.analysis.frontier import compare, interpolate_f1

RULE = [(0.30, 0.84), (0.40, 0.82)]


def test_interpolates_inside_and_refuses_outside_the_range():
    assert interpolate_f1(RULE, 0.35) == pytest.approx(0.83)
    assert interpolate_f1(RULE, 0.30) == pytest.approx(0.84)
    assert interpolate_f1(RULE, 0.45) is None and interpolate_f1(RULE, 0.2) is None
    assert interpolate_f1([(0.3, 0.8), (0.3, 0.82)], 0.3) == pytest.approx(0.82)  # upper envelope


def test_a_curve_above_everywhere_dominates_and_a_crossing_one_does_not():
    above = [(0.32, 0.845), (0.38, 0.83), (0.5, 0.80)]
    c = compare(above, RULE)
    assert c.dominates and c.min_gain_points > 0
    assert c.flops_range == (0.32, 0.40)  # the 50% point lies outside the rule curve: not compared
    crossing = [(0.30, 0.85), (0.40, 0.81)]
    assert not compare(crossing, RULE).dominates
    assert compare(crossing, RULE).min_gain_points == pytest.approx(-1.0)


def test_disjoint_curves_are_not_compared():
    c = compare([(0.5, 0.9)], RULE)
    assert c.n_compared == 0 and not c.dominates
