"""The comparison runner of notebook 03, and the statistics that judge it.

Design (the notebook explains why):

* **Evaluation.** A dataset without a fixed split (the pooled clip art, the
  spoken words) is scored by *repeated stratified group k-fold
  cross-validation* (:func:`cv_folds`): in each repeat every image is in the
  test fold exactly once, so every image gets one held-out prediction per
  repeat. Validation data is carved from the training folds. Near-copies of a
  drawing (a colour and a black-and-white version) share a group, so they never
  sit on both sides of a split. A dataset with a fixed split (Fashion-MNIST) is
  scored on its test split, once per seed (:func:`fixed_folds`).
* **Effort.** Every method trains until its validation loss stops improving
  (``keras.callbacks.EarlyStopping(restore_best_weights=True)``) under a stated
  maximum number of epochs; each record reports seconds, epochs and trainable
  weights.
* **Choices on validation only.** :func:`select_fine_tuning` scores depth x
  learning rate on a fold's validation split; the test folds are not looked at.
* **Uncertainty.** :func:`accuracy_interval` bootstraps the test images within
  each seed (or repeat) and pools the replicates, so the 95 % interval covers
  both the test-image sample and the seeds; :func:`paired_difference` compares
  two methods on the *same* images (a paired bootstrap over images, and
  McNemar's exact test per seed via :func:`scipy.stats.binomtest`).

Seeds are always passed explicitly: nothing here calls
``keras.utils.set_random_seed``. Only public Keras/TensorFlow APIs are used.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .data import per_class_indices  # the course's one per-class sampler (re-exported)
from .training import build_fine_tune_model, count_params, extract_features, split_at_depth

__all__ = ["METHODS", "Settings", "Pool", "Fold", "load_pool", "cv_folds", "fixed_folds", "per_class_indices",
           "scratch_cnn", "run_method", "run_grid", "select_fine_tuning", "accuracy_interval",
           "paired_difference", "mcnemar_exact", "mcnemar_power", "summarize", "frozen_pass_seconds"]

METHODS = ("feature_extraction", "fine_tuning", "scratch")


@dataclass(frozen=True)
class Settings:
    """How the methods train. One instance per dataset; every run of that dataset uses it."""

    image_size: int = 128            # what the pretrained backbone sees
    scratch_image_size: int = 32     # what the from-scratch CNN sees
    backbone: str = "efficientnet_lite0"
    depth: int = 2                   # fine tuning: blocks unfrozen (of backbone_blocks, counted from the top)
    learning_rate: float = 1e-4      # fine tuning
    head_learning_rate: float = 1e-3  # the feature-extraction head, and the scratch CNN
    batch_size: int = 32
    max_epochs_head: int = 100
    max_epochs_fine_tune: int = 20
    max_epochs_scratch: int = 40
    patience: int = 5                # epochs without a better validation loss before stopping
    patience_fine_tune: int = 3
    patience_scratch: int = 8
    max_depth: int = 9               # activations below this many top blocks are computed once and cached

    def __post_init__(self):
        if not self.learning_rate > 0 or not self.head_learning_rate > 0:
            raise ValueError("learning rates must be positive.")
        if not 0 <= self.depth <= self.max_depth:
            raise ValueError(f"depth={self.depth} must be between 0 and max_depth={self.max_depth}.")
        for name in ("max_epochs_head", "max_epochs_fine_tune", "max_epochs_scratch", "patience",
                     "patience_fine_tune", "patience_scratch", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")


# --------------------------------------------------------------------------- #
# Data: one pool of images per dataset, split by index
# --------------------------------------------------------------------------- #
@dataclass
class Pool:
    """Every image of a dataset, with labels, groups (near-copies share one) and any fixed split."""

    name: str
    x: np.ndarray               # uint8 (N, H, W, 3)
    y: np.ndarray               # int (N,)
    groups: np.ndarray          # int (N,): images in one group stay on one side of every split
    class_names: list[str]
    fixed: dict | None = None   # {"train": idx, "val": idx, "test": idx} for datasets with their own split

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Fold:
    """Indices into a :class:`Pool` for one evaluation: ``repeat`` is the seed of the split (or run)."""

    repeat: int
    fold: int
    train: np.ndarray = field(repr=False)
    val: np.ndarray = field(repr=False)
    test: np.ndarray = field(repr=False)


_POOLS: dict = {}


def _group_key(name: str) -> str:
    """Files that differ only by ``_bw`` or a trailing number are one drawing (as in tools/build_datasets.py)."""
    stem = name.rsplit(".", 1)[0].lower().replace("_bw", "").replace("-bw", "")
    return stem.rstrip("0123456789_-r.")


def _manifest() -> dict[str, str]:
    from .config import datasets_dir

    path = datasets_dir() / "MANIFEST.sha256"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; restore it with `git checkout datasets/`.")
    return {rel.strip(): digest for digest, rel in
            (line.split(maxsplit=1) for line in path.read_text().splitlines() if line.strip())}


def _clipart_pool() -> Pool:
    """``clipart/`` (all three splits) plus ``clipart_extra/``, checked against the manifest."""
    from PIL import Image

    from .config import datasets_dir
    from .data import hash_matches

    root = datasets_dir()
    entries = {rel: h for rel, h in _manifest().items()
               if re.match(r"clipart(_extra)?/.+\.png$", rel)}
    bad = [rel for rel, h in sorted(entries.items()) if not (root / rel).exists() or not hash_matches(root / rel, h)]
    if bad:
        raise RuntimeError(f"{len(bad)} clip-art files are missing or changed (first: {bad[0]}); restore them "
                           "with `git checkout datasets/` or rebuild with `python tools/build_datasets.py`.")
    rels = sorted(entries)
    classes = sorted({Path(r).parts[-2] for r in rels})
    x = np.empty((len(rels), 128, 128, 3), np.uint8)
    for i, rel in enumerate(rels):
        with Image.open(root / rel) as im:
            x[i] = np.asarray(im.convert("RGB"))
    y = np.array([classes.index(Path(r).parts[-2]) for r in rels])
    keys = [f"{Path(r).parts[-2]}/{_group_key(Path(r).name)}" for r in rels]
    groups = np.unique(keys, return_inverse=True)[1]
    return Pool("clipart", x, y, groups, classes)


def load_pool(dataset: str) -> Pool:
    """All images of ``dataset`` at their stored size (cached).

    ``"clipart"`` pools the course's clip art (``clipart/``, whose fixed split
    notebooks 01-02 use) with ``clipart_extra/`` (three more classes and a few
    more pictures), for cross-validation. Other datasets (``"fashion_mnist"``,
    ``"spoken_words"``, ...) come from :func:`tlcourse.data.load_dataset`; their
    own split is kept in ``pool.fixed``.
    """
    if dataset not in _POOLS:
        if dataset == "clipart":
            _POOLS[dataset] = _clipart_pool()
        else:
            from .data import load_dataset

            s = load_dataset(dataset, image_size=_native_size(dataset), as_numpy=True)
            parts = [s.train, s.val, s.test]
            x = np.concatenate([p[0] for p in parts]).round().clip(0, 255).astype(np.uint8)
            y = np.concatenate([p[1] for p in parts]).astype(int)
            bounds = np.cumsum([0] + [len(p[1]) for p in parts])
            fixed = {name: np.arange(bounds[i], bounds[i + 1]) for i, name in enumerate(("train", "val", "test"))}
            _POOLS[dataset] = Pool(dataset, x, y, np.arange(len(y)), list(s.class_names), fixed)
    return _POOLS[dataset]


def _native_size(dataset: str) -> int:
    return {"fashion_mnist": 28, "spoken_words": 64}.get(dataset, 128)


def _resized(pool: Pool, size: int) -> np.ndarray:
    """The pool's images as float32 0..255 at ``size`` px (bilinear), cached."""
    key = (pool.name, "resized", size)
    if key not in _POOLS:
        if pool.x.shape[1] == size:
            _POOLS[key] = pool.x.astype(np.float32)
        else:
            import tensorflow as tf

            _POOLS[key] = np.concatenate([tf.image.resize(pool.x[i:i + 512].astype(np.float32), (size, size)).numpy()
                                          for i in range(0, len(pool), 512)])
    return _POOLS[key]


