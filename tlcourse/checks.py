"""Checks for the notebooks' code exercises: they say what is wrong and how to fix it.

Every code exercise ends with a check cell that passes the learner's objects to one
:class:`Exercise` of this module::

    checks.unfreeze(model5, base, head)     # checks the answer
    checks.unfreeze.hint()                   # one step, not the answer

A correct answer prints one line starting with ``✓`` that names what was checked. A wrong
or missing answer raises :class:`CheckFailed`, an ``AssertionError`` that Jupyter shows as
a short message (what is wrong, what to do) instead of a traceback; a variable of the wrong
type, a model not built yet or a missing file get such a message too, never an error from
inside the check. The nbgrader autograder runs the same cells, so a failed check is a
failed test cell there (zero points for it) and its message is the feedback.

The checks inspect the objects (layers, flags, shapes) and, where a number must be
recomputed, run a few images forward: they never train, and answer in well under 2 s.
"""

from __future__ import annotations

import inspect
import io
import math
import os
import warnings
from contextlib import redirect_stderr
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from .backbones import backbone_blocks
from .training import all_layers, trainable_params_at_depth

__all__ = ["CheckFailed", "Exercise", "EXERCISES", "deeper_head", "smaller_images", "own_pictures",
           "unfreeze", "article_recipe", "predict_file", "power_images", "drop_seed", "scaled_gradients",
           "cam_classes", "forgetting_by_class"]


class CheckFailed(AssertionError):
    """A check found a mistake; the message says what is wrong and what to do.

    In Jupyter it is shown as the message alone (IPython's ``_render_traceback_`` hook):
    the traceback would only point into this module, not at the learner's code.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[31m✗ {self}\x1b[0m"]


class _Mistake(Exception):
    """Raised inside a check function; :class:`Exercise` turns it into :class:`CheckFailed`."""


@dataclass(frozen=True)
class Exercise:
    """One code exercise of a notebook: call it to check an answer, ``.hint()`` for a hint.

    Attributes:
        notebook: the notebook's number (``"02"``).
        number: the exercise's number in that notebook.
        title: a few words naming the exercise.
        usage: how the check cell calls it (shown when it is called wrongly).
        hint_text: one step towards the answer.
        check: the function that inspects the answer: returns the confirmation (what was
            checked) or raises ``_Mistake`` with what is wrong and what to do.
        points: the nbgrader points of the exercise's check cell.
    """

    notebook: str
    number: int
    title: str
    usage: str
    hint_text: str
    check: Callable[..., str] = field(repr=False)
    points: int = 1

    @property
    def label(self) -> str:
        """``"Exercise 1 (notebook 02, unfreeze by hand)"``."""
        return f"Exercise {self.number} (notebook {self.notebook}, {self.title})"

    def __call__(self, *args, **kwargs) -> None:
        """Check an answer: print a confirmation, or raise :class:`CheckFailed` saying what is wrong."""
        try:
            inspect.signature(self.check).bind(*args, **kwargs)
        except TypeError as e:
            raise CheckFailed(f"{self.label}: the check is called as `{self.usage}` ({e}).") from None
        try:
            with warnings.catch_warnings(), redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore")
                confirmation = self.check(*args, **kwargs)
        except _Mistake as e:
            raise CheckFailed(f"{self.label}: {e}") from None
        except Exception as e:  # never a traceback from inside the check
            raise CheckFailed(f"{self.label}: the check could not inspect your answer "
                              f"({type(e).__name__}: {e}). Check that you pass what `{self.usage}` "
                              "names, and ask for a hint with `.hint()`.") from None
        print(f"✓ {self.label}: {confirmation}")

    def hint(self) -> None:
        """Print one step towards the answer (not the answer)."""
        print(f"Hint for {self.label}: {self.hint_text}")


# ---------------------------------------------------------------- shared inspections
def _model(obj, name: str, what: str) -> keras.Model:
    if not isinstance(obj, keras.Model):
        raise _Mistake(f"`{name}` should be a Keras model ({what}), but it is "
                       f"{'None' if obj is None else 'a ' + type(obj).__name__}. Assign the model to `{name}` "
                       "in the cell above and run it.")
    if not obj.built or not getattr(obj, "inputs", None):
        raise _Mistake(f"`{name}` is not built yet: start it with `keras.Input(shape)` (or call it on "
                       "data once) so that Keras knows its input shape.")
    return obj


def _array(obj, name: str, what: str) -> np.ndarray:
    try:
        arr = np.asarray(keras.ops.convert_to_numpy(obj) if not isinstance(obj, np.ndarray) else obj,
                         dtype="float64")
    except Exception:
        arr = None
    if obj is None or arr is None or arr.dtype == object:
        raise _Mistake(f"`{name}` should be {what}, but it is "
                       f"{'None' if obj is None else 'a ' + type(obj).__name__}.")
    return arr


def _input_shape(model) -> tuple:
    return tuple(model.inputs[0].shape)


def _output_units(model) -> int:
    return int(model.outputs[0].shape[-1])


def _activation(layer) -> str:
    act = layer.get_config().get("activation", "linear")
    return act if isinstance(act, str) else str(act)


def _last_dense(model):
    dense = [layer for layer in _flat_layers(model) if isinstance(layer, keras.layers.Dense)]
    return dense[-1] if dense else None


def _flat_layers(model) -> list:
    out = []
    for layer in model.layers:
        out.extend(_flat_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return out


def _loss_from_logits(model) -> bool | None:
    """``from_logits`` of the compiled loss (``None``: not compiled or not a cross-entropy)."""
    loss = getattr(model, "loss", None)
    if loss is None:
        return None
    if isinstance(loss, str):
        return False if "crossentropy" in loss else None
    config = loss.get_config() if hasattr(loss, "get_config") else {}
    return bool(config["from_logits"]) if "from_logits" in config else None


def _compiled(model, name: str) -> None:
    if not getattr(model, "compiled", False) or getattr(model, "optimizer", None) is None:
        raise _Mistake(f"`{name}` is not compiled: call `{name}.compile(optimizer, loss, metrics)` "
                       "after building it.")


def _trained(model, name: str) -> None:
    opt = model.optimizer
    if not opt.built or int(keras.ops.convert_to_numpy(opt.iterations)) == 0:
        raise _Mistake(f"`{name}` has not been trained yet: call `{name}.fit(...)` on the features.")


def _logits_match_loss(model, name: str) -> str:
    """The last layer's activation against the loss's ``from_logits``; returns a description."""
    last = _last_dense(model)
    act = _activation(last) if last is not None else "linear"
    from_logits = _loss_from_logits(model)
    if act == "softmax" and from_logits:
        raise _Mistake(f"the last layer of `{name}` applies softmax, but the loss says "
                       "`from_logits=True`: the loss would apply softmax a second time. Either drop "
                       "`activation='softmax'` (the course's way: logits out) or use `from_logits=False`.")
    if act == "linear" and from_logits is False:
        raise _Mistake(f"the last layer of `{name}` outputs logits (no activation), but the loss "
                       "expects probabilities (`from_logits=False`, the default of "
                       "'sparse_categorical_crossentropy'): use "
                       "`keras.losses.SparseCategoricalCrossentropy(from_logits=True)`.")
    return "logits out, loss from_logits=True" if act == "linear" else f"{act} out, loss from_logits=False"


def _accuracy(model, x, y) -> float:
    out = keras.ops.convert_to_numpy(model(np.asarray(x, "float32"), training=False))
    return float(np.mean(np.argmax(out, axis=-1) == np.asarray(y).ravel()))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean cosine similarity of matching rows."""
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12
    return float(np.mean(num / den))


