"""Training plumbing: feature caches, unfreezing by block, guard rails, fine-tune runs.

The notebooks show the teaching code (``base.trainable = False``, ``compile``,
``fit``); this module holds what would distract from it:

* :func:`extract_features` runs a frozen model once and caches the result
  (in memory and on disk), so a head trains on features in milliseconds.
* :func:`trainable_params_at_depth` counts what unfreezing the top ``N`` blocks
  would train (notebook 02 writes the unfreeze loop itself).
* :func:`split_at_depth` cuts a backbone at a block boundary, so the frozen
  bottom runs once and only the unfrozen top runs in every training step.
* :class:`GuardRails` is a Keras callback that catches the two classic
  fine-tuning mistakes: ``trainable`` changed without recompiling, and
  BatchNorm statistics drifting because it runs in training mode.
* :func:`fine_tune` is one complete, cached fine-tuning run: the function
  notebook 02's depth x learning-rate map and its sliders call.
* :class:`GroupRates` gives each group of weights its own optimizer and learning
  rate (discriminative rates, gradual unfreezing; notebook 04 writes it out first).
"""

from __future__ import annotations

import functools
import gc
import hashlib
import os
import random
import tempfile
import time
import warnings
import weakref
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from .backbones import backbone_blocks
from .config import CacheNotWritableError, CourseWarning, atomic_write, cache_dir

__all__ = [
    "count_params",
    "all_layers",
    "extract_features",
    "extract_features_resumable",
    "model_pieces",
    "run_in_pieces",
    "split_at_depth",
    "GuardRails",
    "EpochTimer",
    "fine_tune",
    "FineTuneResult",
    "FineTuneData",
    "weight_shift",
    "cut_activations",
    "trainable_params_at_depth",
    "build_fine_tune_model",
    "prune_feature_cache",
    "seeded_batches",
    "validation_batches",
    "compile_classifier",
    "compiled_model",
    "forget_compiled_models",
    "release_when_collected",
    "SpilledArrays",
    "GroupRates",
]


# --------------------------------------------------------------------------- #
# Parameter counts
# --------------------------------------------------------------------------- #
def count_params(model) -> dict[str, int]:
    """Return ``{"trainable": n, "non_trainable": m}`` weight counts of a model."""
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    frozen = sum(int(np.prod(v.shape)) for v in model.non_trainable_weights)
    return {"trainable": trainable, "non_trainable": frozen}


# --------------------------------------------------------------------------- #
# Feature cache
# --------------------------------------------------------------------------- #
#: The feature cache's size cap in MB (``TLCOURSE_FEATURE_CACHE_MB`` changes it): after each
#: write the least recently used files go until the folder fits.
FEATURE_CACHE_MB = 2000


def _hash_model(h, model) -> None:
    """Feed what determines a model's output (its graph and weights) into the hash ``h``."""
    # oneDNN on/off (and its instruction-set cap) changes the float rounding of the output
    h.update(repr([os.environ.get(k) for k in ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA")]).encode())
    h.update(repr([(layer.name, layer.__class__.__name__) for layer in model.layers]).encode())
    h.update(repr(model.output.shape).encode())
    for w in model.weights:
        h.update(np.ascontiguousarray(w.numpy()).tobytes())


def _fingerprint(model, x: np.ndarray, batch_size: int) -> str:
    """Hash of what determines a model's output: its graph, weights, the input and the batch
    size (another CPU may round a batch of 32 differently from a batch of 64)."""
    h = hashlib.sha1()
    _hash_model(h, model)
    h.update(repr((x.shape, x.dtype.str, int(batch_size))).encode())
    h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def prune_feature_cache(max_mb: float | None = None, keep: os.PathLike | None = None) -> int:
    """Delete the least recently used cached features until ``cache_dir("features")`` holds at
    most ``max_mb`` MB (default ``$TLCOURSE_FEATURE_CACHE_MB`` or :data:`FEATURE_CACHE_MB`).

    Only this cache's own files are touched: its ``.npy`` files and the ``.partial`` files of
    unfinished :func:`extract_features_resumable` runs; never ``keep`` (a file just written
    for the caller). Returns the number of files deleted.
    """
    if max_mb is None:
        max_mb = float(os.environ.get("TLCOURSE_FEATURE_CACHE_MB") or FEATURE_CACHE_MB)
    files = []
    folder = cache_dir("features")
    for path in [*folder.glob("*.npy"), *folder.glob(".*.partial")]:
        try:
            st = path.stat()
        except OSError:  # removed by another kernel meanwhile
            continue
        files.append((st.st_mtime, st.st_size, path))
    total, removed = sum(size for _, size, _ in files), 0
    for _, size, path in sorted(files):  # oldest use first
        if total <= max_mb * 1e6:
            break
        if keep is not None and path == Path(keep):
            continue
        path.unlink(missing_ok=True)
        total, removed = total - size, removed + 1
    return removed


_PIECES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

#: Images per eager call in :func:`extract_features`. The transient memory of a call grows with
#: it (Lite0's largest layers at 128 px: 64 x 64 x 96 floats per image, 1.5 MB), and the time
#: does not fall with bigger batches on a CPU: over Lite0's frozen bottoms at 128 px, batches of
#: 64 needed 298 MiB above the kernel's memory, batches of 32 about 150 MiB, in the same time
#: (measured, issue 19). On the machine that measured it the features were the same to the
#: last bit at 64, 32 and 16.
EXTRACT_BATCH_SIZE = 32


def model_pieces(model) -> list:
    """``model`` as a chain of smaller models over the same layers, for eager calls.

    An eager call of a Keras functional model keeps the output of every layer until
    the call returns: Lite0 on 64 images at 128 px held 1.4 GiB at once (measured). The
    chain's models share the layers (and weights) of ``model`` and split it wherever one
    tensor alone carries everything the rest needs (between layers of a plain chain and
    between blocks, never inside a residual block). Calling them one after the other
    (:func:`run_in_pieces`) runs the same operations in the same order, so the output is
    the same to the last bit, and each piece's intermediate outputs are freed when it
    returns (0.25 GiB above the kernel's memory instead of 1.4 GiB). A model that is not a
    one-input, one-output functional graph built from an ``Input``, or whose layers the
    split cannot follow, is returned whole: ``[model]``. Kept per model (weakly), so the
    split is made once (about 0.1 s).
    """
    try:
        return _PIECES[model]
    except (KeyError, TypeError):
        pass
    try:
        pieces = _split_into_pieces(model)
    except (AttributeError, ValueError, TypeError):
        pieces = [model]
    try:
        _PIECES[model] = pieces
    except TypeError:
        pass
    return pieces


def _split_into_pieces(model) -> list:
    inputs, outputs = list(getattr(model, "inputs", None) or []), list(getattr(model, "outputs", None) or [])
    if len(inputs) != 1 or len(outputs) != 1:
        return [model]
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    position = {id(inputs[0]): -1}
    last_use = {id(outputs[0]): len(layers)}
    for i, layer in enumerate(layers):
        for t in keras.tree.flatten(layer.input):
            if id(t) not in position:  # not made by an earlier layer of this model: cannot follow
                return [model]
            last_use[id(t)] = i
        for t in keras.tree.flatten(layer.output):
            position[id(t)] = i
    if id(outputs[0]) not in position:
        return [model]
    cuts, live = [inputs[0]], {id(inputs[0])}
    for i, layer in enumerate(layers[:-1]):
        out = keras.tree.flatten(layer.output)
        live = {t for t in live | {id(t) for t in out} if last_use.get(t, -2) > i}
        if len(out) == 1 and live == {id(out[0])}:  # everything after this layer needs only its output
            cuts.append(out[0])
    if len(cuts) == 1:
        return [model]
    cuts.append(outputs[0])
    return [keras.Model(a, b, name=f"{model.name}_piece{k}") for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:]))]