def cv_folds(pool: Pool, folds: int = 5, repeats: int = 2, seed: int = 0, val_folds: int = 5) -> list[Fold]:
    """Repeated stratified group k-fold (scikit-learn's ``StratifiedGroupKFold``).

    In each of ``repeats`` repeats (shuffled by ``seed + repeat``) every image is
    in exactly one test fold; a validation split (1/``val_folds`` of the rest,
    also stratified and grouped) is carved from the training folds.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    out = []
    for r in range(repeats):
        outer = StratifiedGroupKFold(folds, shuffle=True, random_state=seed + r)
        for k, (rest, test) in enumerate(outer.split(pool.x[:, 0, 0, 0], pool.y, pool.groups)):
            inner = StratifiedGroupKFold(val_folds, shuffle=True, random_state=seed + r)
            tr, va = next(inner.split(rest, pool.y[rest], pool.groups[rest]))
            out.append(Fold(r, k, np.sort(rest[tr]), np.sort(rest[va]), np.sort(test)))
    return out


def fixed_folds(pool: Pool, seeds=(0,)) -> list[Fold]:
    """The dataset's own train/val/test split, once per seed (the seed then drives sampling and training)."""
    if pool.fixed is None:
        raise ValueError(f"{pool.name} has no fixed split; use cv_folds().")
    return [Fold(s, 0, pool.fixed["train"], pool.fixed["val"], pool.fixed["test"]) for s in seeds]


