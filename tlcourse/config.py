"""Course-wide settings: cache directory, seeds and thread count."""

from __future__ import annotations

import ctypes
import gc
import numbers
import os
import re
import sys
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path

#: Environment variable that moves every cache the course writes
#: (cached features, saved models).
CACHE_ENV = "TLCOURSE_CACHE"
#: A read-only Keras folder an instructor filled with ``python -m tlcourse prefetch
#: --keras-home DIR`` (e.g. on a JupyterHub): read first, never written.
SHARED_KERAS_ENV = "TLCOURSE_SHARED_KERAS_HOME"
#: Environment variables that override ``setup_course``'s ``seed`` and ``threads``
#: (maintainers: another seed and thread count stand in for another machine).
SEED_ENV = "TLCOURSE_SEED"
THREADS_ENV = "TLCOURSE_THREADS"
HEAP_PAD_ENV = "TLCOURSE_HEAP_PAD_MB"
#: How much freed memory glibc keeps at the top of each heap (``M_TOP_PAD``), in MiB; see
#: :func:`pad_heaps`.
HEAP_PAD_MB = 64


class CourseWarning(UserWarning):
    """A warning meant for the learner: after :func:`setup_course` it prints as one line,
    ``Warning: <message>``, on standard output (no source line, no red box in Jupyter)."""


def _show_course_warning(original):
    """Wrap ``warnings.showwarning`` so that a :class:`CourseWarning` prints as one plain line."""
    def show(message, category, filename, lineno, file=None, line=None):
        if isinstance(category, type) and issubclass(category, CourseWarning):
            import sys  # noqa: PLC0415
            print(f"Warning: {message}", file=sys.stdout, flush=True)
        else:
            original(message, category, filename, lineno, file, line)
    show._tlcourse_original = original  # marks the wrapper, so it is installed once
    return show


def learner_warnings() -> None:
    """Print :class:`CourseWarning` as one line on stdout from now on (idempotent)."""
    import warnings  # noqa: PLC0415
    if not hasattr(warnings.showwarning, "_tlcourse_original"):
        warnings.showwarning = _show_course_warning(warnings.showwarning)
    warnings.filterwarnings("always", category=CourseWarning)  # again when a cell runs again


@contextmanager
def silenced_stderr_fd():
    """Send file descriptor 2 (C/C++ ``stderr``) to the null device for the ``with`` block.

    TensorFlow's C++ start-up lines ("All log messages before absl::InitializeLog()",
    "Could not find cuda drivers") are written below Python's ``sys.stderr``, so no
    Python setting or environment variable hides them in TF 2.21. The descriptor is
    restored afterwards, so later errors show as usual. ``os.dup``/``os.dup2`` and
    ``os.devnull`` exist on Linux, macOS and Windows; where descriptor 2 is not open
    (e.g. ``pythonw`` on Windows) nothing is redirected.
    """
    import sys  # noqa: PLC0415
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, AttributeError, ValueError):
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        try:
            sys.stderr.flush()
        except (OSError, AttributeError, ValueError):
            pass
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class CacheNotWritableError(PermissionError):
    """The course cache folder cannot be written; the message says how to fix it."""


def _not_writable(path: Path, exc: BaseException | None = None) -> CacheNotWritableError:
    why = f" ({type(exc).__name__}: {exc})" if exc else ""
    return CacheNotWritableError(
        f"The course cache folder {path} is not writable{why}. The course writes cached "
        f"features and saved models there. Fix: point {CACHE_ENV} at a folder you can write, "
        f"e.g. `export {CACHE_ENV}=$HOME/.cache/tlcourse` before starting Jupyter, or in the "
        f"notebook's first cell `import os; os.environ['{CACHE_ENV}'] = os.path.expanduser("
        f"'~/.cache/tlcourse')`.")


def cache_dir(sub: str | None = None) -> Path:
    """Return the course cache directory (created if missing).

    The default is ``~/.cache/tlcourse``; set ``TLCOURSE_CACHE`` to move it.
    ``sub`` names a subfolder, for example ``"weights"`` or ``"datasets"``.
    """
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tlcourse")
    path = root / sub if sub else root
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _not_writable(path, exc) from exc
    return path