def run_in_pieces(pieces: list, x):
    """Call the models of :func:`model_pieces` one after the other, in inference mode."""
    for piece in pieces:
        x = piece(x, training=False)
    return x


def _check_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int (images per call; extract_features uses "
                         f"{EXTRACT_BATCH_SIZE} by default), got {batch_size!r}")


def extract_features(model, x: np.ndarray, batch_size: int = EXTRACT_BATCH_SIZE, cache: bool = True) -> np.ndarray:
    """Run ``model`` (in inference mode) over ``x`` once and return the outputs.

    With ``cache=True`` the result is saved under ``cache_dir("features")`` by a hash of
    the model's layers, weights, of ``x`` and of ``batch_size``: a second call with the same
    frozen model, images and batch size (in this kernel or after a restart) costs the hash and
    a file read. Any change to the weights or images gives a new key, so a stale cache is never
    used. The folder is capped (:func:`prune_feature_cache`). ``batch_size`` images go through
    the model at a time (default :data:`EXTRACT_BATCH_SIZE`).
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"extract_features expects a batch of images (N, H, W, C); got shape {x.shape}.")
    _check_batch_size(batch_size)
    path = None
    if cache:
        try:
            path = cache_dir("features") / f"{_fingerprint(model, x, batch_size)}.npy"
        except CacheNotWritableError as exc:
            warnings.warn(f"{exc} Until then features are computed again each time.", CourseWarning, stacklevel=2)
    if path is not None and path.exists():
        try:
            out = np.load(path, allow_pickle=False)
            os.utime(path)  # recently used: the last to be pruned
        except (OSError, ValueError):
            out = None  # unreadable cache file: recompute (and overwrite it below)
        if out is not None and out.shape[0] == x.shape[0]:
            return out
    # Eager calls, batch by batch, rather than model.predict: predict's traced graph fuses
    # operations and gives other features (2.8e-5 apart on Lite0 at 128 px, measured), so the
    # features already cached on learners' disks and behind the stored notebooks would change.
    # The calls go piece by piece (run_in_pieces): the same operations, the same numbers,
    # without holding every layer's output of the whole model at once.
    pieces = model_pieces(model)
    outs = [np.asarray(run_in_pieces(pieces, x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
    out = np.concatenate(outs) if outs else np.zeros((0,) + tuple(model.output.shape[1:]), "float32")
    if path is not None:
        try:  # a unique temp file, then os.replace: readers never see half a file
            with atomic_write(path) as f:
                np.save(f, out)
            prune_feature_cache()
        except CacheNotWritableError as exc:
            warnings.warn(f"{exc} Until then features are computed again each time.", CourseWarning, stacklevel=2)
    return out


def extract_features_resumable(model, batches, n: int, key: str, batch_size: int = 64):
    """Features of ``n`` inputs streamed in batches, written batch by batch to the feature cache.

    ``batches(todo)`` must return an iterable of ``(x, readable)`` batches for the input
    indices ``todo`` (sorted; whole batches of ``batch_size``, the last may be shorter);
    ``readable`` marks the inputs that could be read, and the others get NaN features.
    ``key`` says what the inputs are (file names, sizes, times); with the model's graph
    and weights it names the cache file, as :func:`extract_features` does for an array.

    Only one batch is in memory at a time. Each batch goes into a hidden
    ``.KEY.partial`` file (written through a numpy memory map, flushed) and only then is
    marked done in that file's last bytes (one per batch), so a stopped or killed run
    leaves nothing half-trusted: the next call redoes the unmarked batches only. When
    every batch is done the features are copied into ``KEY.npy`` with
    :func:`tlcourse.config.atomic_write` (complete or absent, never half-written) and the
    partial file is removed.

    Returns:
        The path of the complete ``.npy`` file, ``(n, *model output shape[1:])`` float32,
        in input order; read it with ``np.load(path, mmap_mode="r")``.
    """
    _check_batch_size(batch_size)
    h = hashlib.sha1()
    _hash_model(h, model)
    h.update(repr((key, int(n), int(batch_size))).encode())
    folder = cache_dir("features")
    final = folder / f"{h.hexdigest()}.npy"
    shape = (int(n),) + tuple(int(d) for d in model.output.shape[1:])
    if final.is_file():
        try:
            if np.load(final, mmap_mode="r").shape == shape:
                os.utime(final)  # recently used: the last to be pruned
                return final
        except (OSError, ValueError):
            pass  # unreadable: computed again below and replaced
    row = int(np.prod(shape[1:])) * 4
    n_batches = -(-shape[0] // batch_size)
    partial = folder / f".{final.stem}.partial"
    size = shape[0] * row + n_batches
    if not (partial.is_file() and partial.stat().st_size == size):
        with atomic_write(partial) as f:  # zeros, nothing marked done (sparse on most disks)
            f.truncate(size)
    pieces = model_pieces(model)
    with open(partial, "r+b") as f:
        f.seek(shape[0] * row)
        pending = np.flatnonzero(np.frombuffer(f.read(n_batches), np.uint8) == 0)
        todo = [i for b in pending for i in range(b * batch_size, min(shape[0], (b + 1) * batch_size))]
        for b, (x, readable) in zip(pending, batches(todo) if todo else ()):
            out = np.array(run_in_pieces(pieces, x), np.float32)
            out[~np.asarray(readable, bool)] = np.nan
            start = b * batch_size
            if out.shape != (min(shape[0], start + batch_size) - start,) + shape[1:]:
                raise ValueError(f"batch {b} gave features of shape {out.shape}; expected "
                                 f"{min(batch_size, shape[0] - start)} rows of shape {shape[1:]}")
            rows = np.memmap(f, np.float32, "r+", offset=start * row, shape=out.shape)
            rows[:] = out
            rows.flush()
            del rows
            f.seek(shape[0] * row + b)
            f.write(b"\x01")  # done: only after its rows are on disk
            f.flush()
        f.seek(shape[0] * row)
        if np.frombuffer(f.read(n_batches), np.uint8).all():
            with atomic_write(final) as g:
                np.lib.format.write_array_header_1_0(
                    g, {"descr": "<f4", "fortran_order": False, "shape": shape})
                f.seek(0)
                for _ in range(0, shape[0] * row, 1 << 24):
                    g.write(f.read(min(1 << 24, shape[0] * row - f.tell())))
        elif len(todo):
            raise RuntimeError(f"the input gave fewer batches than the {len(pending)} asked for")
    partial.unlink(missing_ok=True)
    prune_feature_cache(keep=final)
    return final


# --------------------------------------------------------------------------- #
# Unfreezing by block
# --------------------------------------------------------------------------- #
def _is_batchnorm(layer) -> bool:
    return isinstance(layer, keras.layers.BatchNormalization)


def all_layers(model) -> list:
    """Every layer of ``model``, nested models' layers included (objects, not names)."""
    out = []
    for layer in model.layers:
        out.append(layer)
        if isinstance(layer, keras.Model):
            out.extend(all_layers(layer))
    return out