# --------------------------------------------------------------------------- #
# Frozen parts, computed once per (dataset, backbone, image size)
# --------------------------------------------------------------------------- #
_BASES: dict = {}
_CUTS: dict = {}


def _base(name: str, image_size: int):
    key = (name, image_size)
    if key not in _BASES:
        from .backbones import load_backbone

        base = load_backbone(name, image_size=image_size)
        base.trainable = False
        _BASES[key] = base
    return _BASES[key]


def _activations(pool: Pool, s: Settings, depth: int):
    """Activations of every pool image below the top ``depth`` blocks (``depth <= s.max_depth``), and their cost.

    The frozen bottom below ``s.max_depth`` runs once; shallower cuts run only
    the blocks between. ``depth=0`` gives the base's output feature maps.
    """
    import keras

    from .backbones import backbone_blocks

    if depth > s.max_depth:
        raise ValueError(f"depth={depth} is deeper than max_depth={s.max_depth}.")
    key = (pool.name, s.backbone, s.image_size, depth)
    if key not in _CUTS:
        base = _base(s.backbone, s.image_size)
        t0 = time.perf_counter()
        if depth == s.max_depth:
            bottom, _ = split_at_depth(base, depth)
            acts, cost = extract_features(bottom, _resized(pool, s.image_size)), 0.0
        else:
            deep, cost = _activations(pool, s, s.max_depth)
            blocks = backbone_blocks(base)
            start = base.get_layer(blocks[len(blocks) - s.max_depth - 1].output).output
            stop = base.output if depth == 0 else base.get_layer(blocks[len(blocks) - depth - 1].output).output
            acts = extract_features(keras.Model(start, stop), deep)
        _CUTS[key] = (acts, cost + time.perf_counter() - t0)
    return _CUTS[key]


def _features(pool: Pool, s: Settings):
    """Pooled frozen-base features (N, channels) of every pool image, and their cost (s)."""
    key = (pool.name, s.backbone, s.image_size, "pooled")
    if key not in _CUTS:
        acts, cost = _activations(pool, s, 0)
        _CUTS[key] = (acts.mean(axis=(1, 2)) if acts.ndim == 4 else acts, cost)
    return _CUTS[key]


def frozen_pass_seconds(dataset: str, s: Settings) -> float:
    """Seconds spent once computing the frozen activations that ``s``'s fine tuning and features use."""
    pool = load_pool(dataset)
    deep = _activations(pool, s, s.max_depth)[1]
    return deep + sum(_activations(pool, s, d)[1] - deep for d in {0, s.depth} if d != s.max_depth)


