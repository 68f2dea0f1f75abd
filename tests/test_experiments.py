"""The comparison runner and its statistics, on tiny configurations (few epochs, small images)."""

from __future__ import annotations

import numpy as np
import pytest

from tlcourse import experiments as E

TINY = E.Settings(image_size=64, scratch_image_size=32, depth=1, learning_rate=1e-4, max_depth=2,
                  max_epochs_head=3, max_epochs_fine_tune=2, max_epochs_scratch=2, patience=1,
                  patience_fine_tune=1, patience_scratch=1)


@pytest.fixture(scope="module")
def clipart_folds():
    return E.cv_folds(E.load_pool("clipart"), folds=5, repeats=1)


def test_the_clipart_pool_has_more_than_400_images_in_10_classes():
    pool = E.load_pool("clipart")
    assert len(pool) >= 400 and len(pool.class_names) == 10
    assert pool.x.dtype == np.uint8 and pool.x.shape[1:] == (128, 128, 3)
    assert len(np.unique(pool.groups)) < len(pool)  # colour / black-and-white copies share a group


def test_cv_folds_score_every_image_once_per_repeat_without_leaks():
    pool = E.load_pool("clipart")
    folds = E.cv_folds(pool, folds=5, repeats=2, seed=0)
    assert len(folds) == 10
    for rep in (0, 1):
        tested = np.concatenate([f.test for f in folds if f.repeat == rep])
        assert np.array_equal(np.sort(tested), np.arange(len(pool)))  # each image exactly once
    for f in folds:
        parts = [set(f.train), set(f.val), set(f.test)]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        groups = [set(pool.groups[list(p)]) for p in parts]
        assert not (groups[0] & groups[2] or groups[1] & groups[2] or groups[0] & groups[1]), "a drawing leaked"
        assert set(pool.y[f.val]) == set(range(10))  # stratified: every class in validation
    assert not np.array_equal(folds[0].test, folds[5].test)  # the repeats shuffle differently


def test_fixed_folds_keep_the_datasets_own_split():
    pool = E.load_pool("spoken_words")
    (f,) = E.fixed_folds(pool, seeds=(3,))
    assert f.repeat == 3 and len(f.test) == 120 and not set(f.train) & set(f.test)
    with pytest.raises(ValueError, match="cv_folds"):
        E.fixed_folds(E.load_pool("clipart"))


@pytest.mark.parametrize("method", E.METHODS)
def test_run_method_returns_a_complete_record(method, clipart_folds):
    fold = clipart_folds[0]
    r = E.run_method("clipart", method, fold, TINY, per_class=5)
    assert r["n_train"] == 5 * 10
    assert 1 <= r["epochs"] and 1 <= r["best_epoch"] <= r["epochs"]
    for key in ("train_accuracy", "val_accuracy", "test_accuracy"):
        assert 0.0 <= r[key] <= 1.0
    assert r["gap"] == pytest.approx(r["train_accuracy"] - r["test_accuracy"])
    assert np.array_equal(r["test_index"], fold.test) and r["test_correct"].dtype == bool
    assert r["test_accuracy"] == pytest.approx(r["test_correct"].mean())
    if method == "feature_extraction":
        assert r["trainable_params"] == 1280 * 10 + 10
    if method == "fine_tuning":
        assert r["trainable_params"] > 100_000


def test_early_stopping_stops_before_the_maximum(clipart_folds):
    s = E.Settings(image_size=64, max_depth=2, max_epochs_head=200, patience=2)
    r = E.run_method("clipart", "feature_extraction", clipart_folds[1], s)
    assert r["epochs"] < 200 and r["best_epoch"] == r["epochs"] - 2


@pytest.mark.parametrize("method", E.METHODS)
def test_same_run_same_result_even_after_other_runs_reuse_the_model(method, clipart_folds):
    """Runs reuse compiled models (weights, optimizer and dropout seeds reset): no state may leak."""
    E._HEADS.clear()
    a = E.run_method("clipart", method, clipart_folds[2], TINY, per_class=5)
    E._HEADS.clear()
    E.run_method("clipart", method, clipart_folds[3], TINY, per_class=5)
    E._HEADS.clear()
    b = E.run_method("clipart", method, clipart_folds[2], TINY, per_class=5)
    assert np.array_equal(a["test_correct"], b["test_correct"])
    assert a["train_accuracy"] == b["train_accuracy"] and a["epochs"] == b["epochs"]


def test_per_class_indices():
    y = np.repeat(np.arange(4), 9)
    idx = E.per_class_indices(y, 3, seed=5)
    assert np.array_equal(idx, E.per_class_indices(y, 3, seed=5))
    assert np.bincount(y[idx]).tolist() == [3, 3, 3, 3]
    assert not np.array_equal(idx, E.per_class_indices(y, 3, seed=6))
    with pytest.raises(ValueError, match="maximum"):
        E.per_class_indices(np.repeat(np.arange(2), 5), 6, seed=0)


@pytest.mark.parametrize("bad", [dict(learning_rate=0.0), dict(depth=5, max_depth=2), dict(patience=0)])
def test_bad_settings_are_rejected(bad):
    with pytest.raises(ValueError):
        E.Settings(**bad)


def test_unknown_method_is_a_clear_error(clipart_folds):
    with pytest.raises(ValueError, match="unknown method"):
        E.run_method("clipart", "magic", clipart_folds[0], TINY)