def _check_depth(blocks: int, total: int) -> int:
    if isinstance(blocks, bool) or not isinstance(blocks, (int, np.integer)):
        raise TypeError(f"blocks must be a whole number of blocks, got {blocks!r}.")
    if not 0 <= blocks <= total:
        raise ValueError(f"blocks={blocks} is out of range: this backbone has {total} blocks, "
                         f"so choose 0 (feature extraction) to {total} (everything).")
    return int(blocks)


def trainable_params_at_depth(base, blocks: int, train_bn: bool = False) -> int:
    """Trainable parameter count if the top ``blocks`` blocks were unfrozen (no side effects)."""
    block_list = backbone_blocks(base)
    depth = _check_depth(blocks, len(block_list))
    total = 0
    for block in block_list[len(block_list) - depth:] if depth else []:
        for name in block.layers:
            layer = base.get_layer(name)
            if _is_batchnorm(layer) and not train_bn:
                continue
            total += sum(int(np.prod(w.shape)) for w in layer.weights
                         if not _is_batchnorm(layer) or w is layer.gamma or w is layer.beta)
    return total


def split_at_depth(base, blocks: int):
    """Cut ``base`` below its top ``blocks`` blocks: return ``(bottom, top)`` models.

    ``bottom`` maps images to the activations at the cut; ``top`` maps those
    activations to the base's output. Both share layers (and weights) with
    ``base``. With ``blocks=0``, ``top`` is ``None`` and ``bottom`` is the whole
    base. Because the bottom is frozen, its output can be computed once and
    cached (:func:`extract_features`): only the top runs in each training step.
    """
    block_list = backbone_blocks(base)
    depth = _check_depth(blocks, len(block_list))
    if depth == 0:
        return base, None
    if depth == len(block_list):
        cut = base.inputs[0]
        bottom = None
    else:
        cut = base.get_layer(block_list[len(block_list) - depth - 1].output).output
        bottom = keras.Model(base.inputs[0], cut, name=f"{base.name}_bottom{depth}")
    top = keras.Model(cut, base.output, name=f"{base.name}_top{depth}")
    return bottom, top