# --------------------------------------------------------------------------- #
# Models: built with explicit seeds, compiled once per graph, restarted per run
# --------------------------------------------------------------------------- #
def scratch_cnn(input_shape: tuple[int, int, int], num_classes: int, seed: int = 0):
    """A small CNN trained from scratch: the no-transfer baseline (about 25 k weights)."""
    import keras
    from keras import layers

    inputs = keras.Input(input_shape)
    x = layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    for i, filters in enumerate((16, 32, 64)):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False,
                          kernel_initializer=keras.initializers.GlorotUniform(seed=seed * 100 + i))(x)
        x = layers.BatchNormalization(momentum=0.9)(x)  # warms up in tens of steps, not hundreds
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2, seed=seed)(x)
    outputs = layers.Dense(num_classes, kernel_initializer=keras.initializers.GlorotUniform(seed=seed * 100 + 9))(x)
    return keras.Model(inputs, outputs, name="scratch_cnn")


def _head(input_dim: int, num_classes: int, seed: int):
    """Dropout 0.2 and a dense layer on pooled features: the feature-extraction head."""
    import keras

    inputs = keras.Input((input_dim,))
    x = keras.layers.Dropout(0.2, seed=seed)(inputs)
    outputs = keras.layers.Dense(num_classes, name="logits",
                                 kernel_initializer=keras.initializers.GlorotUniform(seed=seed))(x)
    return keras.Model(inputs, outputs, name="head")


def _compile(model, learning_rate: float):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


#: Compiled models reused between runs, keyed by what fixes their graph: tracing a
#: Keras training step costs about a second per new model, restarting one milliseconds.
_MODELS: dict = {}


def _seed_states(model) -> list:
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def _restart(model, weights: list, seed: int, learning_rate: float):
    """A reused compiled model, set to start like a newly built one: weights, zeroed optimizer, seeded dropout."""
    model.set_weights(weights)
    for i, var in enumerate(_seed_states(model)):
        var.assign(np.array([seed * 1000 + i + 1, 0], dtype=var.dtype))
    for var in model.optimizer.variables:
        if "learning_rate" not in var.path:
            var.assign(np.zeros(var.shape, dtype=var.dtype))
    model.optimizer.learning_rate.assign(learning_rate)
    return model


def _model(key: tuple, build, learning_rate: float, seed: int):
    """``build()`` compiled, reusing the compiled model of an earlier run with the same ``key``."""
    fresh = build()
    if key not in _MODELS:
        _MODELS[key] = _compile(fresh, learning_rate)
    return _restart(_MODELS[key], fresh.get_weights(), seed, learning_rate)


def _fit(model, x, y, xv, yv, max_epochs: int, patience: int, batch_size: int, seed: int):
    """Train until the validation loss stops improving (best weights restored); return (epochs, seconds)."""
    import keras

    import tensorflow as tf

    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    # reshuffled every epoch, in an order fixed by `seed` alone (not by the global random state)
    train = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
             .batch(batch_size))
    t0 = time.perf_counter()
    hist = model.fit(train, validation_data=(xv, yv), epochs=max_epochs, verbose=0, callbacks=[stop],
                     shuffle=False)
    seconds = time.perf_counter() - t0
    losses = hist.history["val_loss"]
    return {"epochs": len(losses), "best_epoch": int(np.argmin(losses)) + 1, "seconds": seconds}


def _predict(model, x) -> np.ndarray:
    return np.argmax(model.predict(x, batch_size=256, verbose=0), axis=1)


# --------------------------------------------------------------------------- #
# One run
# --------------------------------------------------------------------------- #
_HEADS: dict = {}  # stage-1 heads, reused as fine tuning's starting point


