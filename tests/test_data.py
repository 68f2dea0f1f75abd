"""Embedded datasets, user folders, augmentation and the sample grid."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from tlcourse import data
from tlcourse.config import datasets_dir

CLIPART_CLASSES = ["beverages", "birds", "bugs", "desserts", "fruit", "mammals", "vehicles"]


@pytest.fixture(autouse=True)
def _private_cache(monkeypatch, tmp_path):
    """Stamp files go to a temporary cache, never the user's."""
    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path / "cache"))


def _first_batch(ds):
    x, y = next(iter(ds))
    return x.numpy(), y.numpy()


# ------------------------------------------------------------ embedded data
def test_list_and_paths():
    names = data.list_datasets()
    assert set(names) == {"clipart", "fashion_mnist", "spoken_words"}
    assert data.dataset_path("clipart").is_dir()
    assert data.dataset_path("fashion_mnist").name == "fashion_mnist.npz"
    with pytest.raises(ValueError, match="known: clipart"):
        data.dataset_path("imagenet")
    with pytest.raises(ValueError, match="fashion_mnist"):
        data.load_dataset("cifar10")


@pytest.mark.parametrize("bad", [0, 4, 5000, "128", 128.0, True, None])
def test_bad_image_size(bad):
    with pytest.raises(ValueError, match="image_size"):
        data.load_dataset("clipart", image_size=bad)


def test_datasets_folder_small_and_fully_listed():
    root = datasets_dir()
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*")
               if p.is_file() and p.suffix in {".png", ".npz"}}
    manifest = (root / "MANIFEST.sha256").read_text().splitlines()
    listed = {line.split(maxsplit=1)[1].lstrip("*") for line in manifest if line.strip()}
    assert on_disk == listed
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total < 20e6


def test_clipart_layout_readable_by_keras():
    import keras

    ds = keras.utils.image_dataset_from_directory(
        str(datasets_dir() / "clipart" / "train"), image_size=(128, 128), batch_size=64,
        shuffle=False, verbose=False)
    assert ds.class_names == CLIPART_CLASSES


def test_clipart_splits():
    s = data.load_dataset("clipart")
    assert s.class_names == CLIPART_CLASSES and s.num_classes == 7
    assert s.counts == {"train": 227, "val": 74, "test": 74}
    x, y = _first_batch(s.train)
    assert x.shape == (32, 128, 128, 3) and x.dtype == np.float32 and y.dtype == np.int32
    assert 0 <= x.min() and x.max() <= 255 and x.max() > 1
    xs, ys = data.load_dataset("clipart", as_numpy=True).test
    assert xs.shape == (74, 128, 128, 3) and xs.dtype == np.float32
    counts = np.bincount(ys, minlength=7)
    assert counts.min() >= 6  # every class in every split


def test_clipart_deterministic_and_seeded():
    a = _first_batch(data.load_dataset("clipart", seed=0).train)
    b = _first_batch(data.load_dataset("clipart", seed=0).train)
    c = _first_batch(data.load_dataset("clipart", seed=1).train)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[1], c[1])
    v0 = _first_batch(data.load_dataset("clipart", seed=0).val)[1]
    v1 = _first_batch(data.load_dataset("clipart", seed=1).val)[1]
    np.testing.assert_array_equal(v0, v1)  # val / test order is fixed


def test_per_class_subsampling():
    s = data.load_dataset("clipart", per_class=5, as_numpy=True, image_size=32)
    assert np.bincount(s.train[1]).tolist() == [5] * 7
    assert s.counts["val"] == 74  # only train is subsampled
    s2 = data.load_dataset("clipart", per_class=5, as_numpy=True, image_size=32, seed=3)
    assert not np.array_equal(s.train[0], s2.train[0])
    with pytest.raises(ValueError, match=r"class 'vehicles' has only 20 training examples: the maximum is 20"):
        data.load_dataset("clipart", per_class=21)
    with pytest.raises(ValueError, match="per_class"):
        data.load_dataset("clipart", per_class=0)


def test_resize_and_grayscale_fashion():
    s = data.load_dataset("fashion_mnist", image_size=32, as_numpy=True, per_class=500)
    x, y = s.train
    assert x.shape == (5000, 32, 32, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x[..., 0], x[..., 2])  # gray repeated to RGB
    assert np.bincount(y).tolist() == [500] * 10
    assert s.counts == {"train": 5000, "val": 1000, "test": 2000}
    assert np.bincount(s.test[1]).tolist() == [200] * 10
    assert s.class_names[0] == "T-shirt/top" and s.class_names[9] == "Ankle boot"
    with pytest.raises(ValueError, match="maximum is 500"):
        data.load_dataset("fashion_mnist", per_class=501)
    ds = data.load_dataset("fashion_mnist", image_size=48, batch_size=16)
    xb, _ = _first_batch(ds.test)
    assert xb.shape == (16, 48, 48, 3)