# --------------------------------------------------------------------------- #
# Guard rails
# --------------------------------------------------------------------------- #
class GuardRails(keras.callbacks.Callback):
    """Keras callback that checks, at the end of the first epoch, that

    * every weight marked trainable moved (if some did not, ``trainable`` was
      changed after ``compile``: Keras silently keeps training the old set
      until you compile again), and
    * no BatchNorm moving statistics changed (if they did, BatchNorm runs in
      training mode and the pretrained statistics are being overwritten).

    It compares the weights before and after the epoch (public Keras API only;
    a whole epoch, so that a head starting at zero, whose first gradients
    reach no earlier layer, is not mistaken for a frozen one). Problems are
    reported as warnings (``strict=True`` raises instead), and kept in
    ``self.problems``.
    """

    def __init__(self, strict: bool = False):
        super().__init__()
        self.strict = strict
        self.problems: list[str] = []
        self.before: list[np.ndarray] | None = None

    def on_train_begin(self, logs=None):
        self.statistics = [v for layer in all_layers(self.model) if _is_batchnorm(layer)
                           for v in (layer.moving_mean, layer.moving_variance)]
        self.watched = list(self.model.trainable_weights)
        self.before = [np.array(v.numpy()) for v in self.watched + self.statistics]
        self.problems = []

    def on_epoch_end(self, epoch, logs=None):
        if self.before is None:
            return
        changed = [not np.array_equal(b, v.numpy()) for b, v in zip(self.before, self.watched + self.statistics)]
        self.before = None  # the first epoch only: cheap
        still = [v for v, c in zip(self.watched, changed) if not c]
        if still:
            self._report(f"{len(still)} of {len(self.watched)} trainable weights are "
                         f"not being trained (e.g. {still[0].path}): `trainable` was changed after "
                         "compile(). Call model.compile(...) again so that they train.")
        drifted = [v for v, c in zip(self.statistics, changed[len(self.watched):]) if c]
        if drifted:
            self._report(f"{len(drifted)} BatchNorm statistics changed (e.g. {drifted[0].path}): BatchNorm is "
                         "running in training mode. Keep BatchNorm layers frozen, or call the base "
                         "with training=False.")

    def _report(self, message: str) -> None:
        self.problems.append(message)
        if self.strict:
            raise RuntimeError(message)
        warnings.warn(message, CourseWarning, stacklevel=2)


class EpochTimer(keras.callbacks.Callback):
    """Keras callback that records each epoch's wall-clock seconds in ``self.times``."""

    def __init__(self):
        super().__init__()
        self.times: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)

    @property
    def median(self) -> float:
        """Median epoch time in seconds (robust to the slower first, tracing epoch)."""
        return float(np.median(self.times)) if self.times else float("nan")


