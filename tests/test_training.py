"""Tests for tlcourse.training: caches, unfreezing by block, cut points, guard rails."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tlcourse import training as T  # noqa: E402
from tlcourse.backbones import backbone_blocks, load_backbone  # noqa: E402
from tlcourse.config import release_memory  # noqa: E402


@pytest.fixture(scope="module")
def base():
    return load_backbone("efficientnet_lite0", image_size=64)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (48, 64, 64, 3)).astype("float32")
    y = np.arange(48) % 3
    return T.FineTuneData(x[:24], y[:24], x[24:36], y[24:36], x[36:], y[36:], 3)


def _stage1_head():
    """A small non-zero head (a zero kernel would pass no gradient to the blocks below)."""
    rng = np.random.default_rng(0)
    return [rng.normal(0, 0.05, (1280, 3)).astype("float32"), np.zeros(3, "float32")]


def _unfreeze(base, depth, train_bn=False):
    """Notebook 02's unfreeze loop: freeze everything, then train the top ``depth`` blocks."""
    top = {name for block in backbone_blocks(base)[len(backbone_blocks(base)) - depth:]
           for name in block.layers} if depth else set()
    base.trainable = True
    for layer in base.layers:
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = layer.name in top and (train_bn or not is_bn)


def test_trainable_params_at_depth_matches_the_unfreeze_loop(base):
    for depth in (0, 3):
        _unfreeze(base, depth)
        assert T.count_params(base)["trainable"] == T.trainable_params_at_depth(base, depth)
    assert T.trainable_params_at_depth(base, 0) == 0
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in base.layers
                   if layer.trainable and layer.weights)
    bn_params = sum(int(np.prod(w.shape)) for layer in base.layers
                    if isinstance(layer, keras.layers.BatchNormalization) for w in layer.weights)
    full = T.trainable_params_at_depth(base, 18)
    assert full + bn_params == base.count_params()
    _unfreeze(base, 18, train_bn=True)   # gamma and beta train, the moving statistics never do
    assert T.count_params(base)["trainable"] == T.trainable_params_at_depth(base, 18, train_bn=True) > full
    base.trainable = False


@pytest.mark.parametrize("bad", [-1, 19, 100])
def test_depth_out_of_range_says_the_valid_range(base, bad):
    with pytest.raises(ValueError, match=r"0 \(feature extraction\) to 18"):
        T.trainable_params_at_depth(base, bad)
    with pytest.raises(ValueError, match=r"0 \(feature extraction\) to 18"):
        T.split_at_depth(base, bad)


@pytest.mark.parametrize("bad", [1.5, "3", None, True])
def test_depth_must_be_a_whole_number(base, bad):
    with pytest.raises(TypeError, match="whole number"):
        T.trainable_params_at_depth(base, bad)


@pytest.mark.parametrize("depth", [1, 4, 17, 18])
def test_split_at_depth_reproduces_the_full_model(base, depth):
    x = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    bottom, top = T.split_at_depth(base, depth)
    full = np.asarray(base(x, training=False))
    inner = x if bottom is None else bottom(x, training=False)
    np.testing.assert_allclose(np.asarray(top(inner, training=False)), full, atol=1e-5)


def test_extract_features_caches_on_disk(base, tmp_path, monkeypatch):
    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path))
    x = np.random.default_rng(2).uniform(0, 255, (5, 64, 64, 3)).astype("float32")
    first = T.extract_features(base, x)
    [path] = (tmp_path / "features").glob("*.npy")
    np.save(path, first + 1)   # a marked copy: the next call must read the file, not recompute
    np.testing.assert_array_equal(T.extract_features(base, x), first + 1)
    np.save(path, first)
    x2 = x.copy()
    x2[0, 0, 0, 0] += 1  # different images -> a different key, never a stale cache
    T.extract_features(base, x2)
    assert len(list((tmp_path / "features").glob("*.npy"))) == 2