def _twice_variants(x: np.ndarray) -> dict[str, np.ndarray]:
    """The usual ways of preprocessing before a model that preprocesses itself."""
    from keras.applications import mobilenet_v2

    return {"`preprocess_input` (scaled to -1..1)": mobilenet_v2.preprocess_input(x.copy()),
            "divided by 255 (scaled to 0..1)": x / 255.0,
            "scaled with (x - 127) / 128": (x - 127.0) / 128.0}


# --------------------------------------------------------------------- notebook 01
def _check_deeper_head(deeper, features, labels) -> str:
    deeper = _model(deeper, "deeper", "the head with two dense layers")
    features = _array(features, "features", "the cached features (f_test)")
    labels = _array(labels, "labels", "the labels (y_test)").astype(int)
    n_classes = int(labels.max()) + 1
    shape = _input_shape(deeper)
    if shape[-1] != features.shape[-1] or len(shape) != 2:
        raise _Mistake(f"`deeper` takes inputs of shape {shape}, but the cached features have "
                       f"{features.shape[-1]} numbers per image: start it with `keras.Input(({features.shape[-1]},))`.")
    dense = [layer for layer in _flat_layers(deeper) if isinstance(layer, keras.layers.Dense)]
    if len(dense) < 2:
        raise _Mistake(f"`deeper` has {len(dense)} Dense layer(s); the exercise asks for two: "
                       "`Dense(256, activation='relu')`, then the output layer.")
    hidden, out = dense[-2], dense[-1]
    if hidden.units != 256:
        raise _Mistake(f"the hidden Dense layer has {hidden.units} units; the exercise asks for 256.")
    if _activation(hidden) == "linear":
        raise _Mistake("the hidden Dense layer has no activation: two linear layers in a row are still "
                       "one linear map. Give it `activation='relu'`.")
    if out.units != n_classes:
        raise _Mistake(f"the output layer has {out.units} units, but there are {n_classes} classes: "
                       "use `Dense(len(class_names))`.")
    _compiled(deeper, "deeper")
    loss_text = _logits_match_loss(deeper, "deeper")
    _trained(deeper, "deeper")
    if _accuracy(deeper, features, labels) <= 0.5:
        raise _Mistake(f"`deeper` classifies at most half of the {len(labels)} images given correctly "
                       "(the one-layer head gets about three quarters): train it longer (40 epochs on "
                       "`f_train`, `y_train`), and check that you trained on the features, not on other data.")
    return (f"Dense(256, relu) then Dense({n_classes}), {loss_text}, trained; "
            f"{deeper.count_params():,} weights; above 0.5 accuracy on the {len(labels)} images given.")


deeper_head = Exercise(
    "01", 1, "a deeper head", "checks.deeper_head(deeper, f_test, y_test)",
    "keras.Sequential takes a list of layers: the Input, then Dense(256, activation='relu'), then "
    "the same output layer as make_head(). Compile and fit it like `head`.",
    _check_deeper_head)