# --------------------------------------------------------------------------- #
# A complete fine-tuning run
# --------------------------------------------------------------------------- #
@dataclass
class FineTuneData:
    """Images and labels for a fine-tuning run (float32 0..255 NHWC, int labels)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int


class SpilledArrays(Sequence):
    """Arrays kept in an unnamed file on disk instead of in memory, read back one by one.

    A sequence (``len``, indexing, iteration) of copies of ``arrays``, written with
    ``np.save`` to a temporary file in the course cache (``cache_dir("spill")``, on disk
    where ``/tmp`` may be memory): a result kept for later costs no memory until it is used.
    The file has no name and goes when the object does. Used for the trained weights a
    :class:`FineTuneResult` keeps, 2-14 MB each (a notebook keeps dozens of results).
    """

    def __init__(self, arrays):
        arrays = [np.array(a) for a in arrays]
        self._file, self._offsets, self._arrays = None, [], arrays
        try:
            spill = tempfile.TemporaryFile(dir=cache_dir("spill"))
            for array in arrays:
                self._offsets.append(spill.tell())
                np.save(spill, array, allow_pickle=False)
        except (CacheNotWritableError, OSError):   # a full or read-only disk: keep them in memory
            self._offsets = []
            return
        self._file, self._arrays = spill, None
        weakref.finalize(self, spill.close)   # closed (and so deleted) with this object, quietly

    def __len__(self) -> int:
        return len(self._offsets) if self._file is not None else len(self._arrays)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if self._file is None:
            return self._arrays[index].copy()
        self._file.seek(self._offsets[index])
        return np.load(self._file, allow_pickle=False)


@dataclass
class FineTuneResult:
    """The outcome of :func:`fine_tune`."""

    blocks: int
    learning_rate: float
    epochs: int
    history: dict[str, list[float]]
    train_accuracy: float
    val_accuracy: float
    test_accuracy: float
    seconds: float          # training time (fit only)
    cache_seconds: float    # time spent computing activations at the cut (0 when cached)
    trainable_params: int
    trained_blocks: list[str]
    shift: dict[str, float] = field(default_factory=dict)  # block -> relative weight change
    weights: Sequence = field(default=None, repr=False)  # the trained model's weights at the end of this run (on disk)
    build: object = field(default=None, repr=False)  # builds an untrained model of the same shape
    trained_in: object = field(default=None, repr=False)  # weak reference to the compiled model that trained

    @property
    def reused_model(self):
        """The compiled model this run trained in, while :func:`compiled_model` still keeps it, else None.

        Later runs with the same graph train in it too (its weights are then theirs),
        so use :attr:`model` for this run's trained model. The result holds it only
        weakly: a kept result does not keep a compiled model (and its traced steps) alive.
        """
        return None if self.trained_in is None else self.trained_in()

    @property
    def model(self):
        """The trained model (a copy of its own, uncompiled), built on first access.

        Its input is the **activations at the cut** (see :func:`cut_activations`),
        not images: ``result.model.predict(cut_activations(base, result.blocks,
        data)[2])`` scores the test images. At depth 0 the input is the frozen
        base's output. Later :func:`fine_tune` calls do not change it.
        """
        if self.__dict__.get("_model") is None:
            copy = self.build()
            copy.set_weights(list(self.weights))
            self.__dict__["_model"] = copy
        return self.__dict__["_model"]

    def summary(self) -> str:
        """One line for a notebook: depth, learning rate, accuracies."""
        return (f"depth {self.blocks:2d}  lr {self.learning_rate:.0e}  epochs {self.epochs}  "
                f"train {self.train_accuracy:.3f}  val {self.val_accuracy:.3f}  test {self.test_accuracy:.3f}")


def _accuracy(model, x, y) -> float:
    """Accuracy of a compiled ``model`` on ``(x, y)`` (the share of top-1 hits); NaN when empty.

    ``model.predict_on_batch`` batch by batch: the same traced inference step as
    ``evaluate``, without building a dataset per call (a Train click's three
    accuracies took 0.7 s instead of 1.6-1.8 s, measured side by side). Batches of
    256 for small inputs (activations cut deep in the network), of 32 for big ones:
    the whole network on 128-px images at 256 per batch peaked about 1 GiB above the
    kernel's memory (issue 19), at 32 it stays within the training step's own.
    """
    x, y = np.asarray(x), np.asarray(y)
    if not len(x):
        return float("nan")
    batch = 256 if np.prod(x.shape[1:]) <= 16384 else 32
    hits = sum(int(np.sum(np.argmax(model.predict_on_batch(x[i:i + batch]), axis=-1) == y[i:i + batch]))
               for i in range(0, len(x), batch))
    return hits / len(x)


#: Layer attributes holding the weights the forgetting meter compares: convolution,
#: depthwise/separable convolution and dense kernels. Biases, BatchNorm's
#: gamma/beta (frozen in fine tuning) and its moving statistics are left out.
KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel")


def weight_shift(before: dict[str, list[np.ndarray]], model, blocks) -> dict[str, float]:
    """The "forgetting meter": how far each block's kernels moved, relative to where they started.

    For every block, ``||K1 - K0|| / ||K0||`` over all its convolution,
    depthwise and dense kernels taken together (Frobenius norms; ``K0`` before
    training, ``K1`` after). BatchNorm layers are left out entirely: their
    moving statistics are not trained by the optimizer and their gamma/beta
    stay frozen in fine tuning, and including their large values would dilute
    the change. Biases are left out too. A value of 0.01 means the kernels
    moved by 1 % of their own size; 1.0 means the change is as large as the
    pretrained kernels themselves.

    ``before`` maps layer names to ``layer.get_weights()`` before training;
    ``model`` holds layers of the same names after training; ``blocks`` is the
    block list from :func:`tlcourse.backbones.backbone_blocks`. Blocks whose
    layers are not in ``model`` or ``before`` (frozen, not copied) get 0.
    """
    names = {layer.name: layer for layer in model.layers}
    out: dict[str, float] = {}
    for block in blocks:
        num = den = 0.0
        for name in block.layers:
            layer = names.get(name)
            if layer is None or name not in before or _is_batchnorm(layer):
                continue
            kernels = [getattr(layer, attr, None) for attr in KERNEL_NAMES]
            for var, w0, w1 in zip(layer.weights, before[name], layer.get_weights()):
                if any(var is k for k in kernels):
                    w0 = np.asarray(w0, dtype="float64")
                    num += float(np.sum((np.asarray(w1, dtype="float64") - w0) ** 2))
                    den += float(np.sum(w0 ** 2))
        out[block.name] = (num ** 0.5) / (den ** 0.5) if den > 0 else 0.0
    return out


def cut_activations(base, blocks: int, data: FineTuneData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Activations of the frozen part below the top ``blocks`` blocks, for train/val/test.

    Computed once per (weights, images) and cached by :func:`extract_features`.
    At full depth nothing is frozen, so the images themselves are returned.
    """
    bottom, _ = split_at_depth(base, blocks)
    if bottom is None:
        return data.x_train, data.x_val, data.x_test
    return tuple(extract_features(bottom, x) for x in (data.x_train, data.x_val, data.x_test))


def build_fine_tune_model(base, blocks: int, num_classes: int, input_shape: tuple[int, ...],
                          train_bn: bool = False, seed: int = 0):
    """The model :func:`fine_tune` trains: a copy of the top ``blocks`` blocks, then a head.

    It maps activations at the cut (shape ``input_shape``, see
    :func:`cut_activations`) to logits: the copied top blocks (BatchNorm frozen
    and in inference mode unless ``train_bn``), global average pooling,
    dropout 0.2 and a dense layer named ``"logits"``. ``base`` is not modified.
    ``seed`` seeds the dropout and the dense layer's initial weights, so the
    model does not depend on (or change) any global random state.
    Returns ``(model, top_copy, trained_block_names)``; ``top_copy`` is
    ``None`` at depth 0. Not compiled.
    """
    with _python_random_kept():
        return _build_fine_tune_model(base, blocks, num_classes, input_shape, train_bn, seed)


@contextmanager
def _python_random_kept():
    """Give Python's ``random`` state back: Keras 3 draws a default seed from it for every
    initializer built without one (``clone_model`` rebuilds layers from their configs), and
    a learner's seeded ``random`` calls should not depend on whether a model was built."""
    state = random.getstate()
    try:
        yield
    finally:
        random.setstate(state)


def _build_fine_tune_model(base, blocks, num_classes, input_shape, train_bn, seed):
    block_list = backbone_blocks(base)
    depth = _check_depth(blocks, len(block_list))
    _, top = split_at_depth(base, depth)
    inputs = keras.Input(tuple(input_shape))
    x = inputs
    top_copy, trained = None, []
    if top is not None:
        top_copy = keras.models.clone_model(top)
        top_copy.set_weights(top.get_weights())
        trained = [b.name for b in block_list[len(block_list) - depth:]]
        for layer in top_copy.layers:
            layer.trainable = not (_is_batchnorm(layer) and not train_bn)
        x = top_copy(x, training=None if train_bn else False)
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(0.2, seed=seed, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=keras.initializers.GlorotUniform(seed),
                                 name="logits")(x)
    return keras.Model(inputs, outputs, name=f"finetune_depth{depth}"), top_copy, trained