@contextmanager
def atomic_write(path: Path | str):
    """Write ``path`` all at once: yields an open binary file in the same folder.

    The bytes go to a uniquely named temporary file (``.NAME.XXXX.tmp``), which is
    flushed to disk and then renamed onto ``path`` with ``os.replace``. Readers see
    the old file or the complete new one, never a half-written one, even with
    several processes writing the same file at once or a writer killed mid-way
    (that leaves only its hidden ``.tmp`` file, which nothing reads). Raises
    :class:`CacheNotWritableError` (with the fix) if the folder cannot be written.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _not_writable(path.parent, exc) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)   # mkstemp makes it 0600; a cache is meant to be readable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


#: Input sizes (pixels per side) a course backbone accepts: below 32 px Lite0's
#: five stride-2 stages leave nothing; above 512 px a CPU course gains nothing.
MODEL_IMAGE_SIZES = (32, 512)
#: Sizes the dataset loaders accept (images alone may be smaller, e.g. 28 px for a CNN).
DATA_IMAGE_SIZES = (8, 1024)


def check_image_size(image_size, sizes: tuple[int, int] = MODEL_IMAGE_SIZES) -> int:
    """Return ``image_size`` as an int, or raise ``ValueError`` saying the valid range.

    The one image-size check of the course: models use :data:`MODEL_IMAGE_SIZES`,
    the dataset loaders :data:`DATA_IMAGE_SIZES`.
    """
    low, high = sizes
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) \
            or not low <= image_size <= high:
        raise ValueError(f"image_size must be a whole number of pixels from {low} to {high}, "
                         f"got {image_size!r}")
    return int(image_size)


def repo_root() -> Path:
    """Return the folder that holds ``datasets/`` (the course checkout)."""
    return Path(__file__).resolve().parent.parent


def datasets_dir() -> Path:
    """Return the folder of the embedded datasets (``datasets/`` in the checkout).

    Set ``TLCOURSE_DATASETS`` to point somewhere else.
    """
    return Path(os.environ.get("TLCOURSE_DATASETS") or repo_root() / "datasets")


def _int_from_env(name: str, default: int, low: int) -> int:
    """``int(os.environ[name])`` if set (and at least ``low``), else ``default``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < low:
        raise ValueError(f"{name}={raw!r}: expected a whole number of at least {low}; unset it to use the default")
    return value


def release_memory() -> bool:
    """Hand the memory that Python and TensorFlow have freed back to the operating system.

    On Linux, glibc's ``malloc`` keeps freed memory for reuse instead of returning it, so a
    kernel's resident memory after a heavy cell stays near that cell's peak (notebook 01:
    2.1 GiB held where 1.0 GiB was in use) and the next heavy cell adds its own peak on top.
    ``malloc_trim(0)`` returns it. Returns True if it ran (glibc), False elsewhere (macOS
    and Windows allocators return large blocks by themselves).
    """
    trim = _glibc("malloc_trim")
    if trim is None:
        return False
    trim(0)
    return True


def _glibc(name: str):
    """glibc's function ``name`` through ctypes, or None off Linux or with another C library."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):  # not glibc (musl, e.g. Alpine)
        return None


def pad_heaps(megabytes: int = HEAP_PAD_MB) -> bool:
    """Let glibc's ``malloc`` keep ``megabytes`` of freed memory at the top of each heap while a cell runs.

    TensorFlow allocates and frees its tensors at every training step from several
    threads' heaps. By default glibc hands the freed top of a thread's heap back to
    the operating system at once and takes it again at the next step, and every page
    taken again is zeroed by the kernel: a depth-3 fine-tuning run of notebook 02
    (4 epochs) made 1.5 million page faults and spent 5.3 s of system time on it. With
    64 MiB of padding (``mallopt(M_TOP_PAD)``, glibc's public setting, also read from
    ``MALLOC_TOP_PAD_``) it made 15,000-40,000 and spent 0.3 s, and its CPU time halved
    (measured side by side; 16 MiB removed only two thirds of the faults). The cost is
    the padding itself, 0.1 GiB more at a training script's peak (notebook 02's peak did
    not rise: 1.95 GiB, 2.01 without); :func:`release_memory`
    still hands everything back after each cell. Returns True if it was set (glibc),
    False elsewhere (other allocators do not have the setting).
    """
    megabytes = int(megabytes)
    if megabytes < 0:
        raise ValueError(f"megabytes must be 0 or more, got {megabytes}")
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    M_TOP_PAD = -2
    return bool(mallopt(M_TOP_PAD, megabytes * 1024 * 1024))


_DELETES = re.compile(r"^[ \t]*del\b", re.MULTILINE)


def _release_after_cell(result=None) -> None:
    # A Keras model is a web of reference cycles: `del model` frees nothing until Python's cycle
    # collector runs, which in a TensorFlow kernel can be many cells later. A full collection takes
    # about a second, so it runs only after a cell with a `del` statement (the notebooks' way to say
    # "this is no longer needed"), before the memory is handed back.
    source = getattr(getattr(result, "info", None), "raw_cell", None) or ""
    if _DELETES.search(source):
        gc.collect()
    release_memory()


def release_after_each_cell() -> bool:
    """In a Jupyter kernel, call :func:`release_memory` after every cell, and collect garbage first
    after a cell that runs a ``del`` statement (once registered, further calls do nothing).
    Returns True if registered, False outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    if _release_after_cell not in shell.events.callbacks["post_run_cell"]:
        shell.events.register("post_run_cell", _release_after_cell)
    return True


