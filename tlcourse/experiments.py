"""The comparison behind notebook 03: one design, run once as a command, analysed anywhere.

Float results of training differ from one CPU to another (and from one seed to
another), so the heavy grid is a reproducible experiment, not notebook cells:

* :data:`DESIGN` and :func:`plan` say exactly which runs make the comparison:
  three datasets, three methods, four training-set sizes, five training seeds
  per cell (on clip art and spoken words each seed also has its own
  cross-validation fold), after a selection stage that chooses fine tuning's
  depth and learning rate on validation data only (:func:`choose_setting`).
* ``python -m tlcourse compare`` runs the plan and appends one record per run
  to a JSON-lines file (settings, seed, fold, per-image test predictions,
  cost, library versions, CPU, date). Killed and restarted, it skips the runs
  already recorded and loses nothing.
* Notebook 03 analyses the committed records with :mod:`tlcourse.stats`
  (NumPy/SciPy only: the same digits on every machine) and re-runs a small
  live slice with :func:`run_method`, checked against the recorded spread.

Every method trains until its validation loss stops improving
(``EarlyStopping(restore_best_weights=True)``); validation never holds more
labelled images per class than training does. Seeds are always explicit and
only public Keras/TensorFlow APIs are used.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .data import Pool, load_pool, per_class_indices, resize_images
from .training import (build_fine_tune_model, compiled_model, count_params, extract_features,
                       seeded_batches, split_at_depth, validation_batches)

__all__ = ["METHODS", "DESIGN", "Settings", "Fold", "cv_folds", "fixed_folds", "folds_for", "plan",
           "scratch_cnn", "run_method", "choose_setting", "run_plan", "read_records", "default_results_path",
           "frozen_pass_seconds"]

METHODS = ("feature_extraction", "fine_tuning", "scratch")


@dataclass(frozen=True)
class Settings:
    """How the methods train on one dataset; every run of that dataset uses it."""

    image_size: int = 128            # what the pretrained backbone sees
    scratch_image_size: int = 64     # what the from-scratch CNN sees
    backbone: str = "efficientnet_lite0"
    depth: int = 2                   # fine tuning: blocks unfrozen, counted from the top
    learning_rate: float = 1e-4      # fine tuning
    head_learning_rate: float = 1e-3  # the feature-extraction head, and the scratch CNN
    batch_size: int = 32
    max_epochs_head: int = 200
    max_epochs_fine_tune: int = 20
    max_epochs_scratch: int = 150
    patience: int = 10               # epochs without a better validation loss before stopping
    patience_fine_tune: int = 4
    patience_scratch: int = 10       # with ReduceLROnPlateau (rate halved after 3 flat epochs)
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


#: The whole comparison. ``sizes``: labelled images per class for training (None: all the
#: fold has); ``seeds``: one training run per seed and size and method (on cross-validated
#: datasets seed k also tests fold k); ``grid``: fine tuning's candidate (depths, rates), each
#: tried on the ``select_seeds`` (folds) at the largest size and scored on validation only.
DESIGN = {
    "clipart": dict(settings=Settings(image_size=128, scratch_image_size=64, max_depth=4), sizes=(3, 5, 8, None),
                    seeds=(0, 1, 2, 3, 4), select_seeds=(0, 1, 2), grid=((1, 2, 4), (1e-4, 1e-3))),
    "fashion_mnist": dict(settings=Settings(image_size=64, scratch_image_size=28, max_depth=4),
                          sizes=(5, 10, 25, 50), seeds=(0, 1, 2, 3, 4), select_seeds=(0, 1, 2),
                          grid=((1, 2, 4), (1e-4, 1e-3))),
    "spoken_words": dict(settings=Settings(image_size=64, scratch_image_size=64, max_depth=9), sizes=(5, 10, 20, None),
                         seeds=(0, 1, 2, 3, 4), select_seeds=(0, 1, 2), grid=((1, 2, 4), (1e-4, 1e-3))),
}


# --------------------------------------------------------------------------- #
# Splits
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Fold:
    """Indices into a :class:`~tlcourse.data.Pool` for one evaluation."""

    fold: int
    train: np.ndarray = field(repr=False)
    val: np.ndarray = field(repr=False)
    test: np.ndarray = field(repr=False)


def cv_folds(pool: Pool, folds: int = 5, seed: int = 0, val_folds: int = 5) -> list[Fold]:
    """Stratified group k-fold (scikit-learn's ``StratifiedGroupKFold``, shuffled by ``seed``).

    Every image is in exactly one test fold; a validation split (1/``val_folds``
    of the rest, also stratified and grouped) is carved from the training folds.
    A drawing's near-copies (``pool.groups``) stay on one side of every split.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    out = []
    outer = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
    for k, (rest, test) in enumerate(outer.split(pool.y, pool.y, pool.groups)):
        inner = StratifiedGroupKFold(val_folds, shuffle=True, random_state=seed)
        tr, va = next(inner.split(rest, pool.y[rest], pool.groups[rest]))
        out.append(Fold(k, np.sort(rest[tr]), np.sort(rest[va]), np.sort(test)))
    return out


def fixed_folds(pool: Pool) -> list[Fold]:
    """The dataset's own train/val/test split as one fold."""
    if pool.fixed is None:
        raise ValueError(f"{pool.name} has no fixed split; use cv_folds().")
    return [Fold(0, pool.fixed["train"], pool.fixed["val"], pool.fixed["test"])]


def folds_for(dataset: str) -> list[Fold]:
    """The folds the design uses: 5-fold CV for pooled datasets, the fixed split otherwise."""
    pool = load_pool(dataset)
    return fixed_folds(pool) if dataset == "fashion_mnist" else cv_folds(pool)


def _fold_of(dataset: str, seed: int) -> Fold:
    folds = folds_for(dataset)
    return folds[seed % len(folds)]


# --------------------------------------------------------------------------- #
# Frozen parts, computed once per (dataset, backbone, image size, cut)
# --------------------------------------------------------------------------- #
_BASES: dict = {}
_CUTS: dict = {}
_RESIZED: dict = {}


def _base(name: str, image_size: int):
    if (name, image_size) not in _BASES:
        from .backbones import load_backbone

        base = load_backbone(name, image_size=image_size)
        base.trainable = False
        _BASES[(name, image_size)] = base
    return _BASES[(name, image_size)]


def _images(pool: Pool, size: int) -> np.ndarray:
    if (pool.name, size) not in _RESIZED:
        _RESIZED[(pool.name, size)] = resize_images(pool.x, size)
    return _RESIZED[(pool.name, size)]


def _activations(pool: Pool, s: Settings, depth: int):
    """Activations of every pool image below the top ``depth`` blocks, and the seconds they took.

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
            acts, cost = extract_features(bottom, _images(pool, s.image_size)), 0.0
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
    acts, cost = _activations(pool, s, 0)
    return acts.mean(axis=(1, 2)), cost


def frozen_pass_seconds(dataset: str, s: Settings) -> float:
    """Seconds spent once computing the frozen activations that ``s``'s fine tuning and features use."""
    pool = load_pool(dataset)
    deep = _activations(pool, s, s.max_depth)[1]
    return deep + sum(_activations(pool, s, d)[1] - deep for d in {0, s.depth} if d != s.max_depth)


# --------------------------------------------------------------------------- #
# Models: built with explicit seeds, reused through training.compiled_model
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


def _fit(model, x, y, xv, yv, max_epochs: int, patience: int, batch_size: int, seed: int,
         reduce_lr: bool = False) -> dict:
    """Train until the validation loss stops improving (best weights restored)."""
    import keras

    callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)]
    if reduce_lr:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                                           patience=max(2, patience // 3)))
    t0 = time.perf_counter()
    train, steps = seeded_batches(x, y, batch_size, seed, max_epochs)
    hist = model.fit(train, steps_per_epoch=steps, validation_data=validation_batches(xv, yv), epochs=max_epochs, verbose=0,
                     callbacks=callbacks, shuffle=False)
    losses = hist.history["val_loss"]
    return {"epochs": len(losses), "best_epoch": int(np.argmin(losses)) + 1,
            "seconds": time.perf_counter() - t0, "capped": len(losses) == max_epochs}


def _predict(model, x) -> np.ndarray:
    return np.argmax(model.predict(x, batch_size=256, verbose=0), axis=1)


def _subsets(pool: Pool, fold: Fold, per_class: int | None, seed: int):
    """Training images (``per_class`` of each class, or all) and validation of at most as many per class."""
    tr = fold.train[per_class_indices(pool.y[fold.train], per_class, seed)]
    va = fold.val
    if per_class is not None:
        cap = min(per_class, int(np.bincount(pool.y[va]).min()))
        va = va[per_class_indices(pool.y[va], cap, seed)]
    return tr, va


_HEADS: dict = {}  # stage-1 heads, reused as fine tuning's starting point


def run_method(dataset: str, method: str, fold: Fold, s: Settings, per_class: int | None = None,
               seed: int = 0) -> dict:
    """Train ``method`` on ``fold`` (``per_class`` labelled images of each class, or all) and score its test fold.

    Returns one record: the run's settings, ``n_train``, ``n_val``, ``epochs``,
    ``best_epoch``, ``capped`` (the epoch cap ended the run), ``seconds``
    (training; fine tuning includes its stage-1 head), ``trainable_params``,
    train/val/test accuracy, ``test_index`` (pool indices) and ``test_pred``
    (predicted classes, one digit per test image).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    pool = load_pool(dataset)
    k, y = len(pool.class_names), pool.y
    tr, va = _subsets(pool, fold, per_class, seed)
    te = fold.test
    if method == "scratch":
        x = _images(pool, s.scratch_image_size)
        model = compiled_model(("scratch", x.shape[1:], k, seed), lambda: scratch_cnn(x.shape[1:], k, seed),
                               s.head_learning_rate)
        info = _fit(model, x[tr], y[tr], x[va], y[va], s.max_epochs_scratch, s.patience_scratch, s.batch_size,
                    seed, reduce_lr=True)
        inputs = x
    else:
        f, _ = _features(pool, s)
        head = compiled_model(("head", f.shape[1], k, seed), lambda: _head(f.shape[1], k, seed),
                              s.head_learning_rate)
        hkey = (dataset, fold.fold, per_class, seed, s.backbone, s.image_size, s.head_learning_rate,
                s.max_epochs_head, s.patience, s.batch_size)
        if hkey in _HEADS:  # fine tuning's stage 1 is the feature-extraction run of the same fold and seed
            weights, info = _HEADS[hkey]
            head.set_weights(weights)
        else:
            info = _fit(head, f[tr], y[tr], f[va], y[va], s.max_epochs_head, s.patience, s.batch_size, seed)
            _HEADS[hkey] = ([w.copy() for w in head.get_weights()], info)
        model, inputs = head, f
        if method == "fine_tuning":
            stage1 = head.get_layer("logits").get_weights()
            acts, _ = _activations(pool, s, s.depth)
            base = _base(s.backbone, s.image_size)
            model = compiled_model(("fine_tune", s.depth, acts.shape[1:], k, seed + 1),
                                   lambda: build_fine_tune_model(base, s.depth, k, acts.shape[1:], seed=seed + 1)[0],
                                   s.learning_rate, owner=base)
            model.get_layer("logits").set_weights(stage1)  # stage 2 starts from the stage-1 head
            more = _fit(model, acts[tr], y[tr], acts[va], y[va], s.max_epochs_fine_tune, s.patience_fine_tune,
                        s.batch_size, seed + 1)
            info = {**more, "epochs": info["epochs"] + more["epochs"], "seconds": info["seconds"] + more["seconds"],
                    "head_epochs": info["epochs"]}
            inputs = acts
    splits = [("train", tr), ("val", va)] + ([("test", te)] if len(te) else [])
    pred = {name: _predict(model, inputs[idx]) for name, idx in splits}
    acc = {name: float(np.mean(pred[name] == y[idx])) for name, idx in splits}
    return {"dataset": dataset, "method": method, "per_class": per_class, "seed": seed, "fold": fold.fold,
            **asdict(s), "n_train": len(tr), "n_val": len(va), **info,
            "trainable_params": count_params(model)["trainable"],
            "train_accuracy": acc["train"], "val_accuracy": acc["val"], "test_accuracy": acc.get("test", float("nan")),
            "test_index": te.tolist(), "test_pred": "".join(str(int(p)) for p in pred.get("test", []))}


# --------------------------------------------------------------------------- #
# The plan: selection first (validation only), then every method
# --------------------------------------------------------------------------- #
def _run_key(r: dict) -> tuple:
    return (r["stage"], r["dataset"], r["method"], r["per_class"], r["seed"], r["depth"], r["learning_rate"])


def choose_setting(rows: list[dict]) -> dict:
    """Fine tuning's (depth, learning rate) from selection records, by the one-standard-error rule.

    For each setting: mean validation accuracy over the seeds (folds) and its
    standard error. Among the settings whose mean is within one SE of the
    best mean, the cheapest wins: the fewest blocks, then the rate nearest the
    best setting's. Returns ``{"depth", "learning_rate", "table", "wins"}``;
    ``wins`` counts how often each setting was best on a single seed.
    """
    settings = sorted({(r["depth"], r["learning_rate"]) for r in rows})
    table = []
    for depth, lr in settings:
        acc = np.array([r["val_accuracy"] for r in rows if (r["depth"], r["learning_rate"]) == (depth, lr)])
        table.append({"depth": depth, "learning_rate": lr, "mean": float(acc.mean()),
                      "se": float(acc.std(ddof=1) / np.sqrt(len(acc))) if len(acc) > 1 else 0.0, "n": len(acc)})
    best = max(table, key=lambda t: (t["mean"], -t["depth"], -t["learning_rate"]))
    near = [t for t in table if t["mean"] >= best["mean"] - best["se"]]
    pick = min(near, key=lambda t: (t["depth"], abs(np.log10(t["learning_rate"] / best["learning_rate"]))))
    wins: dict = {}
    for seed in sorted({r["seed"] for r in rows}):
        mine = [r for r in rows if r["seed"] == seed]
        top = max(mine, key=lambda r: (r["val_accuracy"], -r["depth"], -r["learning_rate"]))
        wins[(top["depth"], top["learning_rate"])] = wins.get((top["depth"], top["learning_rate"]), 0) + 1
    return {"depth": pick["depth"], "learning_rate": pick["learning_rate"], "best": best, "table": table,
            "wins": wins}


def plan(dataset: str, records: list[dict] | None = None) -> list[dict]:
    """The runs of ``dataset`` as ``{"stage", "method", "per_class", "seed", "depth", "learning_rate"}``.

    Stage ``"select"``: every grid setting of fine tuning at the largest size
    on every seed, scored on validation only (no test predictions). Stage
    ``"compare"``: every method, size and seed, fine tuning at the setting
    :func:`choose_setting` picks from the selection ``records`` (it is only
    known once they exist, so without them the plan has the selection stage only).
    """
    d = DESIGN[dataset]
    depths, rates = d["grid"]
    top = d["sizes"][-1]
    runs = [dict(stage="select", dataset=dataset, method="fine_tuning", per_class=top, seed=seed, depth=depth,
                 learning_rate=lr) for seed in d["select_seeds"] for depth in depths for lr in rates]
    chosen = [r for r in records or [] if r["stage"] == "select" and r["dataset"] == dataset]
    if len(chosen) < len(runs):
        return runs
    pick = choose_setting(chosen)
    s = d["settings"]
    for size in d["sizes"]:
        for seed in d["seeds"]:
            for method in METHODS:
                ft = method == "fine_tuning"
                runs.append(dict(stage="compare", dataset=dataset, method=method, per_class=size, seed=seed,
                                 depth=pick["depth"] if ft else s.depth,
                                 learning_rate=pick["learning_rate"] if ft else s.learning_rate))
    return runs


def _environment() -> dict:
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "machine": platform.machine(), "cpu": _cpu_name(),
            "threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1")}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def default_results_path() -> Path:
    """``notebooks/results/comparison.jsonl``: the committed records notebook 03 analyses."""
    from .config import repo_root

    return repo_root() / "notebooks" / "results" / "comparison.jsonl"


def read_records(path: str | os.PathLike | None = None) -> list[dict]:
    """The records of a results file (a half-written last line, from a killed run, is ignored)."""
    path = Path(path or default_results_path())
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # the run that was being written when the process died: it will run again
    return out


def run_plan(datasets=tuple(DESIGN), path: str | os.PathLike | None = None, progress: bool = True,
             limit: int | None = None) -> int:
    """Run every planned run not yet in ``path``, appending one JSON line per run; return how many ran.

    Resumable: a run already recorded is skipped, and each record is written
    and flushed as soon as its run ends, so a killed command loses at most the
    run in progress. ``limit`` stops after that many new runs.
    """
    from tqdm.auto import tqdm

    path = Path(path or default_results_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        with open(path, "a") as f:  # a killed run's half line stays (ignored) but cannot swallow the next
            f.write("\n")
    env, done = _environment(), 0
    for dataset in datasets:
        digest = load_pool(dataset).digest()  # hashed once per dataset, not once per run
        while True:  # twice: the selection stage, then the comparison it decides
            records = [r for r in read_records(path) if r["dataset"] == dataset]
            have = {_run_key(r) for r in records}
            todo = [r for r in plan(dataset, records) if _run_key(r) not in have]
            if not todo:
                break
            s0 = DESIGN[dataset]["settings"]
            for spec in tqdm(todo, desc=f"{dataset}", disable=not progress):
                if limit is not None and done >= limit:
                    return done
                fold = _fold_of(dataset, spec["seed"])
                if spec["stage"] == "select":
                    fold = replace(fold, test=np.zeros(0, int))  # the test fold is not even predicted
                s = replace(s0, depth=spec["depth"], learning_rate=spec["learning_rate"])
                rec = run_method(dataset, spec["method"], fold, s, spec["per_class"], spec["seed"])
                rec.update(stage=spec["stage"], pool_digest=digest, date=time.strftime("%Y-%m-%d"), **env)
                with open(path, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                done += 1
    return done