def test_fashion_subset_is_disjoint_from_val():
    with np.load(data.dataset_path("fashion_mnist")) as z:
        assert not set(z["index_train"]) & set(z["index_val"])
        assert z["x_train"].dtype == np.uint8 and z["x_train"].shape[1:] == (28, 28)


# ---------------------------------------------------------------- integrity
@pytest.fixture()
def datasets_copy(tmp_path, monkeypatch):
    dst = tmp_path / "datasets"
    shutil.copytree(datasets_dir(), dst)
    monkeypatch.setenv("TLCOURSE_DATASETS", str(dst))
    return dst


def test_integrity_check_leaves_nothing_behind(datasets_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path / "cache"))
    assert data.verify_datasets() == {"clipart": True, "fashion_mnist": True, "spoken_words": True}
    assert not any((tmp_path / "cache").rglob("*"))  # no stamp file: every check hashes (about 20 ms)


def test_one_per_class_sampler():
    y = np.repeat(np.arange(3), [4, 6, 5])
    idx = data.per_class_indices(y, 2, seed=1)
    assert np.bincount(y[idx]).tolist() == [2, 2, 2] and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(idx, data.per_class_indices(y, 2, seed=1))
    assert not np.array_equal(idx, data.per_class_indices(y, 2, seed=2))
    np.testing.assert_array_equal(data.per_class_indices(y, None, seed=0), np.arange(len(y)))
    with pytest.raises(ValueError, match="class 'a' has only 4"):
        data.per_class_indices(y, 5, seed=0, class_names=["a", "b", "c"])
    s = data.load_dataset("clipart", per_class=3, as_numpy=True, image_size=32, seed=4)
    full = data.load_dataset("clipart", as_numpy=True, image_size=32)
    keep = data.per_class_indices(full.train[1], 3, seed=4)
    np.testing.assert_array_equal(s.train[0], full.train[0][keep])  # the loader uses it


def test_integrity_mismatch_named_and_untouched(datasets_copy):
    data.verify_datasets()
    victim = sorted((datasets_copy / "clipart" / "train" / "fruit").glob("*.png"))[0]
    victim.write_bytes(victim.read_bytes() + b"x")
    before = victim.read_bytes()
    missing = datasets_copy / "fashion_mnist.npz"
    missing.unlink()
    with pytest.raises(data.DatasetIntegrityError) as err:
        data.load_dataset("clipart")
    assert victim.name in str(err.value) and "git checkout datasets/" in str(err.value)
    assert victim.read_bytes() == before  # never modified
    with pytest.raises(data.DatasetIntegrityError, match="missing: fashion_mnist.npz"):
        data.load_dataset("fashion_mnist")
    # verify=False loads anyway (the learner's choice)
    assert data.load_dataset("clipart", verify=False, as_numpy=True).counts["train"] == 227