def test_select_fine_tuning_never_predicts_the_test_fold(monkeypatch, clipart_folds):
    fold = clipart_folds[0]
    seen = []
    run = E.run_method
    monkeypatch.setattr(E, "run_method", lambda d, m, f, s, per_class=None: seen.append(f) or run(d, m, f, s, per_class))
    best, table = E.select_fine_tuning("clipart", fold, TINY, depths=(1,), learning_rates=(1e-4, 1e-3))
    assert len(table) == 2 and best in table
    assert {"depth", "learning_rate", "val_accuracy"} <= set(best)
    assert seen and all(len(f.test) == 0 and np.array_equal(f.val, fold.val) for f in seen)


def _fake_records(correct_a, correct_b, repeats=1):
    recs = []
    for rep in range(repeats):
        for method, ok in (("a", correct_a), ("b", correct_b)):
            recs.append(dict(dataset="d", method=method, per_class=None, repeat=rep,
                             test_index=np.arange(len(ok)), test_correct=np.asarray(ok, bool)))
    return recs


def test_mcnemar_counts_discordant_pairs_and_matches_scipy():
    from scipy import stats

    a = np.array([1, 1, 1, 0, 0, 1, 1, 0], bool)
    b = np.array([1, 0, 0, 0, 1, 1, 0, 0], bool)
    m = E.mcnemar_exact(a, b)
    assert (m["only_a"], m["only_b"], m["discordant"]) == (3, 1, 4)
    assert m["p_value"] == pytest.approx(stats.binomtest(3, 4, 0.5).pvalue)


def test_paired_difference_calls_a_clear_winner_and_a_tie():
    rng = np.random.default_rng(0)
    base = rng.random(1000) < 0.7
    better = base | (rng.random(1000) < 0.3)  # about 9 points better, on the same images
    win = E.paired_difference(_fake_records(better, base), "d", "a", "b")
    assert win["verdict"] == "a" and win["low"] > 0
    same = E.paired_difference(_fake_records(base, base.copy()), "d", "a", "b")
    assert same["verdict"] == "tie" and same["difference"] == same["low"] == same["high"] == 0
    with pytest.raises(ValueError, match="same test images"):
        recs = _fake_records(base, base)
        recs[1]["test_index"] = recs[1]["test_index"] + 1
        E.paired_difference(recs, "d", "a", "b")


def test_accuracy_interval_covers_the_accuracy_and_shrinks_with_more_images():
    rng = np.random.default_rng(1)
    small = E.accuracy_interval(_fake_records(rng.random(100) < 0.8, rng.random(100) < 0.5), "d", "a")
    big = E.accuracy_interval(_fake_records(rng.random(2000) < 0.8, rng.random(2000) < 0.5), "d", "a")
    for r in (small, big):
        assert r["low"] <= r["accuracy"] <= r["high"]
    assert (big["high"] - big["low"]) < (small["high"] - small["low"]) / 3
    # about +-1.96 sqrt(p(1-p)/n) = +-0.018 at n = 2000, p = 0.8
    assert big["high"] - big["low"] == pytest.approx(2 * 1.96 * (0.8 * 0.2 / 2000) ** 0.5, rel=0.2)


def test_the_interval_widens_when_seeds_disagree():
    rng = np.random.default_rng(2)
    agree = _fake_records(rng.random(500) < 0.7, rng.random(500) < 0.5, repeats=1)
    recs = agree + [dict(dataset="d", method="a", per_class=None, repeat=1, test_index=np.arange(500),
                         test_correct=rng.random(500) < 0.9)]
    one = E.accuracy_interval(agree, "d", "a")
    two = E.accuracy_interval(recs, "d", "a")
    assert two["seeds"] == 2 and (two["high"] - two["low"]) > (one["high"] - one["low"])


def test_mcnemar_power_uses_the_same_rejection_region_as_binomtest():
    from scipy import stats

    # n = D = all discordant (discordance 1): power is the rejection probability of binomtest itself
    D, q = 30, 0.5 + 0.3 / 2
    reject = [k for k in range(D + 1) if stats.binomtest(k, D, 0.5).pvalue < 0.05]
    expected = stats.binom.pmf(reject, D, q).sum()
    assert E.mcnemar_power(D, 1.0, 0.3) == pytest.approx(expected, rel=1e-6)


def test_mcnemar_power_grows_with_images_and_falls_with_disagreement():
    p450 = E.mcnemar_power(450, 0.10, 0.03)
    assert 0 < p450 < E.mcnemar_power(2000, 0.10, 0.03) <= 1
    assert E.mcnemar_power(450, 0.06, 0.03) > E.mcnemar_power(450, 0.20, 0.03)
    assert E.mcnemar_power(2000, 0.10, 0.0) < 0.06  # no difference: about the 5 % level
    with pytest.raises(ValueError):
        E.mcnemar_power(100, 0.02, 0.05)


def test_plots_work_for_any_dataset_name():
    import matplotlib

    matplotlib.use("Agg")
    from tlcourse import plots

    rows = [dict(dataset="my_own_data", method=m, x=x, seconds=1.0 + x, accuracy=0.5, low=0.4, high=0.6)
            for m in E.METHODS for x in (5, 50)]
    assert plots.plot_comparison(rows, chance=0.1) is not None
    assert plots.plot_cost(rows) is not None
    assert plots.plot_power({"100 images": ([0.1, 0.2], [0.5, 0.3])}, marks={"x": (0.1, 0.5)}) is not None