def run_method(dataset: str, method: str, fold: Fold, s: Settings, per_class: int | None = None) -> dict:
    """Train ``method`` on ``fold``'s training images (``per_class`` of each class, or all) and score its test fold.

    Returns one record (a flat dict): dataset, method, per_class, repeat, fold,
    the settings, ``n_train``, ``epochs`` (trained; early stopping restores the
    ``best_epoch``), ``seconds`` (training; fine tuning includes its stage-1
    head), ``trainable_params``, ``train_accuracy``, ``val_accuracy``,
    ``test_accuracy``, ``gap`` (train minus test), ``test_index`` (pool indices
    of the test images) and ``test_correct`` (one bool per test image).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    pool = load_pool(dataset)
    k = len(pool.class_names)
    seed = fold.repeat
    tr = fold.train[per_class_indices(pool.y[fold.train], per_class, seed)]
    va, te, y = fold.val, fold.test, pool.y
    if method == "scratch":
        x = _resized(pool, s.scratch_image_size)
        model = _model(("scratch", x.shape[1:], k), lambda: scratch_cnn(x.shape[1:], k, seed),
                       s.head_learning_rate, seed)
        info = _fit(model, x[tr], y[tr], x[va], y[va], s.max_epochs_scratch, s.patience_scratch, s.batch_size,
                    seed)
        inputs = x
    else:
        f, _ = _features(pool, s)
        head = _model(("head", f.shape[1], k), lambda: _head(f.shape[1], k, seed), s.head_learning_rate, seed)
        hkey = (dataset, fold.repeat, fold.fold, per_class, s.backbone, s.image_size, s.head_learning_rate,
                s.max_epochs_head, s.patience, s.batch_size)
        if hkey in _HEADS:  # fine tuning's stage 1 is the feature-extraction run of the same fold: reuse it
            weights, info = _HEADS[hkey]
            head.set_weights(weights)
        else:
            info = _fit(head, f[tr], y[tr], f[va], y[va], s.max_epochs_head, s.patience, s.batch_size, seed)
            _HEADS[hkey] = ([w.copy() for w in head.get_weights()], info)
        model, inputs = head, f
        if method == "fine_tuning":
            stage1 = head.get_layer("logits").get_weights()
            acts, _ = _activations(pool, s, s.depth)
            key = ("fine_tune", dataset, s.backbone, s.image_size, s.depth, k)
            if key not in _MODELS:
                built, _, _ = build_fine_tune_model(_base(s.backbone, s.image_size), s.depth, k, acts.shape[1:],
                                                    seed=seed)
                _MODELS[key] = (_compile(built, s.learning_rate), built.get_weights())
            model, pretrained = _MODELS[key]
            _restart(model, pretrained, seed + 1, s.learning_rate)
            model.get_layer("logits").set_weights(stage1)  # stage 2 starts from the stage-1 head
            more = _fit(model, acts[tr], y[tr], acts[va], y[va], s.max_epochs_fine_tune, s.patience_fine_tune,
                        s.batch_size, seed + 1)
            info = {"epochs": info["epochs"] + more["epochs"], "best_epoch": more["best_epoch"],
                    "seconds": info["seconds"] + more["seconds"], "head_epochs": info["epochs"]}
            inputs = acts
    splits = [("train", tr), ("val", va)] + ([("test", te)] if len(te) else [])  # no test fold: not scored
    pred = {name: _predict(model, inputs[idx]) for name, idx in splits}
    acc = {name: float(np.mean(pred[name] == y[idx])) for name, idx in splits}
    if not len(te):
        pred["test"], acc["test"] = np.zeros(0, int), float("nan")
    record = {"dataset": dataset, "method": method, "per_class": per_class, "repeat": fold.repeat,
              "fold": fold.fold, **asdict(s), "n_train": len(tr), **info,
              "trainable_params": count_params(model)["trainable"],
              "train_accuracy": acc["train"], "val_accuracy": acc["val"], "test_accuracy": acc["test"],
              "gap": acc["train"] - acc["test"], "test_index": te, "test_correct": pred["test"] == y[te]}
    return record


def run_grid(dataset: str, folds: list[Fold], settings: Settings, sizes=(None,), methods=METHODS,
             progress: bool = True) -> list[dict]:
    """Every method at every training-set size on every fold; a tqdm progress bar while it runs."""
    from tqdm.auto import tqdm

    jobs = [(size, fold, m) for size in sizes for fold in folds for m in methods]
    records = []
    with tqdm(total=len(jobs), desc=dataset, disable=not progress, leave=False) as bar:
        for size, fold, method in jobs:
            records.append(run_method(dataset, method, fold, settings, size))
            bar.update()
    return records


def select_fine_tuning(dataset: str, fold: Fold, settings: Settings, depths=(1, 2, 4, 9),
                       learning_rates=(1e-5, 1e-4, 1e-3), per_class: int | None = None) -> tuple[dict, list[dict]]:
    """Choose fine tuning's depth and learning rate on ``fold``'s VALIDATION split.

    Trains on ``fold``'s training images (``per_class`` of each class, or all).
    Returns ``(best, table)``: the best ``{"depth", "learning_rate",
    "val_accuracy", ...}`` and one row per pair (with epochs and seconds). The
    test fold is not even predicted. Ties go to the shallower depth, then the lower rate.
    """
    table = []
    without_test = Fold(fold.repeat, fold.fold, fold.train, fold.val, np.zeros(0, int))
    for depth in depths:
        for lr in learning_rates:
            r = run_method(dataset, "fine_tuning", without_test, replace(settings, depth=depth, learning_rate=lr),
                           per_class)
            table.append({"dataset": dataset, "depth": depth, "learning_rate": lr,
                          "val_accuracy": r["val_accuracy"], "epochs": r["epochs"], "seconds": r["seconds"],
                          "trainable_params": r["trainable_params"]})
    best = max(table, key=lambda r: (r["val_accuracy"], -r["depth"], -r["learning_rate"]))
    return best, table


# --------------------------------------------------------------------------- #
# Statistics: intervals and paired tests (SciPy)
# --------------------------------------------------------------------------- #
def _by_repeat(records, dataset, method, per_class) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{repeat: (pool indices, correct)} with every test fold of that repeat, sorted by image."""
    out: dict = {}
    for r in records:
        if r["dataset"] == dataset and r["method"] == method and r["per_class"] == per_class:
            out.setdefault(r["repeat"], []).append((r["test_index"], r["test_correct"]))
    if not out:
        raise ValueError(f"no records for {dataset}, {method}, per_class={per_class}.")
    result = {}
    for rep, parts in out.items():
        idx = np.concatenate([p[0] for p in parts])
        ok = np.concatenate([p[1] for p in parts])
        order = np.argsort(idx, kind="stable")
        result[rep] = (idx[order], ok[order].astype(float))
    return result


