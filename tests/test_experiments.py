"""The comparison runner, on a tiny configuration (a few steps, small images)."""

from __future__ import annotations

import numpy as np
import pytest

from tlcourse import experiments as E

TINY = dict(image_size=64, scratch_image_size=32, steps=4, depth=1, learning_rate=1e-4)


@pytest.mark.parametrize("method", E.METHODS)
def test_run_experiment_returns_a_complete_record(method):
    r = E.run_experiment(E.ExperimentConfig("clipart", method, per_class=5, seed=0, **TINY))
    for key in ("dataset", "method", "per_class", "seed", "n_train", "train_accuracy", "test_accuracy",
                "gap", "seconds", "prep_seconds", "total_seconds", "trainable_params"):
        assert key in r
    assert r["n_train"] == 5 * 7
    assert 0.0 <= r["test_accuracy"] <= 1.0 and 0.0 <= r["train_accuracy"] <= 1.0
    assert r["gap"] == pytest.approx(r["train_accuracy"] - r["test_accuracy"])
    assert r["total_seconds"] >= r["seconds"] > 0
    assert (r["prep_seconds"] == 0) == (method == "scratch")
    expected_params = {"feature_extraction": 1280 * 7 + 7, "scratch": None, "fine_tuning": None}[method]
    if expected_params:
        assert r["trainable_params"] == expected_params


def test_same_config_same_result_and_seeds_differ():
    cfg = E.ExperimentConfig("clipart", "feature_extraction", per_class=5, seed=1, **TINY)
    a, b = E.run_experiment(cfg), E.run_experiment(cfg)
    assert a["test_accuracy"] == b["test_accuracy"]
    assert not np.array_equal(E.per_class_indices(np.repeat(np.arange(3), 10), 4, 0),
                              E.per_class_indices(np.repeat(np.arange(3), 10), 4, 1))


def test_every_method_sees_the_same_training_images():
    y = np.repeat(np.arange(4), 9)
    idx = E.per_class_indices(y, 3, seed=5)
    assert np.array_equal(idx, E.per_class_indices(y, 3, seed=5))
    assert np.bincount(y[idx]).tolist() == [3, 3, 3, 3]


@pytest.mark.parametrize("n", [10, 28, 200])
def test_step_indices_give_exactly_the_steps_and_balanced_passes(n):
    order = E.step_indices(n, steps=7, batch_size=4, seed=0)
    assert len(order) == 28  # equal effort: the same number of updates at every size
    counts = np.bincount(order, minlength=n)
    assert counts.max() - counts.min() <= 1
    assert np.array_equal(order, E.step_indices(n, steps=7, batch_size=4, seed=0))


def test_too_many_labels_per_class_is_a_clear_error():
    with pytest.raises(ValueError, match="at most"):
        E.per_class_indices(np.repeat(np.arange(2), 5), 6, seed=0)


@pytest.mark.parametrize("bad", [dict(method="magic"), dict(per_class=0), dict(steps=0),
                                 dict(learning_rate=0.0)])
def test_bad_configs_are_rejected(bad):
    args = dict(dataset="clipart", method="feature_extraction") | bad
    with pytest.raises(ValueError):
        E.ExperimentConfig(**args)


def test_select_fine_tuning_uses_validation_only(monkeypatch):
    seen = []
    accuracy = E._accuracy
    monkeypatch.setattr(E, "_accuracy", lambda model, x, y: seen.append(y) or accuracy(model, x, y))
    best, table = E.select_fine_tuning("clipart", depths=(1,), learning_rates=(1e-4, 1e-3),
                                       image_size=64, steps=4)
    assert len(table) == 2 and best in table
    assert set(best) == {"dataset", "depth", "learning_rate", "val_accuracy"}
    _, (_, y_val), (_, y_test), _ = E._arrays("clipart", 64)
    assert seen and all(y is y_val for y in seen), "selection must score on the validation split only"


@pytest.mark.parametrize("method", E.METHODS)
def test_a_reused_compiled_model_gives_the_same_result_as_a_fresh_one(method):
    """Runs reuse compiled models (weights, optimizer and dropout seeds reset): no state may leak."""
    cfg = E.ExperimentConfig("clipart", method, per_class=5, seed=3, **(TINY | dict(steps=6)))
    def trained_weights():
        models = [m[0] if isinstance(m, tuple) else m for m in E._MODELS.values()]
        return {i: [w.copy() for w in m.get_weights()] for i, m in enumerate(models)}

    E._MODELS.clear()
    fresh = E.run_experiment(cfg)
    w_fresh = trained_weights()
    E.run_experiment(E.ExperimentConfig("clipart", method, per_class=5, seed=4, **(TINY | dict(steps=6))))
    assert any(not np.array_equal(a, b) for i in w_fresh for a, b in zip(w_fresh[i], trained_weights()[i]))
    again = E.run_experiment(cfg)
    for key in ("train_accuracy", "test_accuracy", "trainable_params"):
        assert again[key] == fresh[key], key
    w_again = trained_weights()
    for i in w_fresh:  # bit-identical trained weights: optimizer state and dropout seeds were reset
        assert all(np.array_equal(a, b) for a, b in zip(w_fresh[i], w_again[i]))


def test_summarize_groups_by_dataset_method_size():
    recs = [dict(dataset="d", method="m", per_class=5, test_accuracy=v) for v in (0.5, 0.7)]
    mean, std, n = E.summarize(recs)["d", "m", 5]
    assert mean == pytest.approx(0.6) and std == pytest.approx(0.1) and n == 2