def _check_smaller_images(small_base, g_test, head96, x_test, y_test) -> str:
    small_base = _model(small_base, "small_base", "the backbone loaded at 96 px")
    size = _input_shape(small_base)[1:3]
    if tuple(size) != (96, 96):
        raise _Mistake(f"`small_base` takes {size[0]} x {size[1]} px images; load it at 96 px: "
                       "`backbones.load_backbone('efficientnet_lite0', image_size=96, pooling='avg')`.")
    if len(small_base.outputs[0].shape) != 2:
        raise _Mistake(f"`small_base` outputs {tuple(small_base.outputs[0].shape)} per batch, a feature map: "
                       "pass `pooling='avg'` to get one 1280-number vector per image.")
    g_test = _array(g_test, "g_test", "the features of the test images at 96 px")
    x_test = _array(x_test, "x_test", "the test images")
    if g_test.shape != (len(x_test), 1280):
        raise _Mistake(f"`g_test` has shape {g_test.shape}; expected ({len(x_test)}, 1280): one feature "
                       "vector per test image, in the order of `x_test`.")
    x = keras.ops.convert_to_numpy(keras.layers.Resizing(96, 96)(x_test[:4].astype("float32")))

    def features(images: np.ndarray) -> np.ndarray:
        # 4 images per eager call: an eager call holds every layer's output until it returns
        # (16 images at once needed about 230 MiB above the kernel); a few hundred ms each
        return keras.ops.convert_to_numpy(small_base(images, training=False))

    if _cosine(g_test[:4], features(x)) < 0.9:   # the usual mistakes are tried only after a mismatch
        for how, images in _twice_variants(x).items():
            if _cosine(g_test[:4], features(images)) > 0.97:
                raise _Mistake(f"your features come from images {how} before `small_base`, which "
                               "preprocesses inside (its first layer): the images were preprocessed twice. "
                               "Pass the resized 0..255 pixels as they are.")
        raise _Mistake("`g_test` is not what `small_base` gives for `x_test` resized to 96 px: resize the "
                       "128 px images (`keras.layers.Resizing(96, 96)`), keep their order, then `predict`.")
    head96 = _model(head96, "head96", "the head trained on the 96 px features")
    _compiled(head96, "head96")
    _logits_match_loss(head96, "head96")
    _trained(head96, "head96")
    if _accuracy(head96, g_test, y_test) <= 0.5:
        raise _Mistake("`head96` classifies at most half of the test images correctly: train it on the 96 px "
                       "training features (`g_train`), as `head` was trained in section 4.")
    return ("small_base takes 96 px and pools to 1280 features; g_test matches it on resized 0..255 images "
            "(preprocessed once); head96 is trained and above 0.5 test accuracy.")


smaller_images = Exercise(
    "01", 2, "a smaller image size", "checks.smaller_images(small_base, g_test, head96, x_test, y_test)",
    "load_backbone takes image_size=96; the 128 px arrays can be shrunk with keras.layers.Resizing(96, 96) "
    "before `predict`. Everything after that is section 4 again.",
    _check_smaller_images)


def _check_own_pictures(mine, my_head, base) -> str:
    if isinstance(mine, (str, os.PathLike)):
        path = Path(mine)
        raise _Mistake(f"`mine` is a path ({path}); it should be what `data.load_folder(path, "
                       "image_size=IMAGE_SIZE, as_numpy=True)` returns." +
                       ("" if path.exists() else f" Also, {path} does not exist: check the folder's name."))
    if not all(hasattr(mine, a) for a in ("train", "val", "class_names")) or mine.train is None:
        raise _Mistake("`mine` should be what `data.load_folder(path, image_size=IMAGE_SIZE, as_numpy=True)` "
                       f"returns (with .train, .val and .class_names), but it is "
                       f"{'None' if mine is None else 'a ' + type(mine).__name__}.")
    if not isinstance(mine.train, tuple):
        raise _Mistake("`mine.train` is a tf.data.Dataset: pass `as_numpy=True` to `data.load_folder` to "
                       "get NumPy arrays.")
    n = len(mine.class_names)
    base = _model(base, "base", "the frozen backbone of section 3")
    my_head = _model(my_head, "my_head", "the head trained on your pictures")
    if _output_units(my_head) != n:
        raise _Mistake(f"`my_head` has {_output_units(my_head)} outputs, but your folder has {n} classes "
                       f"({', '.join(mine.class_names)}): `make_head()` is built for the clip art's classes. "
                       f"End your head with `Dense(len(mine.class_names))`.")
    if _input_shape(my_head)[-1] != base.outputs[0].shape[-1]:
        raise _Mistake(f"`my_head` takes {_input_shape(my_head)[-1]} numbers per image, but `base` gives "
                       f"{base.outputs[0].shape[-1]}: train the head on `base.predict(...)` features.")
    _compiled(my_head, "my_head")
    _logits_match_loss(my_head, "my_head")
    _trained(my_head, "my_head")
    x, y = mine.train
    features = keras.ops.convert_to_numpy(base(np.asarray(x[:6], "float32"), training=False))
    if _accuracy(my_head, features, y[:6]) < 0.8:
        raise _Mistake("`my_head` gets fewer than 5 of 6 of your own training pictures right from `base`'s "
                       "features: train it on `base.predict(mine.train[0])` with `mine.train[1]`, for "
                       "about 40 epochs.")
    return (f"{n} classes loaded with data.load_folder; my_head has {n} outputs, {_logits_match_loss(my_head, 'my_head')}, "
            "and fits your training pictures through base's features.")


own_pictures = Exercise(
    "01", 3, "your own pictures", "checks.own_pictures(mine, my_head, base)",
    "the number of outputs of the head must match the number of classes in YOUR folder "
    "(len(mine.class_names)), not the clip art's 7.",
    _check_own_pictures)


