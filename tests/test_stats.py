"""tlcourse.stats: intervals over seeds and image groups, paired tests, Holm, verdict rules."""

from __future__ import annotations

import numpy as np
import pytest

from tlcourse import stats


def _cell(correct_by_run, groups=None):
    correct_by_run = np.asarray(correct_by_run, int)
    runs, n = correct_by_run.shape
    groups = np.arange(n) if groups is None else np.asarray(groups)
    g = groups.max() + 1
    c, t = np.zeros((runs, g), int), np.zeros((runs, g), int)
    for r in range(runs):
        np.add.at(c[r], groups, correct_by_run[r])
        np.add.at(t[r], groups, 1)
    z = np.zeros(runs)
    return stats.Cell(tuple(range(runs)), c, t, z, z, z.astype(int), z.astype(bool))


def _width(cell, runs, groups):
    low, high = stats.interval(stats.Bootstrap(runs, groups, n=4000).accuracy(cell))
    return high - low


def test_one_seed_and_single_images_give_the_binomial_interval():
    rng = np.random.default_rng(0)
    cell = _cell([rng.random(400) < 0.8])
    expected = 2 * 1.96 * np.sqrt(0.8 * 0.2 / 400)
    assert _width(cell, 1, 400) == pytest.approx(expected, rel=0.15)


def test_seed_to_seed_spread_widens_the_interval():
    rng = np.random.default_rng(1)
    steady = _cell([rng.random(400) < 0.8 for _ in range(5)])
    shaky = _cell([rng.random(400) < p for p in (0.65, 0.72, 0.8, 0.88, 0.95)])
    assert _width(shaky, 5, 400) > 1.5 * _width(steady, 5, 400)


def test_near_copies_resampled_together_widen_the_interval():
    rng = np.random.default_rng(2)
    half = rng.random(200) < 0.8
    twice = np.concatenate([half, half])  # every drawing twice, right or wrong together
    as_pairs = _cell([twice], groups=np.concatenate([np.arange(200), np.arange(200)]))
    as_singles = _cell([twice])
    assert _width(as_pairs, 1, 200) > 1.3 * _width(as_singles, 1, 400)


def test_identical_methods_differ_by_nothing():
    cell = _cell([np.random.default_rng(3).random(100) < 0.7 for _ in range(3)])
    boot = stats.Bootstrap(3, 100, n=1000)
    diff = boot.accuracy(cell) - boot.accuracy(cell)
    assert np.all(diff == 0) and stats.p_value(diff) == 1.0


def test_a_clear_paired_difference_is_detected_and_a_null_one_is_not():
    rng = np.random.default_rng(4)
    a = rng.random((5, 300)) < 0.8
    better = _cell(a | (rng.random((5, 300)) < 0.5))   # right wherever a is, and more
    same = _cell(np.roll(a, 1, axis=1))
    boot = stats.Bootstrap(5, 300, n=4000)
    assert stats.p_value(boot.accuracy(better) - boot.accuracy(_cell(a))) < 0.001
    assert stats.p_value(boot.accuracy(same) - boot.accuracy(_cell(a))) > 0.05


def test_bootstrap_stores_small_weights_and_gives_the_replicates_of_one_full_draw():
    # the group weights are drawn in slices and kept in 2 bytes each (memory, issue 19): the
    # replicates must be those of one (n, groups) int64 draw from the same seed, to the last bit
    runs, groups, n = 5, 2000, 2500
    cell = _cell(np.random.default_rng(5).random((runs, groups)) < 0.7)
    boot = stats.Bootstrap(runs, groups, n=n, seed=7)
    rng = np.random.default_rng(7)
    counts = rng.multinomial(runs, np.full(runs, 1 / runs), size=n)
    weights = rng.multinomial(groups, np.full(groups, 1 / groups), size=n)
    assert boot.group_weights.dtype == np.uint16 and np.array_equal(boot.group_weights, weights)
    expected = ((counts @ cell.correct) * weights).sum(axis=1) / ((counts @ cell.tested) * weights).sum(axis=1)
    assert np.array_equal(boot.accuracy(cell), expected)
    assert np.array_equal(boot.run_accuracies(cell), (weights @ cell.correct.T) / (weights @ cell.tested.T))


def test_holm_matches_a_hand_computed_example():
    assert np.allclose(stats.holm([0.01, 0.04, 0.03, 0.2]), [0.04, 0.09, 0.09, 0.2])
    assert np.allclose(stats.holm([0.5, 0.5]), [1.0, 1.0])


@pytest.mark.parametrize("diff, low, high, p, expected", [
    (0.05, 0.02, 0.08, 0.001, "a"), (-0.05, -0.08, -0.02, 0.001, "b"),
    (0.05, 0.01, 0.09, 0.2, "borderline"),        # excludes 0, but not after Holm
    (0.05, 0.0, 0.097, 0.2, "borderline"),        # touches 0
    (0.01, -0.03, 0.05, 0.6, "no difference shown")])
def test_verdict_rules(diff, low, high, p, expected):
    assert stats.verdict(diff, low, high, p, "a", "b") == expected


def test_claim_verdicts_are_symmetric():
    assert stats.claim_verdict(["x", "borderline", "x"], "x", "y") == "agrees"
    assert stats.claim_verdict(["y", "no difference shown"], "x", "y") == "disagrees"
    assert stats.claim_verdict(["x", "y"], "x", "y") == "mixed"
    assert stats.claim_verdict(["borderline", "no difference shown"], "x", "y") == "not shown"
