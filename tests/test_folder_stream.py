"""A big folder streams (issue 19): ``data.load_folder_features`` reads a folder batch by batch
through tf.data into the on-disk feature cache, resumes an interrupted extraction, never
trusts a half-written file, names unreadable pictures and never touches the user's files.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from tlcourse import data, training

REPO = Path(__file__).resolve().parents[1]
SIZE, BATCH = 32, 8


def _folder(root: Path, per_class: int = 20) -> Path:
    """Three classes of noisy colour squares (40 px), plus three unreadable files."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, colour in enumerate(((200, 40, 40), (40, 200, 40), (40, 40, 200))):
        d = root / f"class_{c}"
        d.mkdir(parents=True)
        for i in range(per_class):
            arr = np.clip(np.array(colour) + rng.normal(0, 30, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(d / f"{i:03d}.png")
    good = (root / "class_0" / "000.png").read_bytes()
    (root / "class_0" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "class_1" / "notes.txt").write_text("not a picture")
    (root / "class_2" / "empty.jpg").write_bytes(b"")
    return root


def _model():
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((SIZE, SIZE, 3), name="image")  # named layers: the same model in every process
    x = keras.layers.Conv2D(8, 3, name="conv")(keras.layers.Rescaling(1 / 255, name="scale")(inp))
    return keras.Model(inp, keras.layers.GlobalAveragePooling2D(name="pool")(x), name="tiny")


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``root``: content hash and modification time."""
    return {p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _load(root, model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return data.load_folder_features(root, model, image_size=SIZE, batch_size=BATCH, **kw)


def _features_dir() -> Path:
    return Path(os.environ["TLCOURSE_CACHE"]) / "features"


def _same(a, b) -> None:
    for split in ("train", "val"):
        np.testing.assert_array_equal(getattr(a, split)[0], getattr(b, split)[0])
        np.testing.assert_array_equal(getattr(a, split)[1], getattr(b, split)[1])
    assert a.skipped == b.skipped and a.counts == b.counts


def _interrupt_after(monkeypatch, n_batches: int) -> list[int]:
    """Make the next extraction stop (KeyboardInterrupt) after ``n_batches`` batches; record sizes."""
    real, asked = data.folder_images, []

    def stopping(files, *args, **kw):
        asked.append(len(files))
        for i, batch in enumerate(real(files, *args, **kw)):
            if i == n_batches:
                raise KeyboardInterrupt
            yield batch

    monkeypatch.setattr(data, "folder_images", stopping)
    return asked


def test_streamed_features_match_the_in_memory_path_and_train_a_head(tmp_path, monkeypatch):
    import keras

    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path / "cache"))
    root = _folder(tmp_path / "mine")
    model = _model()
    with pytest.warns(UserWarning, match="skipped 3 file"):
        s = data.load_folder_features(root, model, image_size=SIZE, batch_size=BATCH, seed=1)
    mem = data.load_folder(root, image_size=SIZE, as_numpy=True, warn=False, seed=1)
    assert s.class_names == mem.class_names and s.counts == mem.counts == {"train": 48, "val": 12}
    assert sorted(s.skipped) == sorted(mem.skipped)
    for split in ("train", "val"):
        np.testing.assert_array_equal(getattr(s, split)[1], getattr(mem, split)[1])
        np.testing.assert_allclose(getattr(s, split)[0],
                                   training.extract_features(model, getattr(mem, split)[0], cache=False),
                                   rtol=1e-5, atol=1e-6)
    assert sorted(p.name for p in _features_dir().iterdir())[0].endswith(".npy")
    assert len(list(_features_dir().iterdir())) == 1  # the complete file only: no partial, no temp
    keras.utils.set_random_seed(0)
    head = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    head.compile(keras.optimizers.Adam(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                 metrics=["accuracy"])
    head.fit(*s.train, epochs=30, verbose=0)
    assert head.evaluate(*s.val, verbose=0)[1] >= 0.9  # colours: nearly separable


def test_an_interrupted_extraction_resumes_and_gives_the_same_features(tmp_path, monkeypatch):
    root = _folder(tmp_path / "mine")
    before = _snapshot(root)
    model = _model()
    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path / "fresh"))
    fresh = _load(root, model)
    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path / "resumed"))
    real_images = data.folder_images
    asked = _interrupt_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        _load(root, model)
    left = list(_features_dir().iterdir())
    assert [p.name.startswith(".") and p.name.endswith(".partial") for p in left] == [True]
    monkeypatch.setattr(data, "folder_images", real_images)
    asked2 = _interrupt_after(monkeypatch, 2)  # interrupted a second time
    with pytest.raises(KeyboardInterrupt):
        _load(root, model)
    monkeypatch.undo()
    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path / "resumed"))
    real, rest = data.folder_images, []
    monkeypatch.setattr(data, "folder_images", lambda files, *a, **k: (rest.append(len(files)), real(files, *a, **k))[1])
    resumed = _load(root, model)
    total = 63  # 60 pictures and 3 unreadable files: 8 batches of 8 (the last has 7)
    assert asked == [total] and asked2 == [total - 3 * BATCH] and rest == [total - 5 * BATCH]
    _same(resumed, fresh)
    assert [p.suffix for p in _features_dir().iterdir()] == [".npy"]
    assert _snapshot(root) == before  # the user's pictures: not one byte or time changed


def test_a_half_written_file_is_never_read_as_valid(tmp_path, monkeypatch):
    root = _folder(tmp_path / "mine")
    model = _model()
    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path / "fresh"))
    fresh = _load(root, model)
    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path / "c"))
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        _load(root, model)
    (partial,) = _features_dir().iterdir()
    with pytest.raises(ValueError):  # not a .npy a reader could take for the features
        np.load(partial)
    raw = bytearray(partial.read_bytes())
    rows = 63 * 8 * 4
    # A batch written but not marked done (killed between the two): its rows are garbage.
    raw[2 * BATCH * 8 * 4: 3 * BATCH * 8 * 4] = os.urandom(BATCH * 8 * 4)
    assert raw[rows:rows + 8] == b"\x01\x01" + b"\x00" * 6
    partial.write_bytes(bytes(raw))
    monkeypatch.undo()
    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path / "c"))
    # and a half-written copy of the final file, as a killed atomic_write leaves it
    final_tmp = _features_dir() / f".{partial.name[1:-len('.partial')]}.npy.abcd.tmp"
    final_tmp.write_bytes(b"\x93NUMPY" + b"\x00" * 50)
    _same(_load(root, model), fresh)
    # A partial file cut short (a full disk): not trusted at all, the extraction starts over.
    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path / "d"))
    _interrupt_after(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        _load(root, model)
    (partial,) = _features_dir().iterdir()
    with open(partial, "r+b") as f:
        f.truncate(rows // 2)
    monkeypatch.undo()
    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path / "d"))
    _same(_load(root, model), fresh)
    # A damaged complete file is computed again, not returned.
    (final,) = [p for p in _features_dir().iterdir() if p.suffix == ".npy"]
    final.write_bytes(final.read_bytes()[:100])
    _same(_load(root, model), fresh)


def test_unreadable_pictures_are_named_also_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path / "cache"))
    root = _folder(tmp_path / "mine")
    (root / "stray.txt").write_text("outside any class folder")
    before = _snapshot(root)
    model = _model()
    for _ in range(2):  # computed, then read from the cache
        with pytest.warns(UserWarning, match="skipped 4 file") as rec:
            s = data.load_folder_features(root, model, image_size=SIZE, batch_size=BATCH)
        text = str(rec[0].message)
        for name in ("class_0/truncated.png", "class_1/notes.txt", "class_2/empty.jpg", "stray.txt"):
            assert name in text and any(line.startswith(name + ": ") for line in s.skipped)
        assert "empty file (0 bytes)" in text and "not inside a class folder" in text
    for f in (root / "class_2").glob("*.png"):
        f.write_bytes(b"broken")
    with pytest.raises(ValueError, match="no readable pictures in class folder.*class_2"):
        _load(root, model)
    assert {k: v for k, v in _snapshot(root).items() if not k.startswith("class_2/")} == \
        {k: v for k, v in before.items() if not k.startswith("class_2/")}


def test_prune_removes_abandoned_partial_files(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path / "cache"))
    root = _folder(tmp_path / "mine")
    _interrupt_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        _load(root, _model())
    assert len(list(_features_dir().glob(".*.partial"))) == 1
    assert training.prune_feature_cache(max_mb=0) == 1
    assert not list(_features_dir().iterdir())


KILLED = textwrap.dedent("""
    import sys, time, warnings
    import keras
    from tlcourse import data
    real = data.read_image
    def slow(*a, **k):
        time.sleep(0.02)
        return real(*a, **k)
    data.read_image = slow
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Conv2D(8, 3, name="conv")(keras.layers.Rescaling(1 / 255, name="scale")(inp))
    model = keras.Model(inp, keras.layers.GlobalAveragePooling2D(name="pool")(x), name="tiny")
    warnings.simplefilter("ignore")
    data.load_folder_features(sys.argv[1], model, image_size=32, batch_size=8)
""")


@pytest.mark.slow
def test_a_killed_kernel_resumes_where_it_stopped(tmp_path, monkeypatch):
    """SIGKILL mid-extraction (a kernel killed for memory): the next run redoes only what is unmarked."""
    root = _folder(tmp_path / "mine", per_class=60)
    before = _snapshot(root)
    cache = tmp_path / "killed"
    env = dict(os.environ, TLCOURSE_CACHE=str(cache), TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(root)], env=env)
    n_batches, done = -(-183 // BATCH), 0
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        parts = list((cache / "features").glob(".*.partial"))
        if parts:
            with open(parts[0], "rb") as f:
                f.seek(183 * 8 * 4)
                done = sum(f.read(n_batches))
            if done >= 3:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 3 <= done < n_batches, f"the run was not caught mid-way ({done} of {n_batches} batches)"
    model = _model()
    monkeypatch.setenv("TLCOURSE_CACHE", str(cache))
    real, rest = data.folder_images, []
    monkeypatch.setattr(data, "folder_images", lambda files, *a, **k: (rest.append(len(files)), real(files, *a, **k))[1])
    resumed = _load(root, model)
    assert rest and rest[0] <= 183 - 3 * BATCH
    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path / "fresh"))
    _same(resumed, _load(root, model))
    assert _snapshot(root) == before