def compile_classifier(model, learning_rate: float):
    """Compile ``model`` (logits out) with Adam, sparse cross-entropy and accuracy; return it.

    The course's one compile for a classifier: the head of feature extraction,
    fine tuning and the scratch CNN of notebook 03 all use it. The accuracy is the
    metric ``"accuracy"`` resolves to, made here rather than inside the first training
    step: Keras makes a metric named by a string while ``fit`` traces its step, and a
    ``tf.function`` that creates variables while tracing traces itself a second time, so
    the first ``fit`` of every new model paid for two traces and kept both in memory.
    """
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    return model


class _Anyone:
    """The owner of reused models that belong to no base (heads, the scratch CNN)."""


_NO_OWNER = _Anyone()
#: Compiled models kept for reuse, per owner (weakly: they go when their base goes) and key,
#: with the values of every variable they start from. Compiling and tracing a new model costs
#: about 2.5 s per fine_tune call on 2 cores (2.8 s reused vs 5.4 s rebuilt at depth 1, measured
#: side by side; tests/benchmarks/README.md); restoring the variables, milliseconds.
_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def forget_compiled_models() -> None:
    """Drop every model :func:`compiled_model` keeps, so the next call builds and compiles anew.

    Also runs Python's garbage collector: a Keras model is a web of reference cycles, so its
    memory (0.1-0.3 GiB with its traced steps) is freed only by a collection (about a second).
    """
    _COMPILED.clear()
    gc.collect()


def _empty_variables(variables) -> None:
    import tensorflow as tf

    try:
        with tf.init_scope():   # eagerly, even when the collection happens while a step is traced
            for var in variables:
                tf.raw_ops.AssignVariableOp(resource=var.handle, value=tf.zeros((0,), var.dtype),
                                            validate_shape=False)
    except Exception:  # noqa: BLE001 - a best-effort release must never break the cell that collected
        pass


def release_when_collected(model) -> None:
    """Free the memory of ``model``'s variables and its optimizer's once ``model`` is garbage.

    Only for a model whose variables are its own (no layer shared with a model still in
    use). TensorFlow keeps every traced training step: the Keras optimizer sums the
    gradients through ``tf.distribute``, which registers a custom gradient per trace in a
    global registry that nothing clears, and the traced step holds its variables' handles.
    So a dropped model's weights and Adam moments stayed in memory (0.2 GiB per ``fit`` of a
    17M-parameter model, measured). When ``model`` is collected, each of those variables is
    emptied in place (the public ``tf.raw_ops.AssignVariableOp``); only the graph stays.
    """
    variables = [getattr(v, "value", v) for v in model.variables]
    if getattr(model, "optimizer", None) is not None:
        variables += [getattr(v, "value", v) for v in model.optimizer.variables]
    weakref.finalize(model, _empty_variables, variables).atexit = False


def compiled_model(key: tuple, build, learning_rate: float, owner=None, keep: int | None = None):
    """``build()`` compiled (:func:`compile_classifier`), in its starting state, reused across calls.

    The course's one way to reuse a compiled model. The first call with ``key``
    builds and compiles the model, builds its optimizer, and records the value
    of every variable of the model (weights, dropout seed states) and of the
    optimizer (moments, step count). A later call with the same ``key`` assigns
    those values back (public ``variables`` / ``assign`` only), so the run
    starts exactly as on a newly built model, without tracing the training step
    again. ``key`` must hold everything ``build`` depends on, the seed
    included; ``owner`` (for example the base a model copies) ties the stored
    model's lifetime to that object. The learning rate is then set with the
    optimizer's public setter. ``keep`` bounds how many models are kept for
    ``owner``: the least recently used ones beyond it are dropped (each holds its
    traced steps, 0.1-0.2 GiB for a fine-tuning model), so a long session of
    fine-tuning runs at many depths does not grow without end. ``build`` must make a
    model whose variables are its own (new layers or copies, never the layers of a model
    still in use): once a stored model is dropped and collected, its variables are emptied
    (:func:`release_when_collected`).
    """
    models = _COMPILED.setdefault(_NO_OWNER if owner is None else owner, {})
    if key not in models:
        model = compile_classifier(build(), learning_rate)
        model.optimizer.build(model.trainable_variables)
        release_when_collected(model)
        models[key] = (model, [v.numpy() for v in model.variables], [v.numpy() for v in model.optimizer.variables])
    models[key] = models.pop(key)  # the most recently used last
    if keep is not None:
        for old in list(models)[:-max(1, int(keep))]:
            del models[old]
    model, variables, optimizer_variables = models[key]
    for var, value in zip(model.variables, variables):
        var.assign(value)
    for var, value in zip(model.optimizer.variables, optimizer_variables):
        var.assign(value)
    model.optimizer.learning_rate = float(learning_rate)
    return model


#: How many compiled fine-tuning models :func:`fine_tune` keeps per base (the most recently
#: used): a run at a kept depth skips the second or two of tracing; each kept model holds
#: 0.1-0.2 GiB. A depth × learning-rate grid that loops over rates within a depth reuses all.
KEEP_FINE_TUNE_MODELS = 2


