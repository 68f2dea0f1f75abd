"""setup_course and the course-wide settings, each in a fresh interpreter (TensorFlow not yet imported)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tlcourse import config

SCRIPT = r"""
import json, os, random, warnings
import numpy as np
import tlcourse

info = tlcourse.setup_course(seed=3, threads=1, fast_kernels=True)
import tensorflow as tf
draws = [random.random(), float(np.random.rand()), float(tf.random.uniform(()))]
random.seed(3); np.random.seed(3); tf.random.set_seed(3)
expected = [random.random(), float(np.random.rand()), float(tf.random.uniform(()))]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    again = tlcourse.setup_course(seed=3, fast_kernels=False)  # too late to switch oneDNN off
print(json.dumps({"info": info, "same_draws": draws == expected,
                  "inter": tf.config.threading.get_inter_op_parallelism_threads(),
                  "onednn_env": os.environ["TF_ENABLE_ONEDNN_OPTS"], "again": again,
                  "allocator": os.environ.get("TF_ONEDNN_USE_SYSTEM_ALLOCATOR"),
                  "warnings": [str(w.message) for w in caught]}))
"""


@pytest.mark.slow
def test_setup_course_seeds_pins_threads_and_says_when_it_is_too_late():
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA", "TF_ONEDNN_USE_SYSTEM_ALLOCATOR")}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["info"]["threads"] == 1 and out["inter"] == 1 and out["info"]["seed"] == 3
    assert out["info"]["onednn"] == "on" and out["onednn_env"] == "1"
    assert out["allocator"] == "1", "oneDNN's own pool keeps memory: fast kernels use the system allocator"
    assert out["same_draws"], "Python, NumPy and TensorFlow are seeded with `seed`"
    assert out["again"]["onednn"] == "on"  # the first setting stays ...
    assert any("already imported" in w and "restart the kernel" in w for w in out["warnings"])  # ... and it says so


@pytest.mark.parametrize("size, sizes", [(32, config.MODEL_IMAGE_SIZES), (512, config.MODEL_IMAGE_SIZES),
                                         (8, config.DATA_IMAGE_SIZES)])
def test_check_image_size_accepts_the_range(size, sizes):
    assert config.check_image_size(size, sizes) == size


@pytest.mark.parametrize("bad", [31, 513, 64.0, "64", True, None])
def test_check_image_size_says_the_range(bad):
    with pytest.raises(ValueError, match="from 32 to 512"):
        config.check_image_size(bad)


ENV_SCRIPT = r"""
import json, random
import tlcourse

info = tlcourse.setup_course(seed=0, threads=2)
import tensorflow as tf
draw = random.random()
random.seed(5)
print(json.dumps({"info": info, "seeded_with_env": draw == random.random(),
                  "inter": tf.config.threading.get_inter_op_parallelism_threads()}))
"""


@pytest.mark.slow
def test_environment_overrides_seed_and_threads():
    env = {k: v for k, v in os.environ.items() if k not in ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA")}
    env.update({config.SEED_ENV: "5", config.THREADS_ENV: "1"})
    proc = subprocess.run([sys.executable, "-c", ENV_SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["info"]["seed"] == 5 and out["seeded_with_env"], "TLCOURSE_SEED=5 beats seed=0"
    assert out["info"]["threads"] == 1 and out["inter"] == 1, "TLCOURSE_THREADS=1 beats threads=2"


@pytest.mark.parametrize("name, raw, low, expected", [
    (config.SEED_ENV, None, 0, 7), (config.SEED_ENV, "", 0, 7), (config.SEED_ENV, " 3 ", 0, 3),
    (config.SEED_ENV, "0", 0, 0), (config.THREADS_ENV, "4", 1, 4)])
def test_int_from_env_reads_or_keeps_the_default(monkeypatch, name, raw, low, expected):
    if raw is None:
        monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.setenv(name, raw)
    assert config._int_from_env(name, 7, low) == expected


@pytest.mark.parametrize("name, raw", [(config.THREADS_ENV, "0"), (config.SEED_ENV, "-1"), (config.SEED_ENV, "one"),
                                       (config.THREADS_ENV, "2.5")])
def test_int_from_env_says_what_is_wrong(monkeypatch, name, raw):
    monkeypatch.setenv(name, raw)
    with pytest.raises(ValueError, match=f"{name}=.*whole number"):
        config._int_from_env(name, 7, low=1 if name == config.THREADS_ENV else 0)


QUIET_SCRIPT = r"""
import os, sys, warnings
import tlcourse
from tlcourse.config import CourseWarning
tlcourse.setup_course()
os.write(2, b"fd2 after setup\n")   # the descriptor is restored after the TensorFlow import
warnings.warn("a learner's warning", CourseWarning)
warnings.warn("a library warning", UserWarning)
"""


@pytest.mark.slow
def test_setup_course_silences_tensorflow_start_up_and_prints_learner_warnings_as_one_line():
    """No C++ start-up lines on descriptor 2 (Linux, macOS and Windows use the same code path);
    descriptor 2 works afterwards; a CourseWarning is one stdout line, other warnings unchanged."""
    out = subprocess.run([sys.executable, "-c", QUIET_SCRIPT], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONWARNINGS": "default"})
    assert out.returncode == 0, out.stderr
    err = out.stderr.splitlines()
    assert err[0] == "fd2 after setup", out.stderr    # nothing from TensorFlow before it
    assert not any("absl" in line or "cuda" in line or "oneDNN" in line for line in err), out.stderr
    assert out.stdout == "Warning: a learner's warning\n"
    assert any("UserWarning: a library warning" in line for line in err)


def test_silenced_stderr_fd_restores_the_descriptor(capfd):
    with config.silenced_stderr_fd():
        os.write(2, b"hidden\n")
    os.write(2, b"shown\n")
    assert capfd.readouterr().err == "shown\n"


RELEASE_SCRIPT = r"""
import ctypes, json
from tlcourse import config