# --------------------------------------------------------------------- notebook 02
def _block_states(base) -> list[tuple[str, int, int, list[str]]]:
    """Per block: (name, trainable non-BatchNorm weighted layers, all such layers, trainable BatchNorm names)."""
    states = []
    for block in backbone_blocks(base):
        layers = [base.get_layer(n) for n in block.layers]
        weighted = [la for la in layers if la.weights and not isinstance(la, keras.layers.BatchNormalization)]
        bns = [la.name for la in layers if isinstance(la, keras.layers.BatchNormalization) and la.trainable]
        states.append((block.name, sum(la.trainable for la in weighted), len(weighted), bns))
    return states


def _check_unfreeze(model5, base, head, blocks: int = 5) -> str:
    base = _model(base, "base", "the backbone of section 1")
    head = _model(head, "head", "the stage-1 head of section 1")
    model5 = _model(model5, "model5", "the model of section 2 with five blocks unfrozen")
    if not any(layer is base for layer in model5.layers):
        raise _Mistake("`model5` does not contain `base`: build it as in section 2, "
                       "`base(inputs, training=False)`, pooling, then `head`.")
    if not base.trainable:
        raise _Mistake("`base` is frozen (`base.trainable` is False), so nothing in it trains: set "
                       "`base.trainable = True` before the loop, then choose layer by layer.")
    states = [s for s in _block_states(base) if s[2]]  # blocks with weights
    bn = [name for *_, names in states for name in names]
    if bn:
        raise _Mistake(f"{len(bn)} BatchNorm layers are trainable ({', '.join(bn[:3])}"
                       f"{', ...' if len(bn) > 3 else ''}): they would normalise with each batch's statistics "
                       "and overwrite ImageNet's. In the loop, set `layer.trainable = False` for every "
                       "`keras.layers.BatchNormalization`.")
    partial = [name for name, k, total, _ in states if 0 < k < total]
    if partial:
        raise _Mistake(f"block(s) {', '.join(partial)} are only partly unfrozen: a block's layers share one "
                       "name prefix (`block_12_`), so test `layer.name.startswith(...)` with the block's prefix.")
    open_blocks = [name for name, k, total, _ in states if k]
    want = [name for name, *_ in states][-blocks:]
    if open_blocks != want:
        got = ", ".join(open_blocks) if open_blocks else "none"
        raise _Mistake(f"{len(open_blocks)} blocks train ({got}); the exercise asks for the top {blocks}: "
                       f"{', '.join(want)}. The layer names of a block start with its name and '_'.")
    if not head.trainable or not any(layer is head for layer in all_layers(model5)):
        raise _Mistake("the head is frozen or not part of `model5`: end `model5` with `head(...)`, trainable.")
    _compiled(model5, "model5")
    opt = model5.optimizer
    if opt.built:
        known = " ".join(v.path for v in opt.variables)
        stale = [v for v in model5.trainable_variables if v.path.replace("/", "_") not in known]
        if stale:
            raise _Mistake(f"`model5` was trained before the loop and not compiled again: its optimizer "
                           f"knows nothing of {len(stale)} newly trainable weights, so `fit` would not train "
                           "them. Call `model5.compile(...)` after the loop.")
    n = sum(int(np.prod(w.shape)) for w in model5.trainable_weights)
    return (f"the top {blocks} blocks ({want[0]} to {want[-1]}) train with their BatchNorm layers frozen, "
            f"the head trains, model5 is compiled with {n:,} trainable weights.")


unfreeze = Exercise(
    "02", 1, "unfreeze by hand", "checks.unfreeze(model5, base, head)",
    "copy section 2's loop and only change the tuple of name prefixes: the top five blocks are "
    "block_12, block_13, block_14, block_15 and head.",
    _check_unfreeze)

#: VGG16 (no top): 14,714,688 weights, 13 convolutions; its last block, the article's "last four
#: layers", holds three 3x3 convolutions of 512 channels, 3 x 2,359,808 weights.
VGG16_SHARE = 3 * 2_359_808 / 14_714_688
VGG16_CONV_SHARE = 3 / 13


def _recipe_rows(base) -> dict[str, list[float]]:
    """Per depth 1..7: the share of weights and of convolution layers (and two miscounts) in the top blocks."""
    conv = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
    blocks = backbone_blocks(base)
    layers = [base.get_layer(n) for b in blocks for n in b.layers]
    n_convs = sum(isinstance(la, conv) for la in layers)
    n_conv2d = sum(type(la) is keras.layers.Conv2D for la in layers)
    total = base.count_params()
    rows = {"weights": [], "convs": [], "conv2d only": [], "all layers": []}
    for depth in range(1, 8):
        top = [base.get_layer(n) for b in blocks[-depth:] for n in b.layers]
        rows["weights"].append(trainable_params_at_depth(base, depth) / total)
        rows["convs"].append(sum(isinstance(la, conv) for la in top) / n_convs)
        rows["conv2d only"].append(sum(type(la) is keras.layers.Conv2D for la in top) / n_conv2d)
        rows["all layers"].append(len(top) / len(layers))
    return rows


def _closest(shares: list[float], target: float) -> int:
    return int(np.argmin([abs(s - target) for s in shares])) + 1