def test_extract_features_keys_the_cache_by_batch_size(base, tmp_path, monkeypatch):
    # Another CPU may round a batch of 32 differently from a batch of 64: features made at one
    # batch size are never handed out for another.
    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path))
    x = np.random.default_rng(4).uniform(0, 255, (40, 64, 64, 3)).astype("float32")
    small = T.extract_features(base, x)                      # EXTRACT_BATCH_SIZE at a time
    assert T.EXTRACT_BATCH_SIZE == 32
    [path] = (tmp_path / "features").glob("*.npy")
    np.save(path, small + 1)   # marked: a call at another batch size must not read it
    big = T.extract_features(base, x, batch_size=64)
    np.testing.assert_allclose(big, small, rtol=1e-4, atol=1e-4)   # the same features, up to rounding
    assert len(list((tmp_path / "features").glob("*.npy"))) == 2
    np.testing.assert_array_equal(T.extract_features(base, x, batch_size=32), small + 1)  # the first key


def test_extract_features_misses_the_cache_when_the_weights_change(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path))
    model = load_backbone("efficientnet_lite0", image_size=32, pooling="avg")
    x = np.random.default_rng(3).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    first = T.extract_features(model, x)
    layer = model.get_layer("head_conv")
    kernel = layer.get_weights()[0]
    layer.set_weights([kernel * 2.0])  # same graph, same images, other weights
    second = T.extract_features(model, x)
    np.testing.assert_allclose(second, np.asarray(model(x, training=False)), rtol=1e-5, atol=1e-5)
    assert not np.allclose(first, second)
    assert len(list((tmp_path / "features").glob("*.npy"))) == 2
    layer.set_weights([kernel])  # back: the first entry is found again
    np.testing.assert_array_equal(T.extract_features(model, x), first)


def test_the_feature_cache_keeps_the_recently_used_files_under_its_cap(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path))
    inp = keras.Input((4, 4, 3))
    model = keras.Model(inp, keras.layers.Conv2D(64, 1)(inp))     # 4 KB of features per image
    xs = [np.full((100, 4, 4, 3), i, "float32") for i in range(4)]  # 410 KB per call
    monkeypatch.setenv("TLCOURSE_FEATURE_CACHE_MB", "1")
    folder = tmp_path / "features"
    paths = []
    for i, x in enumerate(xs[:2]):
        T.extract_features(model, x)
        paths.append(max(folder.glob("*.npy"), key=lambda p: p.stat().st_mtime_ns))
        os.utime(paths[-1], (1000 + i, 1000 + i))   # file 0 older than file 1
    T.extract_features(model, xs[0])                # reading file 0 makes it the recent one
    T.extract_features(model, xs[2])                # a third file: over 1 MB, the oldest goes
    left = set(folder.glob("*.npy"))
    assert paths[0] in left and paths[1] not in left and len(left) == 2
    assert sum(p.stat().st_size for p in left) <= 1e6
    (folder / "notes.txt").write_text("not ours")
    assert T.prune_feature_cache(max_mb=0) == 2 and (folder / "notes.txt").exists()


def test_extract_features_rejects_wrong_shape(base):
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        T.extract_features(base, np.zeros((64, 64, 3), "float32"))
    for bad in (0, -32, 32.0, True):
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            T.extract_features(base, np.zeros((2, 64, 64, 3), "float32"), batch_size=bad, cache=False)