def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
blocks = [libc.malloc(8192) for _ in range(40_000)]   # 320 MB in small blocks: the heap, not mmap
for b in blocks:
    ctypes.memset(b, 1, 8192)
start = rss()
for b in blocks[:-1]:   # the last block stays: it pins the top of the heap, as live objects do
    libc.free(b)
freed = rss()
ok = config.release_memory()
print(json.dumps({"start": start, "freed": freed, "released": rss(), "ok": ok,
                  "hooked": config.release_after_each_cell()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim: Linux only")
def test_release_memory_hands_freed_heap_back_to_the_system():
    out = subprocess.run([sys.executable, "-c", RELEASE_SCRIPT], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.splitlines()[-1])
    mb = 1024**2
    assert r["ok"] and r["hooked"] is False  # outside IPython there is no cell to hook
    assert r["freed"] - r["released"] > 200 * mb, r  # freed but still resident until released


DEL_SCRIPT = """
import gc, json
from IPython.core.interactiveshell import InteractiveShell
from tlcourse import config

gc.disable()  # only the hook may collect: a cycle survives `del` until a collection
shell = InteractiveShell.instance()
hooked = config.release_after_each_cell()
shell.run_cell("import weakref\\nclass Node: pass\\n"
               "a = Node(); a.me = a; ra = weakref.ref(a)\\nb = Node(); b.me = b; rb = weakref.ref(b)")
shell.run_cell("a = None")            # no del statement: no collection
kept = shell.user_ns["ra"]() is not None
shell.run_cell("x = 1\\ndel b  # not needed below")
print(json.dumps({"hooked": hooked, "kept without del": kept, "freed after del": shell.user_ns["rb"]() is None}))
"""


def test_a_cell_with_del_gets_its_cycles_collected():
    out = subprocess.run([sys.executable, "-c", DEL_SCRIPT], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.splitlines()[-1]) == {"hooked": True, "kept without del": True,
                                                       "freed after del": True}


PAD_SCRIPT = """
import ctypes, json, resource, sys, threading
from tlcourse import config

ok = config.pad_heaps(int(sys.argv[1]))
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
out = {}

def step():   # a training step's pattern, in a thread's own heap: take 32 MiB in 64 KiB pieces, use, free
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        blocks = [libc.malloc(65536) for _ in range(512)]
        for b in blocks:
            ctypes.memset(b, 1, 65536)
        for b in blocks:
            libc.free(b)
    out["faults"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0

t = threading.Thread(target=step)
t.start()
t.join()
print(json.dumps({"ok": ok, **out}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_pad_heaps_stops_a_step_loop_from_faulting_its_memory_in_again():
    def faults(mb):
        out = subprocess.run([sys.executable, "-c", PAD_SCRIPT, str(mb)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.splitlines()[-1])
        assert r["ok"]
        return r["faults"]

    plain, padded = faults(0), faults(config.HEAP_PAD_MB)
    assert plain > 20 * 8192 / 2 and padded < plain / 4, (plain, padded)   # measured: 125,493 vs 8,224


def test_pad_heaps_refuses_a_negative_size():
    with pytest.raises(ValueError, match="0 or more"):
        config.pad_heaps(-1)
