"""The course's caches stay sound with a whole class: concurrent writers, killed writers,
read-only shared folders and unwritable cache folders (issue 14).

Several real processes write the same feature-cache entry at once through
``training.extract_features`` while another process keeps reading it: every read is a
complete, loadable array equal to the truth, and no temporary file is left. A writer
killed (SIGKILL) mid-write leaves the previous file intact and nothing that breaks the
next run.
"""

from __future__ import annotations

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

from tlcourse import config

REPO = Path(__file__).resolve().parents[1]


def _env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"TLCOURSE_CACHE": str(cache), "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
                "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0", "CUDA_VISIBLE_DEVICES": ""})
    return env


# One writer: the same seeded model and images in every process, so every writer
# produces the same bytes; all wait for a common start time, then cache the features.
WRITER = textwrap.dedent("""
    import sys, time, pathlib
    import numpy as np
    import keras
    from tlcourse import training
    ready, go, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
    keras.utils.set_random_seed(0)
    inp = keras.Input((64, 64, 3))
    model = keras.Model(inp, keras.layers.Conv2D(16, 3, padding="same", name="conv")(inp), name="writer")
    x = np.random.default_rng(0).random((192, 64, 64, 3), dtype=np.float32)
    model(x[:1])
    ready.touch()
    while not go.exists():
        time.sleep(0.01)
    f = training.extract_features(model, x, batch_size=192)
    open(out, "w").write(f"{f.shape} {float(f.sum()):.6f}")
""")

# One reader: load every cache file it finds, as fast as it can, until told to stop.
READER = textwrap.dedent("""
    import sys, time, pathlib
    import numpy as np
    folder, stop, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
    reads, bad = 0, []
    while not stop.exists():
        for p in folder.glob("*.npy"):
            try:
                a = np.load(p, allow_pickle=False)
            except FileNotFoundError:
                continue
            except Exception as exc:
                bad.append(f"{type(exc).__name__}: {exc}")
                continue
            reads += 1
            if a.shape != (192, 64, 64, 16):
                bad.append(f"shape {a.shape}")
        time.sleep(0.005)
    open(out, "w").write(f"{reads}\\n" + "\\n".join(bad))
""")