# -------------------------------------------------------------- user folders
def _make_folder(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, colour in (("cats", (200, 50, 50)), ("dogs", (50, 50, 200))):
        d = root / cls
        d.mkdir(parents=True)
        for i in range(5):
            arr = np.clip(np.array(colour) + rng.normal(0, 20, (40, 50, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(d / f"{cls}_{i}.jpg", quality=90)
        Image.fromarray(np.full((30, 30), 128, np.uint8), "L").save(d / "gray.png")
        rgba = Image.new("RGBA", (32, 32), (*colour, 0))
        rgba.putpixel((5, 5), (*colour, 255))
        rgba.save(d / "transparent.png")
        Image.new("RGB", (20, 20), colour).convert("P").save(d / "palette.gif")
    Image.new("RGB", (3000, 2500), (200, 50, 50)).save(root / "cats" / "huge.jpg", quality=80)
    good = (root / "cats" / "cats_0.jpg").read_bytes()
    (root / "cats" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "dogs" / "notes.txt").write_text("not a picture")
    (root / "dogs" / "empty.png").write_bytes(b"")
    (root / "dogs" / ".DS_Store").write_bytes(b"\x00\x01")
    (root / ".ipynb_checkpoints").mkdir()
    return root


def test_load_folder_skips_bad_files_and_trains(tmp_path):
    import keras

    root = _make_folder(tmp_path / "mine")
    with pytest.warns(UserWarning, match="skipped 3 file"):
        s = data.load_folder(root, image_size=32, batch_size=4)
    skipped = "\n".join(s.skipped)
    for bad in ("truncated.jpg", "notes.txt", "empty.png"):
        assert bad in skipped
    assert "DS_Store" not in skipped
    assert s.class_names == ["cats", "dogs"] and s.test is None
    assert s.counts["train"] + s.counts["val"] == 17  # 9 cats + 8 dogs readable
    assert s.counts["val"] == 4
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2),
    ])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    hist = model.fit(s.train, validation_data=s.val, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(hist.history["loss"][0])


def test_load_folder_image_modes(tmp_path):
    root = _make_folder(tmp_path / "mine")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = data.load_folder(root, image_size=24, as_numpy=True, val_fraction=0.0,
                             test_fraction=0.0)
    x, y = s.train
    assert x.shape == (17, 24, 24, 3) and x.dtype == np.float32
    assert s.val[0].shape[0] == 0
    # transparent picture composited on white: mostly white
    t = data.read_image(root / "cats" / "transparent.png", 24, False)
    assert t.mean() > 240
    g = data.read_image(root / "cats" / "gray.png", 24, False)
    assert g.shape == (24, 24, 3)
    h = data.read_image(root / "cats" / "huge.jpg", 24, True)
    assert h.shape == (24, 24, 3)


def test_load_folder_test_split(tmp_path):
    root = _make_folder(tmp_path / "mine")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = data.load_folder(root, image_size=16, test_fraction=0.2, as_numpy=True, seed=1)
    assert s.test is not None and len(s.test[1]) >= 2
    assert sum(s.counts.values()) == 17


def test_load_folder_errors(tmp_path):
    from PIL import Image

    with pytest.raises(FileNotFoundError, match="no such folder"):
        data.load_folder(tmp_path / "nope")
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(NotADirectoryError):
        data.load_folder(f)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no class subfolders"):
        data.load_folder(empty)
    single = tmp_path / "single"
    (single / "cats").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(single / "cats" / "a.png")
    with pytest.raises(ValueError, match="single class"):
        data.load_folder(single)
    (single / "dogs").mkdir()
    (single / "dogs" / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="no readable pictures in class folder.*dogs"):
        data.load_folder(single, warn=False)
    with pytest.raises(ValueError, match="val_fraction"):
        data.load_folder(single, val_fraction=1.5)


# -------------------------------------------------------------- augmentation
def test_augmentation_layers():
    import keras

    aug = data.augmentation(seed=0)
    assert isinstance(aug, keras.Sequential)
    kinds = {type(layer).__name__ for layer in aug.layers}
    assert {"RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation"} <= kinds
    x = np.full((2, 16, 16, 3), 100.0, np.float32)
    np.testing.assert_allclose(np.asarray(aug(x, training=False)), x)  # inference: identity


# --------------------------------------------------------------------- plots
def test_plot_image_grid_numpy_and_predictions():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tlcourse.plots import plot_image_grid

    x, y = data.load_dataset("clipart", as_numpy=True, image_size=32).val
    preds = y.copy()
    preds[0] = (preds[0] + 1) % 7
    fig = plot_image_grid(x, y, CLIPART_CLASSES, n=10, ncols=5, predictions=preds, title="val")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 10 and " / " in titles[0]
    reds = [ax for ax in fig.axes if ax.get_title() and ax.title.get_color() == "red"]
    assert len(reds) == 1
    assert tuple(fig.get_size_inches()) == pytest.approx((5 * 1.6, 2 * 1.6 + 0.4))
    plt.close(fig)
    fig = plot_image_grid(x.astype(np.uint8)[:3], y[:3], None, ncols=8)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == [str(int(v)) for v in y[:3]]
    plt.close(fig)


def test_plot_image_grid_from_dataset():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tlcourse.plots import plot_image_grid

    s = data.load_dataset("fashion_mnist", image_size=28, batch_size=5)
    fig = plot_image_grid(s.test, class_names=s.class_names, n=12, ncols=6)
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert len(titled) == 12
    plt.close(fig)
    with pytest.raises(ValueError):
        plot_image_grid(np.zeros((0, 8, 8, 3)), [], None)


def test_load_folder_split_is_stratified_seeded_and_explains_too_few(tmp_path):
    from PIL import Image

    root = tmp_path / "balanced"
    for cls, n in (("a", 10), ("b", 20)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (i * 10, 0, 0)).save(root / cls / f"{i}.png")
    s = data.load_folder(root, image_size=8, val_fraction=0.2, test_fraction=0.1, as_numpy=True, seed=0)
    assert np.bincount(s.val[1]).tolist() == [2, 4] and np.bincount(s.test[1]).tolist() == [1, 2]
    again = data.load_folder(root, image_size=8, val_fraction=0.2, test_fraction=0.1, as_numpy=True, seed=0)
    other = data.load_folder(root, image_size=8, val_fraction=0.2, test_fraction=0.1, as_numpy=True, seed=1)
    np.testing.assert_array_equal(s.val[0], again.val[0])
    assert not np.array_equal(s.val[0], other.val[0])
    for f in list((root / "a").iterdir())[1:]:
        f.unlink()  # class "a" keeps one picture: it cannot be split
    with pytest.raises(ValueError, match="every class needs a few readable pictures"):
        data.load_folder(root, image_size=8)