def setup_course(seed: int = 0, threads: int = 2, quiet: bool = True, fast_kernels: bool = False) -> dict:
    """Make a notebook reproducible and quiet; call it before anything else.

    Sets the log level and oneDNN switch (these must precede the TensorFlow
    import), pins TensorFlow to ``threads`` threads so stored outputs hold on
    other machines, and seeds Python, NumPy and TensorFlow.

    ``fast_kernels=True`` turns on TensorFlow's oneDNN CPU kernels (about 1.6-1.8x
    faster convolutions on a 2-core CPU; notebooks 03 and 04 use them), capped at the
    AVX2 instruction set so that a machine with newer instructions computes the
    same numbers, and allocating from the system (oneDNN's own pool never gives
    memory back: a kernel held 0.7 GiB more after one batch-256 forward pass). The
    default leaves them off, as notebooks 01 and 02 were measured. Either way it must run
    before TensorFlow is imported; if it is already imported, the setting it was
    imported with stays (a warning says so).
    Returns a dict of the settings, handy to print; notebooks take their seed
    from its ``"seed"``.

    In a Jupyter kernel it also hands freed memory back to the operating system after
    every cell (:func:`release_after_each_cell`): without it notebook 01's kernel held
    2.1 GiB where 1.0 GiB was in use. Each notebook's peak: ``tests/benchmarks/bench_memory.py``
    (00, 01, 03 and 04 under 1.5 GiB, 01 at 1.27-1.41; 02 at 1.95 GiB, 2026-11-30).

    On Linux it keeps some freed memory at hand while a cell trains (:func:`pad_heaps`):
    TensorFlow's training steps then spend half the CPU time they did.

    For maintainers: the environment variables ``TLCOURSE_SEED`` and
    ``TLCOURSE_THREADS`` (whole numbers, threads at least 1) override the
    ``seed`` and ``threads`` arguments; ``TLCOURSE_HEAP_PAD_MB`` (default 64, 0 for
    glibc's own behaviour) sets the padding, for side-by-side benchmarks. Another seed and thread count are the
    stand-in for another machine: ``TLCOURSE_SEED=1 TLCOURSE_THREADS=1 python -m
    pytest notebooks/`` must pass too, since every output nbval compares is the
    same on any CPU and every measured number is checked by a tolerance ``assert``.
    """
    import warnings

    seed = _int_from_env(SEED_ENV, seed, low=0)
    threads = _int_from_env(THREADS_ENV, threads, low=1)

    if quiet:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # oneDNN on/off changes float rounding; either choice is reproducible on one
    # machine. Off is the course default (and silences TensorFlow's import banner).
    wanted = "1" if fast_kernels else "0"
    if "tensorflow" in sys.modules:
        if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != wanted:
            warnings.warn(f"TensorFlow is already imported, so fast_kernels={fast_kernels} has no effect; "
                          "restart the kernel and run this cell first.", CourseWarning, stacklevel=2)
    else:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = wanted
        if fast_kernels:
            os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
            # oneDNN's own memory pool keeps every buffer it ever used: Lite0 on 227 images at
            # 128 px, batch 256, left the process at 1544 MiB (peak 1615) instead of 802 MiB
            # (peak 1362) with the system allocator. Notebooks 03 and 04 were not seen slower (not
            # side by side); small training steps became bimodal (tests/benchmarks/README.md).
            os.environ.setdefault("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "1")
    if quiet:
        learner_warnings()
    with silenced_stderr_fd() if quiet else nullcontext():
        import tensorflow as tf  # noqa: PLC0415 - must come after the env vars
        import keras

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # already initialised in this process: the first setting stays
    keras.utils.set_random_seed(seed)
    pad_heaps(_int_from_env(HEAP_PAD_ENV, HEAP_PAD_MB, low=0))
    release_after_each_cell()
    if quiet:
        tf.get_logger().setLevel("ERROR")
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    return {
        "seed": seed,
        "threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "onednn": "on" if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") == "1" else "off",
    }