def _depth(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise _Mistake(f"`{name}` should be a number of blocks (an int from 1 to 7), but it is "
                       f"{'None' if value is None else 'a ' + type(value).__name__}.")
    return int(value)


def _check_article_recipe(by_weights, by_convs, base) -> str:
    by_weights, by_convs = _depth(by_weights, "by_weights"), _depth(by_convs, "by_convs")
    base = _model(base, "base", "the backbone of section 1")
    rows = _recipe_rows(base)
    want_w, want_c = _closest(rows["weights"], VGG16_SHARE), _closest(rows["convs"], VGG16_CONV_SHARE)
    if by_weights != want_w:
        raise _Mistake(f"`by_weights` is {by_weights}, but that depth trains {100 * rows['weights'][by_weights - 1]:.0f} % "
                       f"of Lite0's weights, not the closest to VGG16's {100 * VGG16_SHARE:.0f} %: compare "
                       "`training.trainable_params_at_depth(base, depth) / base.count_params()` for depths 1 to 7.")
    if by_convs != want_c:
        miscount = next((k for k in ("conv2d only", "all layers")
                         if _closest(rows[k], VGG16_CONV_SHARE) == by_convs), None)
        why = {"conv2d only": "you counted Conv2D only; Lite0's depthwise convolutions "
                              "(`DepthwiseConv2D`) are convolution layers too",
               "all layers": "you counted all layers, not the convolution layers"}.get(miscount, "")
        raise _Mistake(f"`by_convs` is {by_convs}, not the depth whose share of convolution layers is closest "
                       f"to VGG16's 3 of 13 ({100 * VGG16_CONV_SHARE:.0f} %)" + (f": {why}." if why else
                       ": count `Conv2D` and `DepthwiseConv2D` layers in the top blocks over all of them."))
    return (f"by weights {want_w} blocks ({100 * rows['weights'][want_w - 1]:.0f} % of Lite0's weights vs VGG16's "
            f"{100 * VGG16_SHARE:.0f} %), by convolution layers {want_c} blocks "
            f"({100 * rows['convs'][want_c - 1]:.0f} % vs {100 * VGG16_CONV_SHARE:.0f} %).")


article_recipe = Exercise(
    "02", 2, "the article's recipe on Lite0", "checks.article_recipe(by_weights, by_convs, base)",
    "backbones.backbone_blocks(base) lists the blocks with their layers' names; for each depth, count "
    "what the top `depth` blocks hold and divide by Lite0's total, then pick the depth closest to VGG16's share.",
    _check_article_recipe)


def _check_predict_file(mine, my_file, probs) -> str:
    if not isinstance(my_file, (str, os.PathLike)):
        raise _Mistake(f"`my_file` should be the path of your picture, but it is "
                       f"{'None' if my_file is None else 'a ' + type(my_file).__name__}.")
    path = Path(my_file)
    if not path.is_file():
        raise _Mistake(f"there is no file at {path}: point `my_file` at your picture "
                       "(`Path('~/Pictures/cat.jpg').expanduser()`, for example).")
    mine = _model(mine, "mine", "the model loaded with keras.models.load_model")
    probs = _array(probs, "probs", "the probabilities that the model gives your picture").squeeze()
    size = tuple(_input_shape(mine)[1:3])
    n = _output_units(mine)
    if probs.shape != (n,):
        raise _Mistake(f"`probs` has shape {probs.shape}; expected ({n},), one probability per class "
                       "(take `[0]` of the batch of one picture).")
    x = keras.utils.img_to_array(keras.utils.load_img(path, target_size=size))[None]
    variants = _twice_variants(x)
    # one forward pass for the right input and every usual mistake
    all_logits = keras.ops.convert_to_numpy(mine(np.concatenate([x, *variants.values()]), training=False))
    logits = all_logits[0]
    right = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
    if np.allclose(probs, right, atol=1e-3):
        return (f"probs are the softmax of the model's logits for {path.name} loaded at {size[0]} px "
                f"as 0..255 pixels (preprocessed once, inside the model); they sum to 1.")
    if np.allclose(probs, logits, atol=1e-3) or probs.min() < -1e-6 or abs(probs.sum() - 1) > 1e-3:
        raise _Mistake("`probs` are not probabilities (they do not sum to 1, or some are negative): the model "
                       "outputs logits; apply `keras.ops.softmax` to its prediction.")
    if np.allclose(probs, keras.ops.convert_to_numpy(keras.ops.softmax(right)), atol=1e-3):
        raise _Mistake("softmax was applied twice (the probabilities are all close to 1/n): the model outputs "
                       "logits, so apply `keras.ops.softmax` once.")
    for how, row in zip(variants, all_logits[1:]):
        if np.allclose(probs, keras.ops.convert_to_numpy(keras.ops.softmax(row)), atol=1e-3):
            raise _Mistake(f"your picture was {how} before the model, which preprocesses inside (its first "
                           "layer): preprocessing applied twice. Pass `img_to_array`'s 0..255 pixels as they are.")
    raise _Mistake(f"`probs` differ from the model's answer for {path.name}: load it with "
                   f"`keras.utils.load_img(my_file, target_size=({size[0]}, {size[1]}))`, then `img_to_array`, "
                   "add a batch axis, `predict`, softmax.")


predict_file = Exercise(
    "02", 3, "your own picture", "checks.predict_file(mine, my_file, probs)",
    "the saved model rescales pixels itself (its first layer), so feed it what img_to_array gives: "
    "0..255 floats, with a batch axis (x[None]).",
    _check_predict_file)


# --------------------------------------------------------------------- notebook 03
def _answers(need: float, discordance: float, difference: float, power: float = 0.8) -> bool:
    """Is ``need`` (within 5 %, at least 100 images) where McNemar's power first reaches ``power``?"""
    from .stats import mcnemar_power

    tol = max(100.0, 0.05 * need)
    return (mcnemar_power(int(need + tol), discordance, difference) >= power
            > mcnemar_power(max(int(need - tol), 1), discordance, difference))


def _check_power_images(need, discordance) -> str:
    from .stats import mcnemar_power

    if isinstance(need, bool) or not isinstance(need, (int, float, np.integer, np.floating)) or not math.isfinite(need):
        raise _Mistake(f"`need` should be a number of test images, but it is "
                       f"{'None' if need is None else 'a ' + type(need).__name__}.")
    if isinstance(discordance, dict):
        raise _Mistake("pass clip art's disagreement rate, `discord['clipart']`, not the whole dict.")
    d = float(discordance)
    if need >= 1 and _answers(need, d, 0.02):
        return f"about {need:,.0f} test images give 80 % power for a 2-point difference at disagreement {d:.3f}."
    for label, difference, power in (("a 3-point difference (0.03)", 0.03, 0.8),
                                     ("50 % power", 0.02, 0.5), ("90 % power", 0.02, 0.9)):
        if need >= 1 and _answers(need, d, difference, power):
            raise _Mistake(f"{need:,.0f} images is the answer for {label}; the question asks for a 2-point "
                           "difference (`difference=0.02`) at 80 % power.")
    few = need < 1 or mcnemar_power(int(need), d, 0.02) < 0.8
    raise _Mistake(f"{need:,.0f} images do not answer it: increase n until "
                   "`stats.mcnemar_power(n, discord['clipart'], 0.02)` first reaches 0.8 "
                   f"({'too few' if few else 'many more than needed'}).")


power_images = Exercise(
    "03", 1, "the power question", "checks.power_images(need, discord['clipart'])",
    "stats.mcnemar_power(n, discordance, difference) gives the power for n images; try n = 1000, 2000, ... "
    "and narrow down where it crosses 0.8.",
    _check_power_images)


def _check_drop_seed(four, without4) -> str:
    from .experiments import METHODS

    if not all(hasattr(four, a) for a in ("seeds", "sizes", "difference")):
        raise _Mistake("`four` should be a `stats.Comparison` of clip art's records built with "
                       f"`drop_seed=4`, but it is {'None' if four is None else 'a ' + type(four).__name__}.")
    seeds = list(four.seeds)
    if seeds == [0, 1, 2, 3, 4]:
        raise _Mistake("`four` still holds all five seeds: pass `drop_seed=4` to `stats.Comparison`.")
    if seeds != [0, 1, 2, 3]:
        raise _Mistake(f"`four` holds seeds {seeds}; the exercise drops seed 4 only (seeds 0 to 3 stay).")
    if not four.sizes or four.sizes[0] != 3:
        raise _Mistake("`four` is not clip art's comparison (its smallest size is not 3 labels per class): "
                       "keep only the records with `r['dataset'] == 'clipart'`.")
    if isinstance(without4, dict):
        without4 = without4.get("estimate")
    if isinstance(without4, bool) or not isinstance(without4, (int, float, np.integer, np.floating)):
        raise _Mistake("`without4` should be the result of `four.difference(FT, FE, None)` (or its "
                       f"'estimate'), but it is {'None' if without4 is None else 'a ' + type(without4).__name__}.")
    fe, ft = METHODS[0], METHODS[1]
    want = four.difference(ft, fe, None)["estimate"]
    if abs(without4 - want) < 1e-9:
        return f"seed 4 dropped, clip art, all labels: fine tuning minus feature extraction {want:+.3f}."
    if abs(without4 + want) < 1e-9:
        raise _Mistake("the sign is reversed: fine tuning minus feature extraction is "
                       "`four.difference(FT, FE, None)` (the first method minus the second).")
    for z in four.sizes[:-1]:
        if abs(without4 - four.difference(ft, fe, z)["estimate"]) < 1e-9:
            raise _Mistake(f"that is the difference at {z} labels per class; 'all labels' is the size `None`.")
    raise _Mistake("`without4` is not fine tuning minus feature extraction with all labels: use "
                   "`four.difference(FT, FE, None)`.")


drop_seed = Exercise(
    "03", 2, "the paired difference without seed 4", "checks.drop_seed(four, without4)",
    "stats.Comparison takes the same arguments as in section 5 plus drop_seed=4; then ask it for "
    "the difference of FT and FE at size None.",
    _check_drop_seed)


# --------------------------------------------------------------------- notebook 04
def _ratio(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value <= 0:
        what = repr(value) if value is None or isinstance(value, (int, float, np.number)) else f"a {type(value).__name__}"
        raise _Mistake(f"`{name}` should be a positive number (how many times as far the run on 10x gradients "
                       f"moved), but it is {what}.")
    return float(value)


def _near(value: float, target: float, rel: float) -> bool:
    return abs(value / target - 1) < rel


def _check_scaled_gradients(adam_ratio, sgd_ratio) -> str:
    adam, sgd = _ratio(adam_ratio, "adam_ratio"), _ratio(sgd_ratio, "sgd_ratio")
    adam_ok, sgd_ok = _near(adam, 1, 0.05), 5 < sgd < 15
    if adam_ok and sgd_ok:
        return ("Adam moved as far on 10x gradients as on plain ones (within 5 %: the factor cancels), "
                "SGD 5 to 15 times as far (the factor scales its step).")
    if _near(adam, 2, 0.2) or sgd > 15:
        raise _Mistake("the run on 10x gradients moved about twice as far with Adam (or more than 15x with SGD): "
                       "the second run went on from where the first stopped. Build a fresh layer with the same "
                       "initial weights (`GlorotUniform(0)`) for each run, and a fresh optimizer.")
    if 5 < adam < 15 and sgd_ok:
        raise _Mistake(f"with Adam the run on 10x gradients moved {adam:.1f}x as far: the 10 reached Adam's learning "
                       "rate, not its gradients (`Adam(1e-2)`?). Keep `Adam(1e-3)` for both runs and multiply the "
                       "gradients before `optimizer.apply([10 * g for g in grads], weights)`.")
    if 5 < adam < 15 and _near(sgd, 1, 0.05):
        raise _Mistake("the two ratios are swapped: with Adam a constant factor on the gradients cancels "
                       "(ratio near 1), with SGD it multiplies the step (ratio near 10).")
    if adam < 0.9 or sgd < 0.2:
        raise _Mistake("a ratio below 1: you divided the plain run's distance by the scaled run's. Divide the "
                       "distance moved on 10x gradients by the distance moved on plain ones.")
    if _near(sgd, 1, 0.05):
        raise _Mistake("with SGD the run on 10x gradients moved as far as the plain run: the factor never reached "
                       "the gradients. Multiply each gradient by the scale before `optimizer.apply`, in both runs "
                       "of each optimizer (scale 1.0 and 10.0).")
    raise _Mistake(f"Adam's ratio is {adam:.2f} (expected within 0.05 of 1) and SGD's {sgd:.1f} (expected between "
                   "5 and 15): train two copies from the same weights on the same 5 batches, one on plain "
                   "gradients and one on 10x gradients, and compare `np.abs(w - start).sum()` of the two.")


scaled_gradients = Exercise(
    "04", 1, "scaling gradients vs Adam", "checks.scaled_gradients(adam_ratio, sgd_ratio)",
    "one function can do both runs: a fresh Dense layer from GlorotUniform(0), 5 steps of GradientTape, "
    "then `optimizer.apply([scale * g for g in grads], layer.trainable_weights)`; call it with scale 1 and 10.",
    _check_scaled_gradients)


def _cam(net, cut_to_top, at_cut, probabilities: bool = False) -> np.ndarray:
    """Grad-CAM of ``net`` over ``cut_to_top`` for every class of the one picture ``at_cut``."""
    import tensorflow as tf

    n = _output_units(net)
    a = tf.convert_to_tensor(np.repeat(at_cut, n, axis=0).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(a)
        out = net(cut_to_top(a, training=False), training=False)
        if probabilities:
            out = tf.nn.softmax(out)
        chosen = tf.linalg.diag_part(out)
    grads = tape.gradient(chosen, a)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(weights * a, axis=-1)).numpy()


def _check_cam_classes(all_maps, predicted, one, net, cut_to_top) -> str:
    net = _model(net, "net", "the fine-tuned model of section 2")
    cut_to_top = _model(cut_to_top, "cut_to_top", "the frozen blocks from the Grad-CAM cut up to `net`")
    one = _array(one, "one", "the picture's activations at the Grad-CAM cut")
    want_shape = tuple(_input_shape(cut_to_top)[1:])
    if one.ndim == 4 and one.shape[-1] == 3:
        raise _Mistake(f"`one` holds pixels, shape {one.shape}: run the picture through `to_cut` first "
                       "(`training.extract_features(to_cut, x96[i:i + 1], cache=False)`).")
    if one.shape != (1,) + want_shape:
        raise _Mistake(f"`one` has shape {one.shape}; expected {(1,) + want_shape}: one picture's activations "
                       "at the Grad-CAM cut, with its batch axis (`x96[i:i + 1]`, not `x96[i]`).")
    n = _output_units(net)
    maps = _array(all_maps, "all_maps", f"the {n} Grad-CAM maps, one per class")
    if maps.shape == want_shape[:2]:
        raise _Mistake(f"`all_maps` is one map; the exercise wants one per class, shape ({n}, {want_shape[0]}, "
                       f"{want_shape[1]}): repeat the picture {n} times (`np.repeat(one, {n}, axis=0)`) and pass "
                       f"`np.arange({n})` as the classes.")
    if maps.shape != (n,) + want_shape[:2]:
        raise _Mistake(f"`all_maps` has shape {maps.shape}; expected ({n}, {want_shape[0]}, {want_shape[1]}): "
                       "one map per class, in class order.")
    want = _cam(net, cut_to_top, one)
    tol = 1e-3 * float(np.abs(want).max()) + 1e-6
    if not np.allclose(maps, want, atol=tol):
        if np.ptp(maps, axis=0).max() <= tol:
            raise _Mistake(f"all {n} maps are the same: each copy of the picture needs its own class. Pass "
                           f"`np.arange({n})` as the classes, not one class repeated.")
        if maps.min() < -tol:
            raise _Mistake("some map values are negative: Grad-CAM keeps only the positive part of the weighted "
                           "sum (`tf.nn.relu`): the regions that push the class's logit up.")
        soft = _cam(net, cut_to_top, one, probabilities=True)
        if np.allclose(maps, soft, atol=1e-3 * float(np.abs(soft).max()) + 1e-9):
            raise _Mistake("your maps follow the gradient of the class's probability (after softmax); Grad-CAM "
                           "takes the gradient of its logit: `net` outputs logits, use them as they are.")
        raise _Mistake("`all_maps` are not `net`'s Grad-CAM maps of `one`: compute them with the notebook's "
                       f"`grad_cam(net, np.repeat(one, {n}, axis=0), np.arange({n}))` (the fine-tuned `net`, "
                       "not `lp_net`).")
    logits = keras.ops.convert_to_numpy(net(cut_to_top(one.astype("float32"), training=False), training=False))[0]
    if isinstance(predicted, (np.ndarray, list, tuple)) and np.size(predicted) > 1:
        raise _Mistake(f"`predicted` holds {np.size(predicted)} numbers; it should be one class number: take "
                       "`int(np.argmax(...))` of the model's output.")
    try:
        pred = int(np.asarray(predicted).item())
    except (TypeError, ValueError):
        raise _Mistake(f"`predicted` should be a class number, but it is "
                       f"{'None' if predicted is None else 'a ' + type(predicted).__name__}.") from None
    top = int(np.argmax(logits))
    if pred != top:
        raise _Mistake(f"`predicted` is class {pred}, but `net`'s highest logit for this picture is class {top}: "
                       "take `int(np.argmax(net.predict(acts[i:i + 1], verbose=0)))` with the same `i`.")
    return (f"{n} Grad-CAM maps of `net` ({want_shape[0]}x{want_shape[1]}, positive part), one per class, "
            "match; `predicted` is `net`'s top class for the picture.")


cam_classes = Exercise(
    "04", 2, "Grad-CAM for another class", "checks.cam_classes(all_maps, predicted, one, net, cut_to_top)",
    "`grad_cam` takes one class per picture: give it the picture (at the cut) 10 times, classes 0 to 9.",
    _check_cam_classes)


def _check_forgetting_by_class(per_class, results, imagenet_top1, y, both) -> str:
    method = "FT 1e-03"
    if not isinstance(results, dict) or not any(isinstance(k, tuple) and k[0] == method for k in results):
        raise _Mistake(f"`results` should be section 3's dict of runs, keyed by (method, seed) with '{method}' "
                       f"among them, but it is {'None' if results is None else 'a ' + type(results).__name__}"
                       f"{' without ' + repr(method) if isinstance(results, dict) else ''}.")
    y = _array(y, "y", "the labels of the whole pool").astype(int)
    both = _array(both, "both", "the test pictures' indices, `np.r_[test_idx, shift_idx]`").astype(int)
    before = _array(imagenet_top1, "imagenet_top1", "the ImageNet top-1 of every picture before fine tuning")
    n = int(y.max()) + 1
    if isinstance(per_class, dict):
        per_class = list(per_class.values())
    got = _array(per_class, "per_class", f"the share of changed answers for each of the {n} classes")
    if got.shape != (n,):
        raise _Mistake(f"`per_class` has shape {got.shape}; expected ({n},): one share per class, in class order.")

    def shares(key) -> tuple[np.ndarray, np.ndarray]:
        flips = np.asarray(results[key]["imagenet"]) != before[both]
        counts = np.array([flips[y[both] == c].sum() for c in range(n)], float)
        sizes = np.array([(y[both] == c).sum() for c in range(n)], float)
        return counts / np.maximum(sizes, 1), counts

    seeds = sorted(k[1] for k in results if isinstance(k, tuple) and k[0] == method)
    want, counts = shares((method, seeds[0]))
    if np.allclose(got, want, atol=1e-6, equal_nan=True):
        return (f"the share of test pictures ({len(both)}) whose ImageNet top-1 changed after {method}, "
                f"first seed, in each of the {n} classes.")
    if np.allclose(got, counts):
        raise _Mistake("`per_class` holds counts of changed answers; divide each by the number of that class's "
                       "test pictures to get a share (0 to 1).")
    if np.allclose(got, counts / len(both)):
        raise _Mistake("your shares are counted over all test pictures (they add up to the overall rate); divide "
                       "each class's count by that class's number of pictures, `flips[y[both] == c].mean()`.")
    if np.allclose(got, 100 * want):
        raise _Mistake("these look like percentages; give shares from 0 to 1.")
    if np.allclose(got, 1 - want):
        raise _Mistake("that is the share of pictures that kept their ImageNet answer: count the ones whose "
                       "top-1 changed (`!=`).")
    for key in results:
        if key != (method, seeds[0]) and isinstance(key, tuple) and np.allclose(got, shares(key)[0]):
            raise _Mistake(f"that is the run {key[0]!r} with seed {key[1]}; the exercise asks for {method!r} with "
                           f"the first seed, `results['{method}', SEEDS[0]]`.")
    raise _Mistake(f"`per_class` differs from the share of changed ImageNet answers per class: compare "
                   f"`results['{method}', SEEDS[0]]['imagenet']` with `imagenet_top1[both]`, then average the "
                   "flips over each class's pictures (`y[both] == c`).")


forgetting_by_class = Exercise(
    "04", 3, "forgetting by class", "checks.forgetting_by_class(per_class, results, imagenet_top1, y, both)",
    "`changed()` in section 3 compares the ImageNet top-1 after fine tuning with `imagenet_top1` on the test "
    "pictures; do the same for one run, then average the flips of each class's pictures separately.",
    _check_forgetting_by_class)


#: every exercise, by the name its check cell calls
EXERCISES: dict[str, Exercise] = {name: value for name, value in dict(globals()).items()
                                  if isinstance(value, Exercise)}