@pytest.mark.parametrize("depth", [0, 3])
def test_model_pieces_give_the_whole_models_output_to_the_last_bit(base, depth):
    model = base if depth == 0 else T.split_at_depth(base, depth)[0]
    pieces = T.model_pieces(model)
    assert len(pieces) > 10 and T.model_pieces(model) is pieces  # split once, kept
    assert {w.name for p in pieces for w in p.weights} <= {w.name for w in model.weights}
    x = np.random.default_rng(3).uniform(0, 255, (6, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(T.run_in_pieces(pieces, x)), np.asarray(model(x, training=False)))


def test_model_pieces_never_cut_inside_a_residual_block():
    inputs = keras.Input((4,))
    a = keras.layers.Dense(4, name="a")(inputs)
    b = keras.layers.Dense(4, name="b")(a)
    c = keras.layers.Dense(4, name="c")(b)
    added = keras.layers.Add(name="skip")([a, c])  # a is needed until here: no cut at b or c
    out = keras.layers.Dense(2, name="out")(keras.layers.ReLU(name="relu")(added))
    model = keras.Model(inputs, out)
    pieces = T.model_pieces(model)
    assert [[layer.name for layer in p.layers if not isinstance(layer, keras.layers.InputLayer)]
            for p in pieces] == [["a"], ["b", "c", "skip"], ["relu"], ["out"]]
    x = np.random.default_rng(4).normal(size=(3, 4)).astype("float32")
    np.testing.assert_array_equal(np.asarray(T.run_in_pieces(pieces, x)), np.asarray(model(x)))


def test_models_the_split_cannot_follow_are_run_whole():
    two_in = [keras.Input((3,)), keras.Input((3,))]
    two = keras.Model(two_in, keras.layers.Dense(2)(keras.layers.Concatenate()(two_in)))
    assert T.model_pieces(two) == [two]
    seq = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    x = np.ones((2, 3), "float32")
    np.testing.assert_array_equal(np.asarray(T.run_in_pieces(T.model_pieces(seq), x)), np.asarray(seq(x)))


def _tiny_model():
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(5, name="body")
    bn = keras.layers.BatchNormalization(name="bn")
    out = keras.layers.Dense(2, name="out")
    model = keras.Model(inputs, out(bn(hidden(inputs))))
    return model, hidden, bn


def test_guard_rails_catch_trainable_changed_without_recompile():
    keras.utils.set_random_seed(0)
    model, hidden, bn = _tiny_model()
    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    y = np.arange(64) % 2
    hidden.trainable = False
    bn.trainable = False
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, verbose=0)
    hidden.trainable = True  # the classic mistake: no compile() afterwards
    guard = T.GuardRails()
    with pytest.warns(UserWarning, match="compile"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[guard])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    guard = T.GuardRails()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(x, y, epochs=1, verbose=0, callbacks=[guard])
    assert guard.problems == []


def test_guard_rails_catch_batchnorm_in_training_mode():
    keras.utils.set_random_seed(0)
    model, _, _ = _tiny_model()  # BatchNorm trainable: it runs in training mode in fit
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
    guard = T.GuardRails(strict=True)
    with pytest.raises(RuntimeError, match="BatchNorm"):
        model.fit(x, np.arange(32) % 2, epochs=1, verbose=0, callbacks=[guard])


def test_fine_tune_trains_only_the_chosen_blocks_and_leaves_the_base_alone(base, data):
    before = [w.copy() for w in base.get_weights()]
    head = _stage1_head()
    result = T.fine_tune(base, head, data, blocks=2, learning_rate=1e-3, epochs=2)
    assert result.trained_blocks == ["block_15", "head"]
    moved = {name for name, value in result.shift.items() if value > 0}
    assert moved == {"block_15", "head"}
    assert all(np.array_equal(a, b) for a, b in zip(before, base.get_weights()))
    assert set(result.history) >= {"accuracy", "val_accuracy", "loss", "val_loss"}
    assert 0.0 <= result.test_accuracy <= 1.0


@pytest.mark.parametrize("lr", [0, -1e-3, float("nan"), "fast"])
def test_fine_tune_rejects_non_positive_learning_rate(base, data, lr):
    with pytest.raises(ValueError, match="positive"):
        T.fine_tune(base, None, data, blocks=1, learning_rate=lr)


def test_fine_tune_is_deterministic(base, data):
    head = _stage1_head()
    a = T.fine_tune(base, head, data, blocks=1, learning_rate=1e-3, epochs=2, seed=3)
    b = T.fine_tune(base, head, data, blocks=1, learning_rate=1e-3, epochs=2, seed=3)
    assert a.history == b.history


def test_block_map_matches_unfreeze_order(base):
    names = [b.name for b in backbone_blocks(base)]
    assert names[0] == "stem" and names[-1] == "head" and names[1:-1] == [f"block_{i}" for i in range(16)]