@pytest.mark.slow
def test_four_processes_cache_the_same_features_at_once(tmp_path):
    cache = tmp_path / "cache"
    features = cache / "features"
    features.mkdir(parents=True)
    stop = tmp_path / "stop"
    env = _env(cache)
    reader = subprocess.Popen([sys.executable, "-c", READER, str(features), str(stop), str(tmp_path / "reads")],
                              env=env)
    go = tmp_path / "go"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / f"ready{i}"), str(go),
                                 str(tmp_path / f"w{i}")], env=env) for i in range(4)]
    try:
        deadline = time.monotonic() + 300   # every writer has imported TensorFlow and built its model
        while not all((tmp_path / f"ready{i}").exists() for i in range(4)):
            assert time.monotonic() < deadline and all(w.poll() is None for w in writers)
            time.sleep(0.05)
        go.touch()
        codes = [w.wait(timeout=600) for w in writers]
    finally:
        stop.touch()
        reader.wait(timeout=60)
        for w in writers:
            if w.poll() is None:
                w.kill()
    assert codes == [0, 0, 0, 0]
    results = {(tmp_path / f"w{i}").read_text() for i in range(4)}
    assert len(results) == 1, f"the writers disagree: {results}"
    files = list(features.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npy", f"expected one cache file, found {files}"
    final = np.load(files[0], allow_pickle=False)
    assert f"{final.shape} {float(final.sum()):.6f}" == results.pop()
    reads, *bad = (tmp_path / "reads").read_text().splitlines()
    assert not bad, f"a reader saw a broken cache file: {bad[:5]}"


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from tlcourse.config import atomic_write
    path, ready = sys.argv[1], sys.argv[2]
    with atomic_write(path) as f:
        f.write(b"half of a new file")
        f.flush()
        open(ready, "w").close()
        time.sleep(600)          # killed here, mid-write
        f.write(b" and the rest")
""")


def test_a_writer_killed_mid_write_leaves_the_old_file_and_no_partial_one(tmp_path):
    path = tmp_path / "features.npy"
    good = np.arange(1000, dtype=np.float32)
    with config.atomic_write(path) as f:
        np.save(f, good)
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path), str(ready)], env=_env(tmp_path))
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the writer did not start"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    np.testing.assert_array_equal(np.load(path, allow_pickle=False), good)  # the old file, whole
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".features.npy.")  # hidden, never read
    # the next run writes over it as usual
    with config.atomic_write(path) as f:
        np.save(f, good * 2)
    np.testing.assert_array_equal(np.load(path, allow_pickle=False), good * 2)


def test_an_exception_mid_write_removes_the_temporary_file(tmp_path):
    path = tmp_path / "x.npy"
    with pytest.raises(KeyboardInterrupt):
        with config.atomic_write(path) as f:
            f.write(b"partial")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_cache_gives_the_fix(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TLCOURSE_CACHE", str(blocker / "cache"))   # fails even for root
    with pytest.raises(config.CacheNotWritableError) as info:
        config.cache_dir("features")
    message = str(info.value)
    assert "not writable" in message and "export TLCOURSE_CACHE=" in message
    assert isinstance(info.value, PermissionError)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_a_read_only_cache_folder_gives_the_fix(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(config.CacheNotWritableError, match="export TLCOURSE_CACHE="):
            with config.atomic_write(folder / "x.npy") as f:
                f.write(b"x")
    finally:
        folder.chmod(0o755)


def test_features_still_work_when_the_cache_is_not_writable(tmp_path, monkeypatch):
    keras = pytest.importorskip("keras")
    from tlcourse import training

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TLCOURSE_CACHE", str(blocker / "cache"))
    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, keras.layers.Conv2D(2, 3, name="c")(inp), name="unwritable")
    x = np.random.default_rng(1).random((4, 8, 8, 3), dtype=np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = training.extract_features(model, x)
    assert out.shape == (4, 6, 6, 2)
    assert any("not writable" in str(w.message) and "computed again" in str(w.message) for w in caught)


def test_a_broken_cache_file_is_recomputed(tmp_path, monkeypatch):
    keras = pytest.importorskip("keras")
    from tlcourse import training

    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path / "cache"))
    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, keras.layers.Conv2D(2, 3, name="c")(inp), name="broken")
    x = np.random.default_rng(2).random((4, 8, 8, 3), dtype=np.float32)
    truth = training.extract_features(model, x)                  # cached on disk
    [path] = config.cache_dir("features").glob("*.npy")
    path.write_bytes(b"\x93NUMPY truncated by a crash")        # e.g. left by an older version
    (path.parent / f".{path.name}.abc123.tmp").write_bytes(b"a killed writer's leftover")
    out = training.extract_features(model, x)
    np.testing.assert_array_equal(out, truth)
    np.testing.assert_array_equal(np.load(path, allow_pickle=False), truth)   # repaired on disk


# ------------------------------------------------- a read-only shared (prefetched) folder
def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def test_a_shared_prefetched_folder_is_read_never_written(tmp_path, monkeypatch, server, fake_vgg16):
    from tlcourse import __main__ as cli
    from tlcourse import backbones as bb
    from tlcourse import doctor

    shared = tmp_path / "shared"
    # the instructor prefetches (from the loopback server) ...
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "unused-keras"))
    assert cli.main(["prefetch", "vgg16", "--keras-home", str(shared / "keras")]) == 0
    # ... and a student reads it, with their own (empty) Keras folder
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "student" / "keras"))
    monkeypatch.setenv(config.SHARED_KERAS_ENV, str(shared / "keras"))
    before, hits = _snapshot(shared), dict(server.hits)
    h5 = shared / "keras" / "models" / "vgg16_test_notop.h5"
    assert bb.fetch_weights("vgg16") == h5
    assert server.hits == hits, "the shared copy should be used without any download"
    assert _snapshot(shared) == before
    checks = doctor.check_shared_cache()
    assert [c.status for c in checks if c.status != doctor.WARN] == [doctor.OK]
    assert "intact" in checks[-1].detail

    # a changed shared file: doctor names it with the fix; the student's own copy is used
    raw = bytearray(h5.read_bytes())
    raw[-20] ^= 0xFF
    h5.write_bytes(bytes(raw))
    before = _snapshot(shared)
    checks = doctor.check_shared_cache()
    fail = [c for c in checks if c.status == doctor.FAIL]
    assert len(fail) == 1 and str(h5) in fail[0].detail
    assert f"rm {h5}" in fail[0].fix and "prefetch vgg16 --keras-home" in fail[0].fix
    assert "shared cache" in doctor.report(checks)
    with pytest.warns(UserWarning, match="shared copy .*changed or damaged"):
        own = bb.fetch_weights("vgg16")
    assert own == tmp_path / "student" / "keras" / "models" / "vgg16_test_notop.h5"
    assert own.read_bytes() == fake_vgg16
    assert _snapshot(shared) == before, "the shared folder must never be repaired by a student"


def test_doctor_reports_an_unwritable_cache(tmp_path, monkeypatch):
    from tlcourse import doctor

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("TLCOURSE_CACHE", str(blocker / "cache"))
    c = doctor.check_cache_writable()
    assert c.status == doctor.FAIL and "not writable" in c.detail and "export TLCOURSE_CACHE=" in c.fix
    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path / "ok"))
    assert doctor.check_cache_writable().status == doctor.OK
    monkeypatch.delenv(config.SHARED_KERAS_ENV, raising=False)
    assert doctor.check_shared_cache() == []
