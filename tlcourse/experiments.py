"""The comparison runner of notebook 03: one function, one record per run.

``run_experiment(config) -> record`` trains one method (feature extraction,
fine tuning or a small CNN from scratch) on one dataset at one training-set
size and seed, and returns a flat dict: the row of a tidy table.

Fair by construction:

* every method sees the same training images (the same per-class subsample
  for a given size and seed), is evaluated on the same held-out test split,
  and gets the same number of optimizer steps (the equal-effort rule; fine
  tuning spends half of them training the head, half fine-tuning);
* fine tuning uses a depth and learning rate chosen on the validation split
  (:func:`select_fine_tuning`), never on the test split;
* the frozen parts are computed once per dataset and cached, so the runner is
  fast without shrinking the experiment; their cost is still charged to each
  run, in proportion to the images it uses (``prep_seconds``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from .training import (FineTuneData, _compile_classifier, _restart_compiled, _seed_variables,
                       build_fine_tune_model, count_params, cut_activations)

__all__ = ["ExperimentConfig", "run_experiment", "run_grid", "select_fine_tuning",
           "per_class_indices", "step_indices", "scratch_cnn", "METHODS", "MAX_DEPTH", "summarize"]

METHODS = ("feature_extraction", "fine_tuning", "scratch")


@dataclass(frozen=True)
class ExperimentConfig:
    """One run: dataset, method, training labels per class (``None`` = all), seed, and effort."""

    dataset: str
    method: str
    per_class: int | None = None
    seed: int = 0
    steps: int = 150               # optimizer steps, the same for every method
    batch_size: int = 32
    image_size: int = 128          # what the pretrained backbone sees
    scratch_image_size: int = 32   # what the from-scratch CNN sees
    depth: int = 2                 # fine tuning: blocks unfrozen
    learning_rate: float = 1e-4    # fine tuning learning rate (the head uses 1e-3)
    backbone: str = "efficientnet_lite0"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}.")
        if self.per_class is not None and self.per_class < 1:
            raise ValueError(f"per_class must be at least 1 (or None for all), got {self.per_class}.")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}.")


# --------------------------------------------------------------------------- #
# Shared, cached inputs
# --------------------------------------------------------------------------- #
#: Fine tuning may unfreeze at most this many blocks in the comparison: the frozen
#: part below that cut runs once per dataset; shallower cuts and the pooled
#: features are derived from its cached output by running only the blocks above.
MAX_DEPTH = 4

_DATA: dict = {}
_BASES: dict = {}
_CUTS: dict = {}


def _arrays(dataset: str, image_size: int):
    key = (dataset, image_size)
    if key not in _DATA:
        from .data import load_dataset

        splits = load_dataset(dataset, image_size=image_size, as_numpy=True)
        _DATA[key] = (splits.train, splits.val, splits.test, list(splits.class_names))
    return _DATA[key]


def _base(name: str, image_size: int):
    key = (name, image_size)
    if key not in _BASES:
        from .backbones import load_backbone

        base = load_backbone(name, image_size=image_size)
        base.trainable = False
        _BASES[key] = base
    return _BASES[key]


def _deep_cut(cfg: "ExperimentConfig"):
    """Activations below the top MAX_DEPTH blocks for train/val/test, and their cost (s)."""
    key = (cfg.dataset, cfg.backbone, cfg.image_size)
    if key not in _CUTS:
        (xtr, ytr), (xva, yva), (xte, yte), classes = _arrays(cfg.dataset, cfg.image_size)
        data = FineTuneData(xtr, ytr, xva, yva, xte, yte, len(classes))
        t0 = time.perf_counter()
        acts = cut_activations(_base(cfg.backbone, cfg.image_size), MAX_DEPTH, data)
        _CUTS[key] = (acts, time.perf_counter() - t0)
    return _CUTS[key]


def _cut(cfg: "ExperimentConfig", depth: int):
    """Activations below the top ``depth`` blocks (``depth <= MAX_DEPTH``), and their cost."""
    import keras

    from .backbones import backbone_blocks
    from .training import extract_features

    if depth > MAX_DEPTH:
        raise ValueError(f"depth={depth}: the comparison unfreezes at most {MAX_DEPTH} blocks.")
    deep, cost = _deep_cut(cfg)
    if depth == MAX_DEPTH:
        return deep, cost
    key = (cfg.dataset, cfg.backbone, cfg.image_size, depth)
    if key not in _CUTS:
        base = _base(cfg.backbone, cfg.image_size)
        blocks = backbone_blocks(base)
        start = base.get_layer(blocks[len(blocks) - MAX_DEPTH - 1].output).output
        stop = base.output if depth == 0 else base.get_layer(blocks[len(blocks) - depth - 1].output).output
        segment = keras.Model(start, stop)
        t0 = time.perf_counter()
        acts = tuple(extract_features(segment, a) for a in deep)
        _CUTS[key] = (acts, cost + time.perf_counter() - t0)
    return _CUTS[key]


def _pooled_features(cfg: "ExperimentConfig"):
    """Pooled frozen-base features of train/val/test, and their cost (s)."""
    acts, cost = _cut(cfg, 0)
    return tuple(a.mean(axis=(1, 2)) for a in acts), cost


def per_class_indices(labels: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    """Indices of ``per_class`` examples of each class, drawn by ``seed`` (sorted).

    ``None`` keeps everything. Too few examples of a class gives a clear error.
    """
    labels = np.asarray(labels)
    if per_class is None:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if per_class > len(idx):
            raise ValueError(f"per_class={per_class} but class {c} has only {len(idx)} training examples; "
                             f"use at most {min(np.bincount(labels))} (or None for all).")
        picked.append(rng.choice(idx, per_class, replace=False))
    return np.sort(np.concatenate(picked))


def step_indices(n: int, steps: int, batch_size: int, seed: int) -> np.ndarray:
    """Training order for exactly ``steps`` optimizer steps of ``batch_size`` over ``n`` examples.

    Shuffled passes over the ``n`` examples, back to back, cut at
    ``steps * batch_size``: every method gets the same number of updates
    whatever the training-set size (the equal-effort rule), and no example is
    seen more than once more than any other. One long epoch instead of many
    short ones: the same updates, without Keras's per-epoch overhead (which
    dominates on 35 images).
    """
    total = steps * batch_size
    rng = np.random.default_rng(seed)
    passes = -(-total // n)  # ceiling
    return np.concatenate([rng.permutation(n) for _ in range(passes)])[:total]


# --------------------------------------------------------------------------- #
# The three methods
# --------------------------------------------------------------------------- #
def scratch_cnn(input_shape: tuple[int, int, int], num_classes: int):
    """A small CNN trained from scratch: the no-transfer baseline (about 25 k parameters)."""
    import keras
    from keras import layers

    inputs = keras.Input(input_shape)
    x = layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    for filters in (16, 32, 64):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(num_classes)(x)
    return keras.Model(inputs, outputs, name="scratch_cnn")


#: Compiled models reused between runs, keyed by what fixes their graph. Tracing
#: a Keras training step costs about a second per new model; resetting a
#: compiled one (weights, optimizer state, dropout seeds) costs milliseconds.
_MODELS: dict = {}


def _restart(model, weights: list, seed: int):
    """Restart a reused compiled model: ``weights``, a zeroed optimizer, dropout re-seeded from ``seed``."""
    import random

    rng = random.Random(seed)
    seeds = [[rng.randint(1, 10**9), 0] for _ in _seed_variables(model)]
    return _restart_compiled(model, weights, seeds)


def _fresh(key, build, learning_rate: float, seed: int):
    """A compiled model from ``build()`` with fresh weights drawn by ``seed``, reusing a compiled one."""
    import keras

    keras.utils.set_random_seed(seed)
    fresh = build()
    if key not in _MODELS:
        _MODELS[key] = _compile_classifier(fresh, learning_rate)
    return _restart(_MODELS[key], fresh.get_weights(), seed)


def _scratch_model(input_shape, num_classes: int, seed: int):
    """The scratch CNN, compiled, with fresh seeded weights and optimizer state."""
    return _fresh(("scratch", tuple(input_shape), num_classes),
                  lambda: scratch_cnn(input_shape, num_classes), 1e-3, seed)


def _head(input_dim: int, num_classes: int):
    import keras

    inputs = keras.Input((input_dim,))
    return keras.Model(inputs, keras.layers.Dense(num_classes)(keras.layers.Dropout(0.2)(inputs)))


def _fit_head(features, labels, num_classes: int, cfg: ExperimentConfig, steps: int):
    """Dropout + dense head on pooled features, ``steps`` Adam steps at 1e-3 (seeded by ``cfg.seed``)."""
    model = _fresh(("head", features.shape[1], num_classes), lambda: _head(features.shape[1], num_classes),
                   1e-3, cfg.seed)
    order = step_indices(len(features), steps, cfg.batch_size, cfg.seed)
    model.fit(features[order], labels[order], epochs=1, batch_size=cfg.batch_size, shuffle=False, verbose=0)
    return model


def _accuracy(model, x, y) -> float:
    logits = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == y))


def _fine_tune_model(cfg: ExperimentConfig, depth: int, learning_rate: float, input_shape, num_classes: int):
    """The compiled fine-tuning model for a (dataset, depth, learning rate), and its pretrained weights."""
    key = ("fine_tune", cfg.dataset, cfg.backbone, cfg.image_size, depth, learning_rate, num_classes)
    if key not in _MODELS:
        model, _, _ = build_fine_tune_model(_base(cfg.backbone, cfg.image_size), depth, num_classes, input_shape)
        _MODELS[key] = (_compile_classifier(model, learning_rate), model.get_weights())
    return _MODELS[key]


def _fine_tune(cfg: ExperimentConfig, idx: np.ndarray, depth: int, learning_rate: float,
               evaluate=("train", "test")) -> dict:
    """Two stages on the training subset ``idx``: head (half the steps), then fine tuning (half).

    Returns the model, its training time (both stages) and its accuracy on the
    splits named in ``evaluate`` (keys ``"train_accuracy"`` and so on).
    """
    (_, ytr), (_, yva), (_, yte), classes = _arrays(cfg.dataset, cfg.image_size)
    (ftr, _, _), _ = _pooled_features(cfg)
    acts, _ = _cut(cfg, depth)
    half = max(1, cfg.steps // 2)
    t0 = time.perf_counter()
    head = _fit_head(ftr[idx], ytr[idx], len(classes), cfg, half)
    model, pretrained = _fine_tune_model(cfg, depth, learning_rate, acts[0].shape[1:], len(classes))
    _restart(model, pretrained, cfg.seed + 1)
    model.get_layer("logits").set_weights(head.layers[-1].get_weights())  # stage 2 starts from stage 1
    order = idx[step_indices(len(idx), half, cfg.batch_size, cfg.seed + 1)]
    model.fit(acts[0][order], ytr[order], epochs=1, batch_size=cfg.batch_size, shuffle=False, verbose=0)
    seconds = time.perf_counter() - t0
    splits = {"train": (acts[0][idx], ytr[idx]), "val": (acts[1], yva), "test": (acts[2], yte)}
    return {"model": model, "seconds": seconds,
            **{f"{name}_accuracy": _accuracy(model, *splits[name]) for name in evaluate}}


def _prep_cost(cfg: ExperimentConfig, depth: int) -> float:
    """Seconds spent once computing the frozen parts a fine-tuning run at ``depth`` uses."""
    return _pooled_features(cfg)[1] + _cut(cfg, depth)[1]


def run_experiment(config: ExperimentConfig) -> dict:
    """Run one configuration and return its record (a flat dict, one table row).

    Keys: the config's fields, plus ``n_train``, ``train_accuracy``,
    ``test_accuracy``, ``gap`` (train minus test: overfitting), ``seconds``
    (training wall-clock), ``prep_seconds`` (the run's share of computing the
    frozen part once: its cost for all images times the share of images this
    run uses; 0 from scratch), ``total_seconds`` and ``trainable_params``.
    """
    cfg = config
    (_, ytr), (_, yva), (_, yte), classes = _arrays(cfg.dataset, cfg.image_size)
    k = len(classes)
    idx = per_class_indices(ytr, cfg.per_class, cfg.seed)
    n = len(idx)
    share = n / (len(ytr) + len(yva) + len(yte))
    prep = 0.0
    if cfg.method == "feature_extraction":
        (ftr, _, fte), cost = _pooled_features(cfg)
        prep = cost * share
        t0 = time.perf_counter()
        model = _fit_head(ftr[idx], ytr[idx], k, cfg, cfg.steps)
        seconds = time.perf_counter() - t0
        train_acc, test_acc = _accuracy(model, ftr[idx], ytr[idx]), _accuracy(model, fte, yte)
        params = count_params(model)["trainable"]
    elif cfg.method == "fine_tuning":
        result = _fine_tune(cfg, idx, cfg.depth, cfg.learning_rate)
        seconds = result["seconds"]
        prep = _prep_cost(cfg, cfg.depth) * share
        train_acc, test_acc = result["train_accuracy"], result["test_accuracy"]
        params = count_params(result["model"])["trainable"]
    else:
        (xtr, _), _, (xte, _), _ = _arrays(cfg.dataset, cfg.scratch_image_size)
        model = _scratch_model(xtr.shape[1:], k, cfg.seed)
        order = idx[step_indices(n, cfg.steps, cfg.batch_size, cfg.seed)]
        t0 = time.perf_counter()
        model.fit(xtr[order], ytr[order], epochs=1, batch_size=cfg.batch_size, shuffle=False, verbose=0)
        seconds = time.perf_counter() - t0
        train_acc, test_acc = _accuracy(model, xtr[idx], ytr[idx]), _accuracy(model, xte, yte)
        params = count_params(model)["trainable"]
    record = asdict(cfg)
    record.update(n_train=n, train_accuracy=train_acc, test_accuracy=test_acc,
                  gap=train_acc - test_acc, seconds=seconds, prep_seconds=prep,
                  total_seconds=seconds + prep, trainable_params=params)
    return record


def select_fine_tuning(dataset: str, depths=(1, 2, 4), learning_rates=(1e-4, 1e-3), seed: int = 0,
                       **overrides) -> tuple[dict, list[dict]]:
    """Choose fine tuning's depth and learning rate on the VALIDATION split.

    Trains on the full training split for each pair and returns
    ``(best, table)``: the best ``{"depth", "learning_rate", "val_accuracy"}``
    and every pair's validation accuracy. The test split is not looked at.
    Ties go to the shallower depth (cheaper).
    """
    table = []
    for depth in depths:
        for lr in learning_rates:
            cfg = ExperimentConfig(dataset, "fine_tuning", None, seed, depth=depth, learning_rate=lr,
                                   **overrides)
            (_, ytr), _, _, _ = _arrays(cfg.dataset, cfg.image_size)
            result = _fine_tune(cfg, np.arange(len(ytr)), depth, lr, evaluate=("val",))
            table.append({"dataset": dataset, "depth": depth, "learning_rate": lr,
                          "val_accuracy": result["val_accuracy"]})
    best = max(table, key=lambda r: (r["val_accuracy"], -r["depth"]))
    return best, table


def run_grid(base_configs: list[ExperimentConfig], sizes, seeds, progress=None) -> list[dict]:
    """Run every config at every size and seed; returns the list of records."""
    records = []
    for cfg in base_configs:
        for size in sizes:
            for seed in seeds:
                run = replace(cfg, per_class=size, seed=seed)
                records.append(run_experiment(run))
                if progress is not None:
                    progress(records[-1])
    return records


def summarize(records: list[dict], value: str = "test_accuracy") -> dict:
    """Mean and spread (min, max) of ``value`` per (dataset, method, per_class).

    Returns ``{(dataset, method, per_class): (mean, std, n)}``.
    """
    groups: dict = {}
    for r in records:
        groups.setdefault((r["dataset"], r["method"], r["per_class"]), []).append(r[value])
    return {k: (float(np.mean(v)), float(np.std(v)), len(v)) for k, v in groups.items()}
