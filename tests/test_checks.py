"""The exercise checks (tlcourse.checks): per exercise a correct answer, a blank answer and
typical wrong answers, each with the message a learner would read; every check under 2 s.

Real objects: the course's Lite0 with its ImageNet weights, the clip art, heads trained for
real (a few seconds), notebook 03's committed records.
"""

from __future__ import annotations

import io
import time
from contextlib import redirect_stdout

import keras
import numpy as np
import pytest
import tensorflow as tf

from tlcourse import backbones, checks, data, stats, training
from tlcourse.experiments import METHODS, read_records

pytestmark = pytest.mark.slow
TIMES: list[tuple[str, float, float]] = []  # (exercise, wall s, CPU s) of every check call
FE, FT, _ = METHODS


def run(exercise, *args, **kwargs) -> str:
    """Call a check, return what it printed or the failure message; assert it took < 2 s.

    The bound is on the process's CPU time (all its threads): on an idle 2-core machine the
    wall time is at most that, and unlike the wall time it does not grow when other jobs
    share the cores.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        out = io.StringIO()
        with redirect_stdout(out):
            exercise(*args, **kwargs)
        text = out.getvalue()
        assert text.startswith("✓ "), text
    except checks.CheckFailed as e:
        text = "FAILED " + str(e)
        assert "".join(e._render_traceback_()).count("\n") == 0  # one message, no traceback
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    TIMES.append((exercise.label, seconds, cpu))
    assert cpu < 2.0, f"{exercise.label} took {cpu:.2f} s of CPU ({seconds:.2f} s wall)"
    return text


def ok(exercise, *args, **kwargs) -> str:
    text = run(exercise, *args, **kwargs)
    assert text.startswith("✓ "), text
    return text


def fails(exercise, *args, says: str, **kwargs) -> str:
    text = run(exercise, *args, **kwargs)
    assert text.startswith("FAILED "), text
    assert says.lower() in text.lower(), text
    return text


def head(n_in: int, n_out: int, hidden: int | None = None, act: str = "relu", out_act=None,
         from_logits: bool = True, compile_: bool = True) -> keras.Model:
    keras.utils.set_random_seed(0)
    layers = [keras.Input((n_in,))]
    if hidden:
        layers.append(keras.layers.Dense(hidden, activation=act))
    layers += [keras.layers.Dropout(0.2), keras.layers.Dense(n_out, activation=out_act)]
    model = keras.Sequential(layers)
    if compile_:
        model.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits), metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def clip():
    splits = data.load_dataset("clipart", image_size=128, as_numpy=True)
    base = backbones.load_backbone("efficientnet_lite0", image_size=128, pooling="avg")
    base.trainable = False
    (x_train, y_train), (x_test, y_test) = splits.train, splits.test
    f_train = training.extract_features(base, x_train)
    f_test = training.extract_features(base, x_test)
    return dict(base=base, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                f_train=f_train, f_test=f_test, names=splits.class_names)


# ------------------------------------------------------------------ 01, exercise 1
def test_deeper_head(clip):
    f, y, ft, yt = clip["f_train"], clip["y_train"], clip["f_test"], clip["y_test"]
    right = head(1280, 7, hidden=256)
    right.fit(f, y, epochs=40, verbose=0)
    text = ok(checks.deeper_head, right, ft, yt)
    assert "Dense(256, relu)" in text and "from_logits=True" in text

    fails(checks.deeper_head, None, ft, yt, says="it is None")                 # blank
    fails(checks.deeper_head, "deeper", ft, yt, says="should be a Keras model")
    fails(checks.deeper_head, head(1280, 7), ft, yt, says="1 Dense layer")     # one layer only
    fails(checks.deeper_head, head(1280, 7, hidden=256, act=None), ft, yt, says="no activation")
    fails(checks.deeper_head, head(1280, 7, hidden=256, out_act="softmax"), ft, yt, says="softmax a second time")
    fails(checks.deeper_head, head(1280, 7, hidden=256, from_logits=False), ft, yt, says="from_logits=True")
    fails(checks.deeper_head, head(1280, 7, hidden=256, compile_=False), ft, yt, says="not compiled")
    fails(checks.deeper_head, head(1280, 7, hidden=256), ft, yt, says="not been trained")
    fails(checks.deeper_head, head(1280, 10, hidden=256), ft, yt, says="10 units, but there are 7")
    unbuilt = keras.Sequential([keras.layers.Dense(256, activation="relu"), keras.layers.Dense(7)])
    fails(checks.deeper_head, unbuilt, ft, yt, says="not built yet")
    fails(checks.deeper_head, right, ft, yt, 3, says="called as")              # wrong call


# ------------------------------------------------------------------ 01, exercise 2
def test_smaller_images(clip):
    small = backbones.load_backbone("efficientnet_lite0", image_size=96, pooling="avg")
    shrink = keras.layers.Resizing(96, 96)
    s_train, s_test = (shrink(x).numpy() for x in (clip["x_train"], clip["x_test"]))
    g_train, g_test = small.predict(s_train, verbose=0), small.predict(s_test, verbose=0)
    head96 = head(1280, 7)
    head96.fit(g_train, clip["y_train"], epochs=40, verbose=0)
    x_test, y_test = clip["x_test"], clip["y_test"]
    ok(checks.smaller_images, small, g_test, head96, x_test, y_test)

    fails(checks.smaller_images, None, None, None, x_test, y_test, says="it is None")     # blank
    fails(checks.smaller_images, clip["base"], clip["f_test"], head96, x_test, y_test, says="takes 128 x 128")
    from keras.applications import mobilenet_v2
    twice = small.predict(mobilenet_v2.preprocess_input(s_test.copy()), verbose=0)
    fails(checks.smaller_images, small, twice, head96, x_test, y_test, says="preprocessed twice")
    shuffled = g_test[::-1]
    fails(checks.smaller_images, small, shuffled, head96, x_test, y_test, says="keep their order")
    fails(checks.smaller_images, small, g_test[:10], head96, x_test, y_test, says="expected (74, 1280)")
    fails(checks.smaller_images, small, g_test, head(1280, 7), x_test, y_test, says="not been trained")
    unpooled = backbones.load_backbone("efficientnet_lite0", image_size=96)
    fails(checks.smaller_images, unpooled, g_test, head96, x_test, y_test, says="pooling='avg'")


# ------------------------------------------------------------------ 01, exercise 3
def test_own_pictures(clip, tmp_path):
    root = data.dataset_path("clipart") / "test"
    import shutil
    for name in ("birds", "fruit", "vehicles"):
        shutil.copytree(root / name, tmp_path / "mine" / name)
    mine = data.load_folder(tmp_path / "mine", image_size=128, as_numpy=True)
    base = clip["base"]
    fa = base.predict(mine.train[0], verbose=0)
    right = head(1280, 3)
    right.fit(fa, mine.train[1], epochs=40, verbose=0)
    ok(checks.own_pictures, mine, right, base)

    fails(checks.own_pictures, None, None, base, says="data.load_folder")                 # blank
    fails(checks.own_pictures, tmp_path / "nope", right, base, says="does not exist")    # a missing folder
    seven = head(1280, 7)                                          # make_head(): the clip art's 7 classes
    seven.fit(fa, mine.train[1], epochs=2, verbose=0)
    fails(checks.own_pictures, mine, seven, base, says="7 outputs, but your folder has 3 classes")
    fails(checks.own_pictures, mine, head(1280, 3), base, says="not been trained")
    as_dataset = data.load_folder(tmp_path / "mine", image_size=128)
    fails(checks.own_pictures, as_dataset, right, base, says="as_numpy=True")
    shuffled = head(1280, 3)
    shuffled.fit(fa, np.random.default_rng(0).permutation(mine.train[1]), epochs=40, verbose=0)
    fails(checks.own_pictures, mine, shuffled, base, says="fewer than 5 of 6")


# ------------------------------------------------------------------ 02, exercise 1
def _unfreeze(base, prefixes, bn=False):
    base.trainable = True
    for layer in base.layers:
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = layer.name.startswith(prefixes) and (bn or not is_bn)


def _model_on(base, head_):
    inputs = keras.Input((128, 128, 3))
    x = keras.layers.GlobalAveragePooling2D()(base(inputs, training=False))
    return keras.Model(inputs, head_(x))


@pytest.fixture(scope="module")
def fine():
    base = backbones.load_backbone("efficientnet_lite0", image_size=128)
    h = head(1280, 7)
    yield base, h
    base.trainable = False


TOP5 = ("block_12_", "block_13_", "block_14_", "block_15_", "head_")


def test_unfreeze(fine):
    base, h = fine
    _unfreeze(base, TOP5)
    model5 = _model_on(base, h)
    model5.compile(keras.optimizers.Adam(1e-4), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    text = ok(checks.unfreeze, model5, base, h)
    assert f"{training.trainable_params_at_depth(base, 5) + h.count_params():,} trainable" in text

    fails(checks.unfreeze, None, base, h, says="it is None")                              # blank
    _unfreeze(base, TOP5, bn=True)
    fails(checks.unfreeze, model5, base, h, says="BatchNorm layers are trainable")
    _unfreeze(base, TOP5[1:])
    fails(checks.unfreeze, model5, base, h, says="4 blocks train")
    _unfreeze(base, ("block_11_",) + TOP5)
    fails(checks.unfreeze, model5, base, h, says="6 blocks train")
    _unfreeze(base, ("block_12_expand_conv",) + TOP5[1:])
    fails(checks.unfreeze, model5, base, h, says="partly unfrozen")
    base.trainable = False
    fails(checks.unfreeze, model5, base, h, says="`base` is frozen")
    _unfreeze(base, TOP5)
    fails(checks.unfreeze, _model_on(base, h), base, h, says="not compiled")
    fails(checks.unfreeze, keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]), base, h,
          says="does not contain `base`")

    # the forgotten recompile: trained with 3 blocks, then the loop, no compile
    _unfreeze(base, TOP5[2:])
    stale = _model_on(base, h)
    stale.compile(keras.optimizers.Adam(1e-4), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    stale.fit(np.zeros((2, 128, 128, 3), "float32"), np.zeros(2), epochs=1, verbose=0)
    _unfreeze(base, TOP5)
    fails(checks.unfreeze, stale, base, h, says="not compiled again")
    stale.compile(keras.optimizers.Adam(1e-4), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ok(checks.unfreeze, stale, base, h)
    base.trainable = False


# ------------------------------------------------------------------ 02, exercise 2
def test_article_recipe(fine):
    base, _ = fine
    blocks = backbones.backbone_blocks(base)
    conv = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
    n_convs = sum(isinstance(layer, conv) for layer in base.layers)
    w = [training.trainable_params_at_depth(base, d) / base.count_params() for d in range(1, 8)]
    c = [sum(isinstance(base.get_layer(n), conv) for b in blocks[-d:] for n in b.layers) / n_convs
         for d in range(1, 8)]
    by_w = 1 + int(np.argmin([abs(s - checks.VGG16_SHARE) for s in w]))
    by_c = 1 + int(np.argmin([abs(s - 3 / 13) for s in c]))
    assert by_w == 3  # the notebook's prose: 3 blocks, 43 % of Lite0's weights
    assert abs(checks.VGG16_SHARE - 0.481) < 0.001
    ok(checks.article_recipe, by_w, by_c, base)
    fails(checks.article_recipe, None, None, base, says="it is None")                     # blank
    fails(checks.article_recipe, 1, by_c, base, says="`by_weights` is 1")
    wrong = next(d for d in range(1, 8) if d != by_c)
    fails(checks.article_recipe, by_w, wrong, base, says="`by_convs`")
    fails(checks.article_recipe, 3.0, by_c, base, says="an int")


# ------------------------------------------------------------------ 02, exercise 3
def test_predict_file(clip, tmp_path):
    from skimage import data as photos

    model = _model_on(backbones.load_backbone("efficientnet_lite0", image_size=128), head(1280, 7))
    saved = tmp_path / "m.keras"
    model.save(saved)
    mine = keras.models.load_model(saved)
    my_file = tmp_path / "coffee.png"
    keras.utils.save_img(my_file, photos.coffee())
    x = keras.utils.img_to_array(keras.utils.load_img(my_file, target_size=(128, 128)))[None]
    logits = mine.predict(x, verbose=0)
    probs = keras.ops.softmax(logits)[0]
    ok(checks.predict_file, mine, my_file, probs)
    fails(checks.predict_file, mine, my_file, None, says="it is None")                   # blank
    fails(checks.predict_file, mine, tmp_path / "missing.jpg", probs, says="no file at")
    fails(checks.predict_file, mine, my_file, logits[0], says="not probabilities")
    twice = keras.ops.softmax(mine.predict(x / 255.0, verbose=0))[0]
    fails(checks.predict_file, mine, my_file, twice, says="preprocessing applied twice")
    from keras.applications import mobilenet_v2
    twice = keras.ops.softmax(mine.predict(mobilenet_v2.preprocess_input(x.copy()), verbose=0))[0]
    fails(checks.predict_file, mine, my_file, twice, says="preprocess_input")
    fails(checks.predict_file, mine, my_file, keras.ops.softmax(probs), says="softmax was applied twice")
    fails(checks.predict_file, mine, my_file, probs[None, :3], says="expected (7,)")
    fails(checks.predict_file, "model.keras", my_file, probs, says="should be a Keras model")


# ------------------------------------------------------------------ 03
@pytest.fixture(scope="module")
def records():
    compare = [r for r in read_records() if r["stage"] == "compare" and r["dataset"] == "clipart"]
    pool = data.load_pool("clipart")
    return compare, pool


def images_needed(discordance: float, difference: float, power: float = 0.8) -> int:
    """The smallest multiple of 100 with McNemar power >= ``power`` (the notebook's search)."""
    return next(n for n in range(100, 50000, 100) if stats.mcnemar_power(n, discordance, difference) >= power)


def test_power_images():
    d = 0.2
    need = images_needed(d, 0.02)
    assert stats.mcnemar_power(need, d, 0.02) >= 0.8 > stats.mcnemar_power(need - 100, d, 0.02)
    ok(checks.power_images, need, d)
    ok(checks.power_images, need + 50, d)
    fails(checks.power_images, None, d, says="it is None")                               # blank
    fails(checks.power_images, images_needed(d, 0.03), d, says="3-point")
    fails(checks.power_images, images_needed(d, 0.02, power=0.5), d, says="50 % power")
    fails(checks.power_images, need // 3, d, says="too few")
    fails(checks.power_images, need, {"clipart": d}, says="discord['clipart']")


def test_drop_seed(records):
    compare, pool = records
    four = stats.Comparison(compare, pool.y, pool.groups, n=200, drop_seed=4)
    res = four.difference(FT, FE, None)
    ok(checks.drop_seed, four, res)
    ok(checks.drop_seed, four, res["estimate"])
    fails(checks.drop_seed, None, None, says="it is None")                               # blank
    five = stats.Comparison(compare, pool.y, pool.groups, n=200)
    fails(checks.drop_seed, five, five.difference(FT, FE, None), says="still holds all five seeds")
    three = stats.Comparison(compare, pool.y, pool.groups, n=200, drop_seed=3)
    fails(checks.drop_seed, three, three.difference(FT, FE, None), says="drops seed 4 only")
    fails(checks.drop_seed, four, four.difference(FE, FT, None), says="sign is reversed")
    fails(checks.drop_seed, four, four.difference(FT, FE, 3), says="at 3 labels per class")


# ------------------------------------------------------------------ 04, exercise 1
def moved(optimizer_class, scale: float, rate: float = 1e-3, layer=None) -> tuple[np.ndarray, keras.layers.Dense]:
    """Exercise 1's run: 5 steps of a Dense layer on gradients times ``scale``; returns (start, end), layer."""
    rng = np.random.default_rng(0)
    x, y = np.abs(rng.normal(size=(160, 64))).astype("float32"), rng.integers(0, 10, 160)
    if layer is None:
        layer = keras.layers.Dense(10, kernel_initializer=keras.initializers.GlorotUniform(0))
        layer.build((None, 64))
    start = keras.initializers.GlorotUniform(0)((64, 10)).numpy()
    optimizer, loss_fn = optimizer_class(rate), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for step in range(5):
        with tf.GradientTape() as tape:
            loss = loss_fn(y[32 * step:32 * step + 32], layer(x[32 * step:32 * step + 32]))
        grads = tape.gradient(loss, layer.trainable_weights)
        optimizer.apply([scale * g for g in grads], layer.trainable_weights)
    return np.abs(layer.get_weights()[0] - start).sum(), layer


def test_scaled_gradients():
    adam, sgd = keras.optimizers.Adam, keras.optimizers.SGD
    ratio = {name: moved(opt, 10.0)[0] / moved(opt, 1.0)[0] for name, opt in (("adam", adam), ("sgd", sgd))}
    assert abs(ratio["adam"] - 1) < 0.05 and 5 < ratio["sgd"] < 15, ratio
    text = ok(checks.scaled_gradients, ratio["adam"], ratio["sgd"])
    assert "factor cancels" in text
    fails(checks.scaled_gradients, None, None, says="it is None")                            # blank
    fails(checks.scaled_gradients, "1.0", ratio["sgd"], says="should be a positive number")
    fails(checks.scaled_gradients, ratio["sgd"], ratio["adam"], says="swapped")
    fails(checks.scaled_gradients, 1 / ratio["adam"], 1 / ratio["sgd"], says="divided the plain run's distance")
    fails(checks.scaled_gradients, ratio["adam"], moved(sgd, 1.0)[0] / moved(sgd, 1.0)[0], says="never reached the gradients")
    lr_scaled = moved(adam, 1.0, rate=1e-2)[0] / moved(adam, 1.0)[0]         # the 10 on Adam's rate instead
    fails(checks.scaled_gradients, lr_scaled, ratio["sgd"], says="reached Adam's learning rate")
    plain, layer = moved(adam, 1.0)                                             # one layer for both runs
    fails(checks.scaled_gradients, moved(adam, 10.0, layer=layer)[0] / plain, ratio["sgd"], says="went on from where")


# ------------------------------------------------------------------ 04, exercise 2
def cam_by_class(net, cut_to_top, one, n: int, softmax: bool = False, relu: bool = True) -> np.ndarray:
    """Grad-CAM one class at a time (another way than the notebook's batch)."""
    maps = []
    a = tf.constant(one, "float32")
    for c in range(n):
        with tf.GradientTape() as tape:
            tape.watch(a)
            out = net(cut_to_top(a))
            out = tf.nn.softmax(out) if softmax else out
            score = out[0, c]
        weights = tf.reduce_mean(tape.gradient(score, a)[0], axis=(0, 1))
        cam = np.tensordot(one[0], weights.numpy(), axes=([-1], [0]))
        maps.append(np.maximum(cam, 0) if relu else cam)
    return np.array(maps)


def test_cam_classes():
    keras.utils.set_random_seed(0)
    cut_to_top = keras.Sequential([keras.Input((6, 6, 8)),
                                   keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")])
    net = keras.Sequential([keras.Input((3, 3, 4)), keras.layers.Conv2D(16, 1, activation="relu"),
                            keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)])
    one = np.random.default_rng(0).random((1, 6, 6, 8)).astype("float32")
    right = cam_by_class(net, cut_to_top, one, 10)
    predicted = int(np.argmax(net(cut_to_top(one))))
    assert right.shape == (10, 6, 6) and right.max() > 0
    text = ok(checks.cam_classes, right, predicted, one, net, cut_to_top)
    assert "10 Grad-CAM maps" in text
    fails(checks.cam_classes, None, None, one, net, cut_to_top, says="it is None")          # blank
    fails(checks.cam_classes, right, predicted, one, "net", cut_to_top, says="should be a Keras model")
    fails(checks.cam_classes, right[predicted], predicted, one, net, cut_to_top, says="one per class")
    fails(checks.cam_classes, np.repeat(right[:1], 10, axis=0), predicted, one, net, cut_to_top, says="maps are the same")
    fails(checks.cam_classes, cam_by_class(net, cut_to_top, one, 10, relu=False), predicted, one, net, cut_to_top,
          says="positive part")
    fails(checks.cam_classes, cam_by_class(net, cut_to_top, one, 10, softmax=True), predicted, one, net, cut_to_top,
          says="probability")
    other = keras.models.clone_model(net)                                       # another model's maps
    fails(checks.cam_classes, cam_by_class(other, cut_to_top, one, 10), predicted, one, net, cut_to_top,
          says="not `net`'s Grad-CAM maps")
    fails(checks.cam_classes, right, (predicted + 1) % 10, one, net, cut_to_top, says="highest logit")
    fails(checks.cam_classes, right, np.eye(10)[predicted], one, net, cut_to_top, says="one class number")
    fails(checks.cam_classes, right, predicted, np.zeros((1, 96, 96, 3)), net, cut_to_top, says="holds pixels")
    fails(checks.cam_classes, right, predicted, one[0], net, cut_to_top, says="batch axis")


# ------------------------------------------------------------------ 04, exercise 3
def test_forgetting_by_class():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 45)
    both = rng.permutation(450)[:160]
    imagenet_top1 = rng.integers(0, 1000, 450)
    results = {}
    for method, rate in (("LP", 0.0), ("FT 1e-04", 0.25), ("FT 1e-03", 0.6)):
        for seed in (0, 1, 2):
            flip = rng.random(160) < rate * (1 + y[both] / 10) / 1.5
            results[method, seed] = {"imagenet": np.where(flip, (imagenet_top1[both] + 1) % 1000, imagenet_top1[both])}
    flips = results["FT 1e-03", 0]["imagenet"] != imagenet_top1[both]
    right = np.array([flips[y[both] == c].mean() for c in range(10)])
    text = ok(checks.forgetting_by_class, right, results, imagenet_top1, y, both)
    assert "FT 1e-03, first seed" in text
    ok(checks.forgetting_by_class, dict(enumerate(right)), results, imagenet_top1, y, both)
    fails(checks.forgetting_by_class, None, results, imagenet_top1, y, both, says="it is None")   # blank
    fails(checks.forgetting_by_class, right, None, imagenet_top1, y, both, says="section 3's dict")
    counts = np.array([flips[y[both] == c].sum() for c in range(10)])
    fails(checks.forgetting_by_class, counts, results, imagenet_top1, y, both, says="counts")
    fails(checks.forgetting_by_class, counts / 160, results, imagenet_top1, y, both, says="over all test pictures")
    fails(checks.forgetting_by_class, 1 - right, results, imagenet_top1, y, both, says="kept their")
    fails(checks.forgetting_by_class, 100 * right, results, imagenet_top1, y, both, says="percentages")
    for key in (("FT 1e-03", 1), ("FT 1e-04", 0)):
        f = results[key]["imagenet"] != imagenet_top1[both]
        other = np.array([f[y[both] == c].mean() for c in range(10)])
        fails(checks.forgetting_by_class, other, results, imagenet_top1, y, both, says=f"{key[0]!r} with seed {key[1]}")
    fails(checks.forgetting_by_class, right[:7], results, imagenet_top1, y, both, says="one share per class")


def test_every_exercise_has_a_test_and_a_hint(capsys):
    tested = {name for name in checks.EXERCISES if f"test_{name}" in globals()}
    assert tested == set(checks.EXERCISES)
    for ex in checks.EXERCISES.values():
        ex.hint()
        assert capsys.readouterr().out.startswith(f"Hint for Exercise {ex.number} (notebook {ex.notebook}")


def test_check_latency_report():
    """Prints the slowest check call of this session (``pytest -s``); each was asserted < 2 s."""
    if TIMES:
        label, wall, cpu = max(TIMES, key=lambda t: t[2])
        print(f"\n{len(TIMES)} check calls: median {1000 * np.median([t[2] for t in TIMES]):.0f} ms CPU, "
              f"slowest {1000 * cpu:.0f} ms CPU ({1000 * wall:.0f} ms wall, {label}); "
              f"slowest wall {1000 * max(t[1] for t in TIMES):.0f} ms")