def test_plot_blocks_draws_a_bar_per_block_with_weights_and_marks_weightless_ones():
    import matplotlib

    matplotlib.use("Agg")
    from tlcourse import plots

    pooled = load_backbone("efficientnet_lite0", image_size=64, pooling="avg")
    blocks = backbone_blocks(pooled)
    assert blocks[-1].name == "top"  # pooling only: a block with nothing to train
    _unfreeze(pooled, 3)
    fig = plots.plot_blocks(pooled)
    ax = fig.axes[0]
    assert len(ax.patches) == len(blocks) - 1
    assert [t.get_text() for t in ax.texts] == ["no weights"]
    orange = [p for p in ax.patches if p.get_facecolor()[:3] != ax.patches[0].get_facecolor()[:3]]
    assert len(orange) == 2  # block_15 and head train; "top" has no weights


def test_fine_tune_leaves_the_global_random_state_alone_and_depends_only_on_its_seed(base, data):
    import random

    head = _stage1_head()
    args = dict(blocks=1, learning_rate=1e-3, epochs=2)
    keras.utils.set_random_seed(123)
    state = (random.getstate(), np.random.get_state()[1].copy())
    a = T.fine_tune(base, head, data, seed=5, **args)
    assert random.getstate() == state[0] and np.array_equal(np.random.get_state()[1], state[1])
    keras.utils.set_random_seed(999)  # another global state: the same run
    b = T.fine_tune(base, head, data, seed=5, **args)
    c = T.fine_tune(base, head, data, seed=6, **args)
    assert a.history == b.history and a.history != c.history


def test_fine_tune_with_trainable_batchnorm_moves_its_statistics(base, data):
    head = _stage1_head()
    frozen = T.fine_tune(base, head, data, blocks=1, learning_rate=1e-3, epochs=1)
    live = T.fine_tune(base, head, data, blocks=1, learning_rate=1e-3, epochs=1, train_bn=True)
    assert live.trainable_params > frozen.trainable_params  # gamma and beta train too

    def layers(model):
        for layer in model.layers:
            yield layer
            if isinstance(layer, keras.Model):
                yield from layers(layer)

    def statistics(model):
        return [v.numpy() for layer in layers(model) if isinstance(layer, keras.layers.BatchNormalization)
                for v in (layer.moving_mean, layer.moving_variance)]

    def moving(result):
        return statistics(result.model)

    pretrained = [v.numpy() for v in (base.get_layer("head_bn").moving_mean, base.get_layer("head_bn").moving_variance)]
    assert len(pretrained) == len(moving(live)) == len(moving(frozen)) == 2
    assert any(not np.allclose(m, p) for m, p in zip(moving(live), pretrained))  # training mode: drifted
    assert all(np.array_equal(m, p) for m, p in zip(moving(frozen), pretrained))  # inference mode: kept