def accuracy_interval(records, dataset: str, method: str, per_class=None, confidence: float = 0.95,
                      n_resamples: int = 2000, seed: int = 0) -> dict:
    """Accuracy with a ``confidence`` interval that covers the seeds and the test-image sample.

    For each seed (repeat), :func:`scipy.stats.bootstrap` resamples its test
    predictions (one per image); the replicates of all seeds are pooled and the
    interval is their percentile range. Returns ``{"accuracy", "low", "high",
    "n_images", "n_predictions", "seeds"}``.
    """
    from scipy import stats

    reps = _by_repeat(records, dataset, method, per_class)
    rng = np.random.default_rng(seed)
    pooled, means = [], []
    for rep in sorted(reps):
        ok = reps[rep][1]
        means.append(ok.mean())
        res = stats.bootstrap((ok,), np.mean, n_resamples=n_resamples, method="percentile", rng=rng,
                              vectorized=True)
        pooled.append(res.bootstrap_distribution)
    pooled = np.concatenate(pooled)
    tail = (1 - confidence) / 2 * 100
    images = {i for idx, _ in reps.values() for i in idx.tolist()}
    return {"accuracy": float(np.mean(means)), "low": float(np.percentile(pooled, tail)),
            "high": float(np.percentile(pooled, 100 - tail)), "n_images": len(images),
            "n_predictions": int(sum(len(v[1]) for v in reps.values())), "seeds": len(reps)}


def mcnemar_exact(correct_a, correct_b) -> dict:
    """McNemar's exact test on paired predictions: ``binomtest(b, b + c, 0.5)`` on the discordant pairs.

    ``b``: images only ``a`` got right; ``c``: images only ``b`` got right.
    """
    from scipy import stats

    a, b_ = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    b, c = int(np.sum(a & ~b_)), int(np.sum(~a & b_))
    p = stats.binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
    return {"only_a": b, "only_b": c, "discordant": b + c, "n": len(a), "p_value": float(p)}


