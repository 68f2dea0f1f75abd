"""The comparison runner (tlcourse.experiments) on tiny configurations: few epochs, small images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tlcourse import data, experiments as E, training

TINY = E.Settings(image_size=64, scratch_image_size=32, depth=1, learning_rate=1e-4, max_depth=2,
                  max_epochs_head=3, max_epochs_fine_tune=2, max_epochs_scratch=2, patience=1,
                  patience_fine_tune=1, patience_scratch=1)


@pytest.fixture(scope="module")
def pool():
    return data.load_pool("clipart")


@pytest.fixture(scope="module")
def folds(pool):
    return E.cv_folds(pool)


def _group_of(pool, name):
    (i,) = [k for k, n in enumerate(pool.names) if n == name]
    return pool.groups[i]


def test_near_copies_share_a_group_and_different_drawings_do_not(pool):
    assert len(pool) == 450 and len(pool.class_names) == 10 and pool.x.shape[1:] == (128, 128, 3)
    assert _group_of(pool, "fruit/lime_slice_ganson.png") == _group_of(pool, "fruit/lemon_slice_ganson.png")  # recoloured
    assert _group_of(pool, "desserts/glace_01_jean-victor_bal_01.png") == _group_of(pool, "desserts/glace_01_bw_jean-victor__01.png")
    assert _group_of(pool, "mammals/sleeping_cat_rgolan_sup_r.png") == _group_of(pool, "mammals/sleeping_cat_ron_golan_01.png")
    assert _group_of(pool, "fruit/lime_slice_ganson.png") != _group_of(pool, "fruit/pear_01.png")
    assert np.bincount(pool.groups).max() <= 12  # no runaway chain of "similar" drawings


def test_cv_folds_test_every_image_once_and_keep_drawings_on_one_side(pool, folds):
    assert len(folds) == 5
    assert np.array_equal(np.sort(np.concatenate([f.test for f in folds])), np.arange(len(pool)))
    for f in folds:
        sides = [set(pool.groups[f.train]), set(pool.groups[f.val]), set(pool.groups[f.test])]
        assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2]), "a drawing leaked"
        assert set(pool.y[f.val]) == set(range(10))


def test_fixed_folds_keep_the_datasets_own_split():
    (f,) = E.fixed_folds(data.load_pool("spoken_words"))
    assert len(f.test) == 120 and not set(f.train) & set(f.test)
    with pytest.raises(ValueError, match="cv_folds"):
        E.fixed_folds(data.load_pool("clipart"))


@pytest.mark.parametrize("method", E.METHODS)
def test_a_record_holds_what_the_analysis_needs(method, pool, folds):
    fold = folds[0]
    r = E.run_method("clipart", method, fold, TINY, per_class=5, seed=3)
    assert r["n_train"] == 50 and r["n_val"] <= r["n_train"]  # validation never larger than training
    assert r["test_index"] == fold.test.tolist() and len(r["test_pred"]) == len(fold.test)
    pred = np.array([int(c) for c in r["test_pred"]])
    assert r["test_accuracy"] == pytest.approx(np.mean(pred == pool.y[fold.test]))
    assert r["seed"] == 3 and 1 <= r["best_epoch"] <= r["epochs"]
    json.dumps(r)  # one JSON line
    if method == "feature_extraction":
        assert r["trainable_params"] == 1280 * 10 + 10


@pytest.mark.parametrize("method", E.METHODS)
def test_a_reused_model_gives_the_same_run_as_a_newly_built_one(method, folds):
    """compiled_model restores every variable; a run must not depend on the runs before it."""
    training.forget_compiled_models()
    E._HEADS.clear()
    cold = E.run_method("clipart", method, folds[2], TINY, per_class=5, seed=1)
    E.run_method("clipart", method, folds[3], TINY, per_class=5, seed=1)  # same key: the model is reused
    E._HEADS.clear()
    warm = E.run_method("clipart", method, folds[2], TINY, per_class=5, seed=1)
    assert warm["test_pred"] == cold["test_pred"] and warm["val_accuracy"] == cold["val_accuracy"]


@pytest.mark.parametrize("depth", [0, 1])
def test_a_chained_cut_gives_the_direct_cut(pool, depth):
    """_activations runs the deep bottom once and chains the blocks between; same activations."""
    E._CUTS.clear()
    chained, _ = E._activations(pool, TINY, depth)
    bottom, _ = training.split_at_depth(E._base(TINY.backbone, TINY.image_size), depth)
    direct = training.extract_features(bottom, E._images(pool, TINY.image_size), cache=False)
    np.testing.assert_allclose(chained, direct, rtol=1e-4, atol=1e-4)


def test_early_stopping_restores_the_best_epoch():
    """_fit ends with the best epoch's weights, not the last epoch's (restore_best_weights)."""
    import keras

    rng = np.random.default_rng(0)
    x, xv = rng.normal(size=(64, 20)).astype("float32"), rng.normal(size=(64, 20)).astype("float32")
    y, yv = rng.integers(0, 2, 64), rng.integers(0, 2, 64)   # noise: validation loss soon rises
    inputs = keras.Input((20,))
    model = training.compile_classifier(keras.Model(inputs, keras.layers.Dense(2)(
        keras.layers.Dense(64, activation="relu")(inputs))), 0.05)
    r = E._fit(model, x, y, xv, yv, max_epochs=40, patience=3, batch_size=16, seed=0)
    losses = model.history.history["val_loss"]
    assert r["best_epoch"] < r["epochs"] == len(losses) and losses[-1] > min(losses)
    now = model.evaluate(xv, yv, verbose=0, return_dict=True)["loss"]
    assert now == pytest.approx(min(losses), rel=1e-5)


def test_choose_setting_takes_the_cheapest_within_one_standard_error():
    rows = [dict(seed=s, depth=d, learning_rate=lr, val_accuracy=v)
            for s, (a, b, c) in enumerate([(0.70, 0.70, 0.60), (0.74, 0.76, 0.61), (0.72, 0.73, 0.59)])
            for (d, lr), v in zip([(1, 1e-4), (4, 1e-4), (4, 1e-3)], (a, b, c))]
    pick = E.choose_setting(rows)
    assert pick["best"]["depth"] == 4  # the best mean (0.730) ...
    assert (pick["depth"], pick["learning_rate"]) == (1, 1e-4)  # ... but 1 block (0.720) is within one SE
    assert sum(pick["wins"].values()) == 3
    rows += [dict(seed=s, depth=9, learning_rate=1e-4, val_accuracy=0.9) for s in range(3)]
    assert E.choose_setting(rows)["depth"] == 9  # far better: no cheaper setting is within one SE


def test_the_plan_runs_selection_first_then_every_method_at_the_chosen_setting():
    first = E.plan("spoken_words")
    assert {r["stage"] for r in first} == {"select"} and all(r["per_class"] is None for r in first)
    fake = [dict(r, val_accuracy=0.5 + 0.1 * (r["depth"] == 2 and r["learning_rate"] == 1e-3)) for r in first]
    full = E.plan("spoken_words", fake)
    compare = [r for r in full if r["stage"] == "compare"]
    d = E.DESIGN["spoken_words"]
    assert len(compare) == len(d["sizes"]) * len(d["seeds"]) * 3
    assert {(r["depth"], r["learning_rate"]) for r in compare if r["method"] == "fine_tuning"} == {(2, 1e-3)}


def test_run_plan_resumes_where_a_killed_run_stopped(tmp_path, monkeypatch):
    design = dict(settings=TINY, sizes=(5,), seeds=(0,), select_seeds=(0,), grid=((1,), (1e-4, 1e-3)))
    monkeypatch.setitem(E.DESIGN, "spoken_words", design)
    path = tmp_path / "runs.jsonl"
    assert E.run_plan(("spoken_words",), path, progress=False, limit=3) == 3
    with open(path, "a") as f:
        f.write('{"stage": "compare", "dataset": "spoken_w')  # the process died while writing
    assert E.run_plan(("spoken_words",), path, progress=False) == 2  # 2 selection + 3 methods = 5 in all
    records = E.read_records(path)
    keys = [(r["stage"], r["method"], r["learning_rate"]) for r in records]
    assert len(records) == 5 and len(set(keys)) == 5
    assert E.run_plan(("spoken_words",), path, progress=False) == 0  # nothing left to do