def test_a_correct_fine_tune_raises_no_guard_rails_warning(base, data):
    """GuardRails watches every run; a correct one (recompiled, BatchNorm frozen) must stay silent."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # any warning fails the test
        for blocks in (1, 3):
            result = T.fine_tune(base, _stage1_head(), data, blocks=blocks, learning_rate=1e-3, epochs=2)
            assert result.epochs == 2


def test_fine_tune_result_model_takes_activations_at_the_cut(base, data):
    head = _stage1_head()
    result = T.fine_tune(base, head, data, blocks=2, learning_rate=1e-3, epochs=1)
    test_acts = T.cut_activations(base, 2, data)[2]
    accuracy = np.mean(np.argmax(result.model.predict(test_acts, verbose=0), axis=1) == data.y_test)
    assert accuracy == pytest.approx(result.test_accuracy)


def test_fine_tune_reuses_a_compiled_model_without_changing_results(base, data):
    """Runs with the same graph reuse one compiled model; results must not depend on it."""
    head = _stage1_head()
    a_args = dict(blocks=1, learning_rate=1e-3, epochs=2, seed=5)
    b_args = dict(blocks=1, learning_rate=1e-4, epochs=1, seed=5)  # same graph, other learning rate
    first = T.fine_tune(base, head, data, **a_args)
    other = T.fine_tune(base, head, data, **b_args)  # reused
    again = T.fine_tune(base, head, data, **a_args)  # reused
    assert other.reused_model is first.reused_model is again.reused_model
    other_fresh = T.fine_tune(load_backbone("efficientnet_lite0", image_size=64), head, data, **b_args)
    assert other_fresh.reused_model is not other.reused_model
    assert other.history == other_fresh.history and again.history == first.history
    # each result keeps its own trained weights, untouched by later runs
    assert first.model is not again.model
    assert all(np.array_equal(a, b) for a, b in zip(first.model.get_weights(), again.model.get_weights()))
    assert not all(np.array_equal(a, b) for a, b in zip(first.model.get_weights(), other.model.get_weights()))


def test_fine_tune_keeps_only_the_most_recent_compiled_models(base, data):
    """At most KEEP_FINE_TUNE_MODELS compiled models per base; a result does not keep its model alive."""
    import gc

    head = _stage1_head()
    T.forget_compiled_models()
    runs = [T.fine_tune(base, head, data, blocks=d, learning_rate=1e-3, epochs=1, seed=3) for d in (1, 2, 3)]
    gc.collect()
    assert T.KEEP_FINE_TUNE_MODELS == 2
    assert runs[0].reused_model is None and runs[1].reused_model is not None and runs[2].reused_model is not None
    test_acts = T.cut_activations(base, 1, data)[2]   # the dropped model's result still scores
    accuracy = np.mean(np.argmax(runs[0].model.predict(test_acts, verbose=0), axis=1) == data.y_test)
    assert accuracy == pytest.approx(runs[0].test_accuracy)
    again = T.fine_tune(base, head, data, blocks=1, learning_rate=1e-3, epochs=1, seed=3)  # built anew
    assert again.history == runs[0].history and again.reused_model is not None
    gc.collect()
    assert runs[1].reused_model is None      # depth 1 came back, so depth 2 is the oldest


def test_compile_classifier_creates_no_variable_while_fit_traces_its_step():
    # A tf.function that creates variables while tracing traces itself again: a second
    # trace of every new model's training step, kept in memory (the metric named "accuracy"
    # used to be made inside the first step).
    tf = pytest.importorskip("tensorflow")
    inputs = keras.Input((4,))
    model = T.compile_classifier(keras.Model(inputs, keras.layers.Dense(3)(inputs)), 1e-3)
    model.optimizer.build(model.trainable_variables)
    made_while_tracing = []

    def creator(next_creator, **kwargs):
        if tf.inside_function():
            made_while_tracing.append(kwargs.get("name"))
        return next_creator(**kwargs)

    x, y = np.random.default_rng(5).normal(size=(40, 4)).astype("float32"), np.arange(40) % 3
    with tf.variable_creator_scope(creator):
        history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert made_while_tracing == [] and "accuracy" in history.history


def _anonymous_mib() -> float:
    import gc

    gc.collect()
    release_memory()   # hand freed memory back, as setup_course does after each cell
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon")) / 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the process's memory from /proc (Linux)")
def test_a_dropped_compiled_model_gives_its_weights_memory_back():
    # TensorFlow keeps every traced training step (a custom gradient per trace in a global
    # registry), and the step holds its variables: without the release, each dropped
    # 17M-parameter model below kept its weights and Adam moments, 0.2 GiB (measured).
    tf = pytest.importorskip("tensorflow")
    x, y = np.random.default_rng(2).normal(size=(32, 4096)).astype("float32"), np.arange(32) % 10

    def build(seed):
        inputs = keras.Input((4096,))
        init = keras.initializers.GlorotUniform
        hidden = keras.layers.Dense(4096, kernel_initializer=init(seed))(inputs)
        return keras.Model(inputs, keras.layers.Dense(10, kernel_initializer=init(seed + 10))(hidden))

    live = T.compile_classifier(build(0), 1e-3)      # a model still in use: must keep working
    live.fit(x, y, epochs=1, verbose=0, shuffle=False)
    expected = live.predict_on_batch(x[:4])
    first = None
    growth = []
    for seed in (1, 2, 3):
        start = _anonymous_mib()
        model = T.compiled_model(("dropped", seed), lambda: build(seed), 1e-3)
        model.fit(x, y, epochs=1, verbose=0, shuffle=False)
        if first is None:
            first, kept_variable = model.predict_on_batch(x[:4]), model.layers[1].kernel.value
        del model
        T.forget_compiled_models()
        growth.append(_anonymous_mib() - start)
    assert tf.raw_ops.ReadVariableOp(resource=kept_variable.handle, dtype=tf.float32).shape == (0,)
    assert max(growth[1:]) < 100, f"a dropped model kept {growth} MiB (its weights and moments are 190 MiB)"
    np.testing.assert_array_equal(live.predict_on_batch(x[:4]), expected)
    again = T.compiled_model(("dropped", 1), lambda: build(1), 1e-3)   # built anew, same start
    again.fit(x, y, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(again.predict_on_batch(x[:4]), first, rtol=1e-5, atol=1e-4)
    T.forget_compiled_models()


def test_spilled_arrays_give_back_what_went_in_and_keep_nothing_in_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path))
    arrays = [np.arange(12, dtype="float32").reshape(3, 4), np.array([1, 2], dtype="int64"), np.zeros((0,))]
    spilled = T.SpilledArrays(arrays)
    assert len(spilled) == 3 and spilled._arrays is None
    for got, want in zip(list(spilled) + spilled[::-1][::-1], arrays * 2):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype and got.shape == want.shape
    arrays[0][0, 0] = 99                                        # a copy was kept
    assert spilled[0][0, 0] == 0 and spilled[-1].shape == (0,)
    assert list((tmp_path / "spill").iterdir()) == []          # the file has no name


def test_spilled_arrays_stay_in_memory_when_the_cache_cannot_be_written(monkeypatch):
    def not_writable(sub=None):
        raise T.CacheNotWritableError("read-only")

    monkeypatch.setattr(T, "cache_dir", not_writable)
    spilled = T.SpilledArrays([np.ones(3)])
    assert len(spilled) == 1 and spilled[0].tolist() == [1.0, 1.0, 1.0]


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the process's memory from /proc (Linux)")
def test_seeded_batches_do_not_keep_their_arrays_after_the_fit():
    # TensorFlow keeps every from_generator generator for the session: five fits on 8-MB
    # arrays kept 40 MiB when the generator held the arrays itself (measured).
    inputs = keras.Input((1000,))
    model = T.compile_classifier(keras.Model(inputs, keras.layers.Dense(3)(inputs)), 1e-3)
    y = np.arange(2000) % 3
    batches, steps = T.seeded_batches(np.ones((2000, 1000), "float32"), y, 32, 0, 1)
    model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    del batches
    start = _anonymous_mib()
    for seed in range(5):
        x = np.random.default_rng(seed).random((2000, 1000), dtype="float32")
        batches, steps = T.seeded_batches(x, y, 32, seed, 2)
        model.fit(batches, steps_per_epoch=steps, epochs=2, verbose=0, shuffle=False)
        del batches, x
    assert _anonymous_mib() - start < 20
    x, y = np.arange(10.0)[:, None], np.arange(10)
    once = [b[1].numpy().tolist() for b in T.seeded_batches(x, y, 4, 7, 2)[0]]
    assert sorted(sum(once[:3], [])) == list(range(10)) and len(once) == 6   # still every image once per epoch


def test_a_model_collected_while_a_step_is_traced_is_released_eagerly():
    import gc

    tf = pytest.importorskip("tensorflow")
    inputs = keras.Input((8,))
    model = T.compile_classifier(keras.Model(inputs, keras.layers.Dense(3)(inputs)), 1e-3)
    T.release_when_collected(model)
    variable = model.layers[1].kernel.value
    del model             # a Keras model is a web of cycles: it goes at the next collection

    @tf.function
    def step(x):
        gc.collect()      # the release runs here, while `step` is traced
        return x * 2

    graph = step.get_concrete_function(tf.constant(1.0)).graph
    assert tf.raw_ops.ReadVariableOp(resource=variable.handle, dtype=tf.float32).shape == (0,)
    assert "AssignVariableOp" not in {op.type for op in graph.get_operations()}