def _fine_tune_model(base, depth: int, input_shape: tuple, num_classes: int, train_bn: bool, seed: int):
    """``(model, top_copy, trained_blocks, build)`` from :func:`compiled_model`, with the top copied
    from ``base`` again; ``build()`` makes an untrained model of the same graph."""
    build = functools.partial(_untrained_copy, base, depth, num_classes, tuple(input_shape), train_bn, seed)
    model = compiled_model((depth, tuple(input_shape), num_classes, train_bn, seed), build,
                           1e-3, owner=base, keep=KEEP_FINE_TUNE_MODELS)
    tops = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    top_copy = tops[0] if tops else None
    if top_copy is not None:  # the base's weights may have changed since the model was recorded
        for layer in top_copy.layers:
            if layer.weights:
                layer.set_weights(base.get_layer(layer.name).get_weights())
    block_list = backbone_blocks(base)
    return model, top_copy, [b.name for b in block_list[len(block_list) - depth:]] if depth else [], build


def seeded_batches(x, y, batch_size: int, seed: int, epochs: int):
    """``(dataset, steps_per_epoch)``: ``epochs`` epochs of ``(x, y)`` batches, each epoch in a new order.

    The orders are drawn from ``seed`` alone (NumPy's generator), so a run's
    batches do not depend on (or change) TensorFlow's global random state, and
    they are the same every time: pass both to ``model.fit(dataset,
    steps_per_epoch=steps, epochs=epochs)``, which then reads one epoch's
    batches per epoch. (A ``keras.utils.PyDataset`` that reshuffles in
    ``on_epoch_end`` is not: Keras may fetch the next epoch's first batches
    before calling it, so the order depended on thread timing; measured.) The
    dataset does not autotune (:func:`_without_autotune`): with it, ``fit`` could
    return seconds after its last epoch; pass :func:`validation_batches` as
    ``validation_data`` for the same reason.

    Only the dataset holds ``x`` and ``y``: TensorFlow keeps the generator of every
    ``from_generator`` dataset for the rest of the session, and with it the arrays it
    reads (the activations at the cut, a few MB per ``fit``), so the generator reaches
    them through a holder that is emptied when the dataset is collected.
    """
    import tensorflow as tf

    x, y = np.asarray(x), np.asarray(y)
    batch_size = int(batch_size)
    steps = -(-len(x) // batch_size)
    rng = np.random.default_rng(seed)
    held = {"x": x, "y": y}

    def batches():
        if not held:
            raise RuntimeError("seeded_batches: this dataset was deleted; keep it while its batches are read.")
        xs, ys = held["x"], held["y"]
        for _ in range(int(epochs)):
            order = rng.permutation(len(xs))
            for i in range(steps):
                idx = np.sort(order[i * batch_size:(i + 1) * batch_size])
                yield xs[idx], ys[idx]

    spec = (tf.TensorSpec((None,) + x.shape[1:], tf.as_dtype(x.dtype)), tf.TensorSpec((None,), tf.as_dtype(y.dtype)))
    dataset = _without_autotune(tf.data.Dataset.from_generator(batches, output_signature=spec))
    weakref.finalize(dataset, held.clear).atexit = False
    return dataset, steps


def validation_batches(x, y, batch_size: int = 32):
    """``(x, y)`` in batches, in order, for ``model.fit(..., validation_data=...)``.

    The batches Keras makes of arrays (32 by default), as a dataset without tf.data's
    autotuning; see :func:`seeded_batches`' note on why.
    """
    import tensorflow as tf

    return _without_autotune(tf.data.Dataset.from_tensor_slices((np.asarray(x), np.asarray(y))).batch(int(batch_size)))


def _without_autotune(dataset):
    """``dataset`` with tf.data's autotuning off (public ``tf.data.Options``).

    An autotuned pipeline runs a background thread that sleeps for longer and
    longer periods; when a ``fit`` that read one iterator for all its epochs
    returns, destroying the iterator waited for that thread to wake: the fit
    returned up to 2.3 s after its last epoch (a Train click of 02 at depth 3
    took 5.1 s instead of 3.1 s, one click in two; seen with ``gdb`` in
    ``RootDataset::Iterator::~Iterator``). The course's batches are arrays in
    memory, so there is nothing for autotuning to tune.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def fine_tune(base, head_weights, data: FineTuneData, blocks: int, learning_rate: float = 1e-4,
              epochs: int = 5, batch_size: int = 32, seed: int = 0, train_bn: bool = False,
              guard: bool = True, activations: tuple | None = None) -> FineTuneResult:
    """Fine-tune the top ``blocks`` blocks of ``base`` with a head, from cached activations.

    The stage-1 head (``head_weights``: ``[kernel, bias]`` of a dense layer
    trained on the frozen base's pooled features) is the starting point, as in
    the two-stage recipe. The frozen bottom runs once (cached), so each epoch
    costs only the top blocks. ``base`` itself is never modified: the top is a
    fresh copy. No augmentation (cached activations cannot be augmented).
    ``train_bn=True`` lets BatchNorm run in training mode (the classic mistake,
    for demonstrations). ``activations`` may pass precomputed
    ``(train, val, test)`` activations at the cut (see :func:`cut_activations`).
    ``seed`` alone fixes the run (dropout, the head's initial weights when
    ``head_weights`` is None, the order of the batches): the global random
    state is neither read nor changed.
    """
    if not (isinstance(learning_rate, (int, float)) and learning_rate > 0 and np.isfinite(learning_rate)):
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}; "
                         "fine tuning usually uses 1e-5 to 1e-3.")
    if int(epochs) < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs!r}.")
    block_list = backbone_blocks(base)
    depth = _check_depth(blocks, len(block_list))

    t0 = time.perf_counter()
    acts = cut_activations(base, depth, data) if activations is None else activations
    cache_seconds = time.perf_counter() - t0

    model, top_copy, trained, build = _fine_tune_model(base, depth, acts[0].shape[1:], data.num_classes,
                                                       train_bn, seed)
    if head_weights is not None:
        model.get_layer("logits").set_weights(head_weights)
    model.optimizer.learning_rate = float(learning_rate)
    before = {layer.name: layer.get_weights() for layer in (top_copy.layers if top_copy is not None else [])}
    callbacks = [GuardRails()] if guard and not train_bn else []
    t1 = time.perf_counter()
    train, steps = seeded_batches(acts[0], data.y_train, batch_size, seed, epochs)
    hist = model.fit(train, steps_per_epoch=steps, validation_data=validation_batches(acts[1], data.y_val),
                     epochs=int(epochs),
                     verbose=0, callbacks=callbacks, shuffle=False)
    seconds = time.perf_counter() - t1
    shift = weight_shift(before, top_copy, block_list) if top_copy is not None else {}
    return FineTuneResult(
        blocks=depth, learning_rate=float(learning_rate), epochs=int(epochs),
        history={k: [float(v) for v in vals] for k, vals in hist.history.items()},
        train_accuracy=_accuracy(model, acts[0], data.y_train),
        val_accuracy=_accuracy(model, acts[1], data.y_val),
        test_accuracy=_accuracy(model, acts[2], data.y_test),
        seconds=seconds, cache_seconds=cache_seconds,
        trainable_params=count_params(model)["trainable"], trained_blocks=trained, shift=shift,
        weights=SpilledArrays(model.get_weights()), trained_in=weakref.ref(model), build=build)


def _untrained_copy(base, depth, num_classes, input_shape, train_bn, seed):
    return build_fine_tune_model(base, depth, num_classes, input_shape, train_bn, seed)[0]


# --------------------------------------------------------------------------- #
# One learning rate per group of weights
# --------------------------------------------------------------------------- #
def _check_rate(rate, name: str) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) or not (np.isfinite(rate) and rate >= 0):
        raise ValueError(f"the learning rate of group {name!r} must be a number >= 0 (0 freezes the group), got {rate!r}.")
    return float(rate)


class GroupRates(keras.Model):
    """``net`` trained with one optimizer, and so one learning rate, per group of its weights.

    Keras 3 has no per-layer learning rate. This model wraps ``net`` and its
    ``train_step`` computes the gradients of all trainable weights at once, then
    hands each group's gradients to that group's own optimizer. ``groups`` maps a
    name to a list of ``net``'s trainable weights; every trainable weight must be
    in exactly one group (checked: set ``trainable`` before building this).
    ``rates`` gives each group's starting rate (a list in the order of ``groups``,
    or a dict), ``optimizer`` the optimizer class (default Adam). Scaling the
    gradients instead would not work with Adam, which divides by the gradient's
    own running size. :meth:`set_rates` changes the rates between ``fit`` calls
    without retracing; a rate of 0 keeps a group where it is (Adam and SGD
    without weight decay), which is how gradual unfreezing needs no recompile.
    Compile it with a loss only: ``model.compile(loss=...)``, then ``fit``.
    """

    def __init__(self, net, groups: dict, rates=None, optimizer=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(groups, dict) or not groups:
            raise ValueError("groups must be a non-empty dict {name: [weights]}, e.g. "
                             "{'head': dense.trainable_weights, 'block_15': [...]}.")
        position = {id(w): i for i, w in enumerate(net.trainable_weights)}
        owner: dict[int, str] = {}
        self.group_names = list(groups)
        self._indices = []
        for name, weights in groups.items():
            idx = []
            for w in weights:
                if id(w) in owner:
                    raise ValueError(f"weight {w.path} is in group {owner[id(w)]!r} and in group {name!r}: "
                                     "give each weight one group.")
                if id(w) not in position:
                    raise ValueError(f"weight {w.path} of group {name!r} is not a trainable weight of the model; "
                                     "set trainable before building GroupRates, and list only the model's weights.")
                owner[id(w)] = name
                idx.append(position[id(w)])
            self._indices.append(tuple(idx))
        missing = [w.path for w in net.trainable_weights if id(w) not in owner]
        if missing:
            raise ValueError(f"{len(missing)} trainable weights are in no group (first: {missing[0]}); "
                             "add them to a group, or set their layer's trainable to False.")
        self.net = net
        make = optimizer or keras.optimizers.Adam
        self.group_optimizers = [make(learning_rate=1e-3) for _ in self.group_names]
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.set_rates(rates if rates is not None else [1e-3] * len(self.group_names))

    def call(self, x, training=False):
        return self.net(x, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker]

    def rates(self) -> dict[str, float]:
        """The current learning rate of each group."""
        return {n: float(np.asarray(o.learning_rate)) for n, o in zip(self.group_names, self.group_optimizers)}

    def set_rates(self, rates) -> None:
        """Set each group's rate: a list in the order of the groups, or a dict {name: rate} (others kept)."""
        if isinstance(rates, dict):
            unknown = set(rates) - set(self.group_names)
            if unknown:
                raise ValueError(f"unknown groups {sorted(unknown)}; the groups are {self.group_names}.")
            pairs = list(rates.items())
        else:
            rates = list(rates)
            if len(rates) != len(self.group_names):
                raise ValueError(f"{len(rates)} rates for {len(self.group_names)} groups ({self.group_names}).")
            pairs = list(zip(self.group_names, rates))
        for name, rate in pairs:
            self.group_optimizers[self.group_names.index(name)].learning_rate = _check_rate(rate, name)

    def train_step(self, data):
        import tensorflow as tf

        x, y = data[0], data[1]
        weights = self.net.trainable_weights
        with tf.GradientTape() as tape:
            loss = self.compute_loss(y=y, y_pred=self(x, training=True))
        gradients = tape.gradient(loss, weights)
        for optimizer, idx in zip(self.group_optimizers, self._indices):
            optimizer.apply([gradients[i] for i in idx], [weights[i] for i in idx])
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}