def paired_difference(records, dataset: str, a: str, b: str, per_class=None, confidence: float = 0.95,
                      n_resamples: int = 4000, seed: int = 0) -> dict:
    """Accuracy of ``a`` minus ``b`` on the same test images, with a paired test.

    The difference per image is averaged over the seeds (repeats), then
    :func:`scipy.stats.bootstrap` resamples *images* (a paired bootstrap). The
    ``verdict`` is ``a`` or ``b`` when the interval excludes 0, else ``"tie"``
    (no difference this evaluation can detect). McNemar's exact test per seed is
    reported too (``mcnemar``: one dict per seed).
    """
    from scipy import stats

    ra, rb = _by_repeat(records, dataset, a, per_class), _by_repeat(records, dataset, b, per_class)
    if sorted(ra) != sorted(rb) or any(not np.array_equal(ra[k][0], rb[k][0]) for k in ra):
        raise ValueError("the two methods were not scored on the same test images.")
    diff = np.mean([ra[k][1] - rb[k][1] for k in sorted(ra)], axis=0)
    if np.all(diff == diff[0]):  # identical on every image: nothing to resample
        low = high = float(diff[0])
    else:
        res = stats.bootstrap((diff,), np.mean, n_resamples=n_resamples, method="percentile",
                              confidence_level=confidence, rng=np.random.default_rng(seed), vectorized=True)
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    verdict = a if low > 0 else b if high < 0 else "tie"
    return {"a": a, "b": b, "difference": float(diff.mean()), "low": low, "high": high, "verdict": verdict,
            "n_images": len(diff), "mcnemar": [mcnemar_exact(ra[k][1], rb[k][1]) for k in sorted(ra)]}


def mcnemar_power(n: int, discordance: float, difference: float, alpha: float = 0.05) -> float:
    """Power of McNemar's exact test (level ``alpha``) on ``n`` paired images.

    ``discordance``: the share of images the two methods disagree on (one right,
    one wrong); ``difference``: the true accuracy difference. The number of
    discordant pairs is binomial(``n``, ``discordance``); given ``D`` of them,
    the count won by the better method is binomial(``D``, 1/2 + difference /
    (2 discordance)). Exact sums with :mod:`scipy.stats`.
    """
    from scipy import stats

    if not 0 < discordance <= 1 or abs(difference) > discordance:
        raise ValueError("need 0 < discordance <= 1 and |difference| <= discordance.")
    q = 0.5 + abs(difference) / (2 * discordance)
    d = stats.binom(n, discordance)
    lo_d, hi_d = (int(v) for v in d.interval(1 - 1e-9))
    power = 0.0
    for D in range(max(lo_d, 1), hi_d + 1):
        # the exact two-sided test at p = 1/2 rejects when k <= lo or k >= D - lo, where lo is the
        # largest k with 2 P(X <= k) < alpha (this is binomtest's p-value for k < D / 2)
        k = np.arange(D // 2 + 1)
        small = np.flatnonzero(2 * stats.binom.cdf(k, D, 0.5) < alpha)
        if not len(small):
            continue
        lo = int(small[-1])
        power += d.pmf(D) * (stats.binom.cdf(lo, D, q) + stats.binom.sf(D - lo - 1, D, q))
    return float(power)


def summarize(records, dataset: str, per_class=None, methods=METHODS, **kw) -> dict:
    """{method: accuracy_interval(...) plus median seconds, epochs, trainable weights and gap} for one cell."""
    out = {}
    for m in methods:
        rows = [r for r in records if r["dataset"] == dataset and r["method"] == m and r["per_class"] == per_class]
        if not rows:
            continue
        out[m] = accuracy_interval(records, dataset, m, per_class, **kw) | {
            "seconds": float(np.median([r["seconds"] for r in rows])),
            "epochs": float(np.median([r["epochs"] for r in rows])),
            "trainable_params": int(rows[0]["trainable_params"]),
            "gap": float(np.mean([r["gap"] for r in rows])),
            "train_accuracy": float(np.mean([r["train_accuracy"] for r in rows])),
            "runs": len(rows)}
    return out
