"""Datasets for the course: embedded offline data and your own folders.

Two kinds of data, one result shape (:class:`Splits`):

* **Embedded** (ship in ``datasets/``, no network): ``"clipart"`` (near domain,
  7 classes of public-domain clip art, 128 px), ``"fashion_mnist"`` (far
  domain, 28 px grayscale clothes) and ``"spoken_words"`` (distant domain:
  spectrograms). Checked against ``datasets/MANIFEST.sha256``.
* **Your own pictures**: :func:`load_folder` (one subfolder per class); unreadable
  files are skipped and named up front, never a crash mid-epoch. A folder too big for
  memory streams through :func:`load_folder_features` into the feature cache.

Images always come out as float32 in 0..255, RGB, ``(image_size, image_size, 3)``;
labels as int32. Every model in the course does its own preprocessing.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from tlcourse.config import DATA_IMAGE_SIZES, check_image_size, datasets_dir

__all__ = [
    "Splits",
    "DatasetIntegrityError",
    "EMBEDDED",
    "dataset_path",
    "list_datasets",
    "load_dataset",
    "load_folder",
    "load_folder_features",
    "folder_images",
    "read_image",
    "verify_datasets",
    "augmentation",
    "hash_matches",
    "per_class_indices",
    "read_manifest",
    "resize_images",
    "group_key",
    "drawing_groups",
    "Pool",
    "load_pool",
]

MANIFEST = "MANIFEST.sha256"
#: Embedded datasets: name -> path relative to ``datasets/``.
EMBEDDED: dict[str, str] = {"clipart": "clipart", "fashion_mnist": "fashion_mnist.npz",
                            "spoken_words": "spoken_words.npz"}
_REBUILD = "python tools/build_datasets.py"


class DatasetIntegrityError(RuntimeError):
    """An embedded dataset file is missing or differs from the manifest."""


@dataclasses.dataclass
class Splits:
    """Train / validation / test data plus the class names.

    Each split is a batched ``tf.data.Dataset`` of ``(images, labels)`` or, with
    ``as_numpy=True``, an ``(x, y)`` tuple of numpy arrays. ``test`` is ``None``
    when there is no test split (:func:`load_folder` without ``test_fraction``).
    ``skipped`` lists files that could not be read (:func:`load_folder` only),
    ``counts`` the number of images per split.
    """

    train: Any
    val: Any
    test: Any
    class_names: list[str]
    skipped: list[str] = dataclasses.field(default_factory=list)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)


# ------------------------------------------------------------------ paths
def list_datasets() -> dict[str, str]:
    """Names of the datasets :func:`load_dataset` knows, with a short description."""
    out = {
        "clipart": "embedded: 7 classes of public-domain clip art (near domain), 128 px",
        "fashion_mnist": "embedded: Fashion-MNIST subset, 10 classes, 28 px grayscale",
        "spoken_words": "embedded: spectrograms of 10 spoken words (espeak-ng), 64 px grayscale (distant domain)",
    }
    return out


def _unknown(name: str) -> ValueError:
    return ValueError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}")


def dataset_path(name: str) -> Path:
    """The folder (``clipart``) or file (``fashion_mnist.npz``) of an embedded dataset."""
    if name in EMBEDDED:
        return datasets_dir() / EMBEDDED[name]
    raise _unknown(name)


# -------------------------------------------------------------- integrity
def read_manifest() -> dict[str, str]:
    """``{path relative to datasets/: sha256}`` from ``datasets/MANIFEST.sha256`` (the one parser)."""
    path = datasets_dir() / MANIFEST
    if not path.exists():
        raise DatasetIntegrityError(
            f"{path} is missing. Restore it with `git checkout datasets/` "
            f"(or rebuild with `{_REBUILD}`)."
        )
    entries: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, rel = line.split(maxsplit=1)
            entries[rel.strip()] = digest
    return entries


def _manifest_files(name: str) -> dict[str, str]:
    prefix = EMBEDDED[name]
    return {
        rel: h for rel, h in read_manifest().items()
        if rel == prefix or rel.startswith(prefix + "/")
    }


def hash_matches(path: str | os.PathLike, known_hash: str) -> bool:
    """True if the file has ``known_hash``, written ``"alg:hex"`` (``"sha256:..."``, ``"md5:..."``).

    The course's one way to hash a file (``pooch.file_hash``): datasets, downloads,
    the doctor and ``tools/build_datasets.py`` all use it. A bare hex string means sha256.
    """
    import pooch

    alg, _, digest = known_hash.rpartition(":")
    return pooch.file_hash(str(path), alg=alg or "sha256") == digest.lower()


def _verify(name: str) -> None:
    """Check an embedded dataset against the manifest, every file, every time.

    Hashing all 376 files takes about 20 ms (2 cores, measured for issue 13), so
    no record of an earlier check is kept. Never modifies the data.
    """
    root = datasets_dir()
    files = _manifest_files(name)
    if not files:
        raise DatasetIntegrityError(
            f"{root / MANIFEST} lists no files for {name!r}; restore it with "
            "`git checkout datasets/`."
        )
    missing = [rel for rel in files if not (root / rel).is_file()]
    bad = [rel for rel in files if rel not in missing and not hash_matches(root / rel, files[rel])]
    if missing or bad:
        lines = [f"  missing: {r}" for r in missing[:10]] + [f"  changed: {r}" for r in bad[:10]]
        more = len(missing) + len(bad) - len(lines)
        if more > 0:
            lines.append(f"  ... and {more} more")
        raise DatasetIntegrityError(
            f"dataset {name!r} in {root} does not match {MANIFEST}:\n" + "\n".join(lines)
            + "\nThe course never modifies these files. Restore them with "
            "`git checkout datasets/` (or rebuild with "
            f"`{_REBUILD}`), or pass verify=False to load anyway."
        )


def verify_datasets(names: Iterable[str] | None = None) -> dict[str, bool]:
    """Check embedded datasets against the manifest; raise on a mismatch."""
    out = {}
    for name in names or EMBEDDED:
        if name not in EMBEDDED:
            raise _unknown(name)
        _verify(name)
        out[name] = True
    return out


# ----------------------------------------------------------- raw arrays
# Every loader below returns native-resolution uint8 arrays:
#   {"train": (x, y), "val": (x, y), "test": (x, y)}, class_names
# x is (N, H, W, 3) or (N, H, W) for grayscale; y is int32.
_Raw = tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str]]


@functools.lru_cache(maxsize=8)
def _raw_clipart(root: str, mtime: float = 0.0) -> _Raw:
    from PIL import Image

    files = sorted(_manifest_files_for_root(Path(root)))
    class_names = sorted({Path(f).parts[2] for f in files})
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in ("train", "val", "test"):
        sel = [f for f in files if Path(f).parts[1] == split]
        xs = np.empty((len(sel), 128, 128, 3), np.uint8)
        ys = np.empty((len(sel),), np.int32)
        for i, rel in enumerate(sel):
            with Image.open(Path(root).parent / rel) as im:
                xs[i] = np.asarray(im.convert("RGB"))
            ys[i] = class_names.index(Path(rel).parts[2])
        splits[split] = (xs, ys)
    return splits, class_names


def _manifest_files_for_root(root: Path) -> list[str]:
    """PNG paths (relative to ``datasets/``) listed in the manifest for ``root``'s folder.

    Loading from the manifest (not a glob) ignores stray files such as
    ``.ipynb_checkpoints`` or ``.DS_Store``.
    """
    prefix = root.name + "/"
    try:
        rels = [r for r in read_manifest() if r.startswith(prefix) and r.endswith(".png")]
    except DatasetIntegrityError:  # no manifest (verify=False): the files on disk
        rels = []
    return rels or [p.relative_to(root.parent).as_posix() for p in root.glob("**/*.png")]


@functools.lru_cache(maxsize=8)
def _raw_npz(path: str, mtime: float) -> _Raw:
    with np.load(path, allow_pickle=False) as z:
        splits = {s: (z[f"x_{s}"], z[f"y_{s}"].astype(np.int32)) for s in ("train", "val", "test")}
        names = [str(c) for c in z["class_names"]]
    return splits, names


def _raw(name: str, verify: bool) -> _Raw:
    if name in EMBEDDED:
        path = dataset_path(name)
        if verify:
            _verify(name)
        elif not path.exists():
            raise FileNotFoundError(f"{path} is missing; restore it with `git checkout datasets/`")
        if name == "clipart":
            manifest = datasets_dir() / MANIFEST
            return _raw_clipart(str(path), manifest.stat().st_mtime if manifest.exists() else 0.0)
        return _raw_npz(str(path), path.stat().st_mtime)
    raise _unknown(name)


# ------------------------------------------------------------ assembling
def per_class_indices(labels: np.ndarray, per_class: int | None, seed: int,
                      class_names: list[str] | None = None) -> np.ndarray:
    """Indices of ``per_class`` examples of each class, drawn by ``seed`` (sorted).

    The course's one per-class sampler: ``load_dataset(per_class=...)`` uses it, so
    any code that also does (the comparison of notebook 03) picks the same images
    for the same seed. ``None``
    keeps everything. Asking for more than a class holds gives a clear error
    (naming the class from ``class_names`` when given).
    """
    labels = np.asarray(labels)
    if per_class is None:
        return np.arange(len(labels))
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise ValueError(f"per_class must be a positive int (or None for all), got {per_class!r}")
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if per_class > len(idx):
            name = repr(class_names[c]) if class_names is not None else c
            raise ValueError(f"per_class={per_class} but class {name} has only {len(idx)} training "
                             f"examples: the maximum is {min(np.bincount(labels))} (or None for all).")
        picked.append(rng.choice(idx, per_class, replace=False))
    return np.sort(np.concatenate(picked))


def _resize_batch(x, image_size: int):
    """uint8 (N,H,W[,C]) tensor -> float32 (N, s, s, 3) in 0..255 (bilinear)."""
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    if x.shape.rank == 3:
        x = x[..., tf.newaxis]
    x = tf.cast(x, tf.float32)
    h = x.shape[1]
    if h != image_size:
        x = tf.image.resize(x, (image_size, image_size), method="bilinear",
                            antialias=bool(h and h > image_size))
        x = tf.clip_by_value(x, 0.0, 255.0)
    if x.shape[-1] == 1:
        x = tf.repeat(x, 3, axis=-1)
    return x


def resize_images(x: np.ndarray, image_size: int, chunk: int = 512) -> np.ndarray:
    """uint8 or float images (N, H, W[, C]) as float32 (N, size, size, 3) in 0..255.

    The course's one resize: bilinear, antialiased when shrinking (so thin lines
    do not alias away), grey images repeated to RGB. Every loader and the
    comparison use it, so the same picture gives the same pixels everywhere.
    """
    x = np.asarray(x)
    out = np.empty((len(x), image_size, image_size, 3), np.float32)
    for i in range(0, len(x), chunk):
        out[i:i + chunk] = _resize_batch(x[i:i + chunk], image_size).numpy()
    return out


def _to_numpy(x: np.ndarray, y: np.ndarray, image_size: int, chunk: int = 512):
    n = len(x)
    need = n * image_size * image_size * 3 * 4
    if need > 3e9:
        raise MemoryError(
            f"as_numpy would need {need / 1e9:.1f} GB for {n} images at {image_size} px; "
            "use per_class=..., a smaller image_size, or as_numpy=False (tf.data streams it)"
        )
    return resize_images(x, image_size, chunk), y.astype(np.int32)


def _to_dataset(x: np.ndarray, y: np.ndarray, image_size: int, batch_size: int,
                shuffle: bool, seed: int):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32)))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    ds = ds.map(lambda a, b: (_resize_batch(a, image_size), b),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _assemble(raw: dict[str, tuple[np.ndarray, np.ndarray] | None], class_names: list[str],
              image_size: int, batch_size: int, seed: int, as_numpy: bool,
              skipped: list[str] | None = None) -> Splits:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    out: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for split in ("train", "val", "test"):
        pair = raw.get(split)
        if pair is None:
            out[split] = None
            continue
        x, y = pair
        counts[split] = int(len(x))
        if as_numpy:
            out[split] = _to_numpy(x, y, image_size)
        else:
            out[split] = _to_dataset(x, y, image_size, int(batch_size), split == "train", seed)
    return Splits(out["train"], out["val"], out["test"], list(class_names),
                  skipped=list(skipped or []), counts=counts)


def load_dataset(
    name: str,
    image_size: int = 128,
    batch_size: int = 32,
    per_class: int | None = None,
    seed: int = 0,
    as_numpy: bool = False,
    verify: bool = True,
) -> Splits:
    """Load a course dataset as train / val / test splits.

    Args:
        name: ``"clipart"``, ``"fashion_mnist"`` or ``"spoken_words"``; see :func:`list_datasets`.
        image_size: side of the square images returned (bilinear resize).
        batch_size: batch size of the ``tf.data`` splits.
        per_class: keep only this many *training* images per class (chosen with
            ``seed``), for data-efficiency experiments; val and test stay whole.
        seed: drives the training shuffle and ``per_class``; val/test order is fixed.
        as_numpy: return ``(x, y)`` numpy arrays instead of datasets
            (x float32 0..255, NHWC RGB; y int32), handy to cache features.
        verify: check embedded files against ``datasets/MANIFEST.sha256``
            (cheap after the first call).

    Returns:
        :class:`Splits` with ``train``, ``val``, ``test``, ``class_names``.
        Datasets yield ``(float32 images (B, s, s, 3) in 0..255, int32 labels)``;
        the train split is reshuffled each epoch, deterministically for a seed.
        Grayscale data (Fashion-MNIST, spoken words) is repeated to 3 channels.
    """
    if not isinstance(name, str) or name not in list_datasets():
        raise _unknown(name)
    image_size = check_image_size(image_size, DATA_IMAGE_SIZES)
    splits, class_names = _raw(name, verify)
    raw: dict[str, Any] = dict(splits)
    if per_class is not None:
        x, y = splits["train"]
        keep = per_class_indices(y, per_class, seed, class_names)
        raw["train"] = (x[keep], y[keep])
    return _assemble(raw, class_names, image_size, batch_size, seed, as_numpy)


# ------------------------------------------------------------ user folders
def read_image(path: Path | str, image_size: int, crop_to_aspect_ratio: bool = False) -> np.ndarray:
    """Decode one picture file fully with PIL into a uint8 ``(image_size, image_size, 3)`` array.

    Transparent pixels are composited on white, grey or palette pictures become RGB,
    and ``crop_to_aspect_ratio=True`` centre-crops before resizing (as
    ``keras.utils.image_dataset_from_directory`` does). Raises ``ValueError`` on an
    empty or undecodable file (``load_folder`` turns that into a message naming it).
    """
    path = Path(path)
    from PIL import Image, ImageOps

    if path.stat().st_size == 0:
        raise ValueError("empty file (0 bytes)")
    with Image.open(path) as im:
        im.draft("RGB", (image_size * 2, image_size * 2))  # JPEG: decode big files small
        im.load()  # full decode now: truncated/corrupt files fail here, not mid-epoch
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            bg.alpha_composite(rgba)
            im = bg
        im = im.convert("RGB")
        if crop_to_aspect_ratio:
            im = ImageOps.fit(im, (image_size, image_size), Image.Resampling.BILINEAR)
        else:
            im = im.resize((image_size, image_size), Image.Resampling.BILINEAR, reducing_gap=3.0)
        return np.asarray(im, dtype=np.uint8)


def _list_folder(path: str | os.PathLike, image_size: int, val_fraction: float,
                 test_fraction: float) -> tuple[Path, list[str], list[Path], np.ndarray, list[str]]:
    """Check the arguments and list a folder: ``(root, class names, files, labels, skipped)``.

    Nothing is opened: files are every non-hidden file under each class subfolder,
    sorted by class then path; ``skipped`` names the files outside class folders.
    """
    root = Path(path).expanduser()
    check_image_size(image_size, DATA_IMAGE_SIZES)
    for nm, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= float(frac) < 1.0:
            raise ValueError(f"{nm} must be in [0, 1), got {frac}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError("val_fraction + test_fraction must be below 1")
    if not root.exists():
        raise FileNotFoundError(f"no such folder: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is a file; give the folder that holds one subfolder per class")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    skipped: list[str] = [
        f"{p.name}: not inside a class folder" for p in sorted(root.iterdir())
        if p.is_file() and not p.name.startswith(".")
    ]
    if not class_dirs:
        raise ValueError(
            f"{root} has no class subfolders: put each class's pictures in its own "
            "subfolder, e.g. cats/*.jpg and dogs/*.jpg"
        )
    if len(class_dirs) < 2:
        raise ValueError(
            f"{root} has a single class ({class_dirs[0].name!r}); a classifier needs at "
            "least two class subfolders"
        )
    files: list[Path] = []
    labels: list[int] = []
    for c, d in enumerate(class_dirs):
        found = sorted(p for p in d.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(d).parts))
        files += found
        labels += [c] * len(found)
    return root, [d.name for d in class_dirs], files, np.asarray(labels, np.int32), skipped


def _why(exc: BaseException) -> str:
    """First line of an error, for naming a skipped file."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return reason[:120]


def _check_readable(root: Path, class_names: list[str], y: np.ndarray, skipped: list[str],
                    warn: bool) -> None:
    """Warn about the skipped files; raise if a class has no readable picture (``y``: readable ones)."""
    if skipped and warn:
        warnings.warn(
            f"load_folder skipped {len(skipped)} file(s) it could not read:\n  "
            + "\n  ".join(skipped), stacklevel=3,
        )
    empty = [name for c, name in enumerate(class_names) if not np.any(y == c)]
    if empty:
        raise ValueError(f"no readable pictures in class folder(s): {', '.join(empty)} (under {root})")


def _split_folder(y: np.ndarray, val_fraction: float, test_fraction: float, seed: int,
                  root: Path) -> dict[str, np.ndarray | None]:
    """Indices of the readable pictures per split (stratified, seeded); ``test`` None without one."""
    rest, test = _stratified_split(np.arange(len(y)), y, test_fraction, seed, root)
    train, val = _stratified_split(rest, y, val_fraction / (1.0 - test_fraction), seed, root)
    return {"train": train, "val": val, "test": test if test_fraction > 0 else None}


def load_folder(
    path: str | os.PathLike,
    image_size: int = 128,
    val_fraction: float = 0.2,
    batch_size: int = 32,
    seed: int = 0,
    test_fraction: float = 0.0,
    as_numpy: bool = False,
    crop_to_aspect_ratio: bool = False,
    warn: bool = True,
) -> Splits:
    """Load your own pictures: ``path/<class name>/<picture>``, one subfolder per class.

    Every file is opened and fully decoded with PIL *before* anything is returned,
    so a corrupt picture, a zero-byte file or a stray text file is skipped and
    reported (a warning listing them, and ``result.skipped``), never a crash in the
    middle of an epoch. Grayscale, palette and transparent pictures work
    (transparency is composited on white); large pictures are scaled down.
    Pictures are resized to ``image_size`` squares (squashed, like Keras'
    ``image_dataset_from_directory``; ``crop_to_aspect_ratio=True`` centre-crops).
    Hidden files and folders (``.ipynb_checkpoints``) are ignored.

    The split is stratified and seeded (scikit-learn's ``train_test_split`` with
    ``stratify``): ``test_fraction`` of the pictures go to ``test``, then
    ``val_fraction`` (of all pictures) to ``val``, in the proportions of the
    classes; with the default ``test_fraction=0`` ``test`` is ``None``.

    All pictures sit in memory together (49 KB each at 128 px).
    For a big folder use :func:`load_folder_features`, which streams it.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        NotADirectoryError: ``path`` is a file.
        ValueError: no class subfolders, a single class, a class without
            any readable picture, or too few pictures to split by class.
    """
    root, class_names, files, labels, skipped = _list_folder(path, image_size, val_fraction, test_fraction)
    image_size = int(image_size)
    images: list[np.ndarray] = []
    keep: list[int] = []
    for i, f in enumerate(files):
        try:
            images.append(read_image(f, image_size, crop_to_aspect_ratio))
            keep.append(i)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is skipped
            skipped.append(f"{f.relative_to(root)}: {_why(exc)}")
    y = labels[keep]
    _check_readable(root, class_names, y, skipped, warn)
    x = np.stack(images)
    idx = _split_folder(y, val_fraction, test_fraction, seed, root)
    raw: dict[str, Any] = {s: None if i is None else (x[i], y[i]) for s, i in idx.items()}
    return _assemble(raw, class_names, image_size, batch_size, seed, as_numpy, skipped)


def folder_images(files: list[Path], image_size: int, batch_size: int,
                  crop_to_aspect_ratio: bool = False):
    """A ``tf.data.Dataset`` of ``(images, readable)`` batches read from ``files``, in order.

    Each file is decoded by :func:`read_image` (in parallel, order kept) and batched,
    then cast by the course's one resize (:func:`resize_images`' batch step): float32
    ``(B, image_size, image_size, 3)`` in 0..255. An unreadable file gives a black
    image and ``readable=False`` rather than an error, so a big folder streams
    through without stopping; only ``batch_size`` pictures at a time (and a few
    prefetched batches) are in memory.
    """
    import tensorflow as tf

    names = [str(f) for f in files]
    blank = np.zeros((image_size, image_size, 3), np.uint8)

    def read(i):
        try:
            return read_image(names[int(i)], image_size, crop_to_aspect_ratio), True
        except Exception:  # noqa: BLE001 - named afterwards by the caller
            return blank, False

    def load(i):
        img, ok = tf.numpy_function(read, [i], (tf.uint8, tf.bool), stateful=False)
        img.set_shape((image_size, image_size, 3))
        ok.set_shape(())
        return img, ok

    ds = tf.data.Dataset.range(len(names))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(batch_size)
    ds = ds.map(lambda a, ok: (_resize_batch(a, image_size), ok))
    return ds.prefetch(2)


def load_folder_features(
    path: str | os.PathLike,
    model,
    image_size: int = 128,
    val_fraction: float = 0.2,
    seed: int = 0,
    test_fraction: float = 0.0,
    crop_to_aspect_ratio: bool = False,
    batch_size: int = 64,
    warn: bool = True,
) -> Splits:
    """Your own folder of any size, streamed: the ``model``'s features of every picture.

    The same folder layout, file rules, resize and split as :func:`load_folder`, but the
    pictures never sit in memory together: they are read through ``tf.data``
    (:func:`folder_images`) ``batch_size`` at a time, run through ``model`` (frozen,
    inference mode, like :func:`tlcourse.training.extract_features`) and written batch by
    batch into the course's feature cache on disk
    (:func:`tlcourse.training.extract_features_resumable`). An interrupted extraction
    (a stopped cell, a killed kernel) continues where it stopped at the next call, and a
    second call with the same model and unchanged files only reads the cache. Your
    pictures are only read, never changed.

    Returns:
        :class:`Splits` whose ``train``, ``val`` (and ``test``) are ``(features, labels)``
        numpy arrays of the readable pictures: train a head on them. ``skipped`` names
        the unreadable files, as :func:`load_folder` does.

    Raises:
        the errors of :func:`load_folder`.
    """
    from tlcourse.training import extract_features_resumable

    root, class_names, files, labels, skipped = _list_folder(path, image_size, val_fraction, test_fraction)
    image_size = int(image_size)
    key = [("folder-v1", image_size, bool(crop_to_aspect_ratio))]
    for f in files:
        st = f.stat()
        key.append((f.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    cached = extract_features_resumable(
        model, lambda todo: folder_images([files[i] for i in todo], image_size, batch_size,
                                          crop_to_aspect_ratio),
        len(files), repr(key), batch_size)
    ok = np.concatenate([np.isfinite(c.reshape(len(c), -1)).all(axis=1)
                         for _, c in _row_chunks(cached)] or [np.zeros(0, bool)])
    for i in np.flatnonzero(~ok):
        try:
            read_image(files[i], image_size, crop_to_aspect_ratio)
            why = "the model gave no finite features for it"
        except Exception as exc:  # noqa: BLE001 - the reason it was skipped
            why = _why(exc)
        skipped.append(f"{files[i].relative_to(root)}: {why}")
    good = np.flatnonzero(ok)
    y = labels[good]
    _check_readable(root, class_names, y, skipped, warn)
    idx = _split_folder(y, val_fraction, test_fraction, seed, root)
    out: dict[str, Any] = {}
    for split, i in idx.items():
        if i is None:
            out[split] = None
            continue
        rows = good[i]  # sorted file positions
        f = None
        for start, c in _row_chunks(cached):
            if f is None:
                f = np.empty((len(rows),) + c.shape[1:], np.float32)
            lo, hi = np.searchsorted(rows, [start, start + len(c)])
            f[lo:hi] = c[rows[lo:hi] - start]
        out[split] = (f, y[i])
    return Splits(out["train"], out["val"], out["test"], class_names, skipped=skipped,
                  counts={s: len(v[1]) for s, v in out.items() if v is not None})


def _row_chunks(path: Path, rows: int = 8192):
    """``(first row, rows)`` chunks of a ``.npy`` file, each mapped only while it is read.

    Reading a big cached file through one memory map would leave every page it touched
    in the process's memory; mapping it afresh per chunk keeps that to one chunk.
    """
    n = np.load(path, mmap_mode="r").shape[0]
    for start in range(0, n, rows):
        mm = np.load(path, mmap_mode="r")
        chunk = np.array(mm[start:start + rows])
        del mm
        yield start, chunk


def _stratified_split(idx: np.ndarray, y: np.ndarray, fraction: float, seed: int, root: Path):
    """``(kept, split off)``: ``fraction`` of ``idx`` split off per class (scikit-learn), sorted."""
    from sklearn.model_selection import train_test_split

    if fraction == 0:
        return idx, idx[:0]
    try:
        kept, off = train_test_split(idx, test_size=fraction, stratify=y[idx], random_state=seed)
    except ValueError as exc:
        raise ValueError(f"cannot split the pictures in {root} by class ({exc}): every class needs a "
                         "few readable pictures; add some, or lower val_fraction / test_fraction") from exc
    return np.sort(kept), np.sort(off)


# ------------------------------------------------------------- augmentation
def augmentation(seed: int = 0, flip: bool = True, rotation: float = 0.05,
                 zoom: float = 0.1, translation: float = 0.05):
    """A ``keras.Sequential`` of random preprocessing layers (active only in training).

    Horizontal flip, rotation by up to ``rotation`` of a full turn (0.05 = 18
    degrees), zoom and translation by up to the given fractions. Works on
    0..255 or scaled images. Put it inside the model, so that it runs again at
    every training step (mapped over a dataset *before* ``ds.cache()``, it
    would be frozen into the cache).
    """
    import keras

    layers: list = []
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if rotation:
        layers.append(keras.layers.RandomRotation(rotation, fill_mode="nearest", seed=seed + 1))
    if zoom:
        layers.append(keras.layers.RandomZoom(zoom, fill_mode="nearest", seed=seed + 2))
    if translation:
        layers.append(keras.layers.RandomTranslation(translation, translation,
                                                     fill_mode="nearest", seed=seed + 3))
    return keras.Sequential(layers, name="augmentation")


# ------------------------------------------------------------ pooled datasets
def group_key(name: str) -> str:
    """A file name's drawing key: names that differ only by ``_bw`` or a trailing number share one.

    Only half of the rule: Openclipart truncates names, so :func:`drawing_groups`
    also groups by pixels. ``tools/build_datasets.py`` uses both.
    """
    stem = name.rsplit(".", 1)[0].lower().replace("_bw", "").replace("-bw", "")
    return stem.rstrip("0123456789_-r.")


def _edge_thumbnails(x: np.ndarray) -> np.ndarray:
    """Unit vectors of blurred edge maps (32 x 32) of images (N, H, W, 3): outlines, whatever the fill."""
    from scipy import ndimage

    out = []
    for img in np.asarray(x, np.float64):
        grey = img @ np.array([0.299, 0.587, 0.114])
        e = ndimage.gaussian_filter(np.hypot(ndimage.sobel(grey, 0), ndimage.sobel(grey, 1)), 3 * grey.shape[0] / 128)
        f = grey.shape[0] // 32
        v = e[:32 * f, :32 * f].reshape(32, f, 32, f).mean(axis=(1, 3)).ravel()
        out.append(v / (np.linalg.norm(v) or 1.0))
    return np.array(out)


def drawing_groups(x: np.ndarray, labels: np.ndarray, names: list[str], threshold: float = 0.93) -> np.ndarray:
    """One group id per image: a drawing, its recolourings and its black-and-white copy share one.

    Two pictures of one class are the same drawing when their blurred edge maps
    (32 x 32, the outlines whatever the fill colour) have a cosine of at least
    ``threshold``, or when their names share a :func:`group_key`; groups are
    the connected components of that relation. On the course's clip art 0.93
    joins every colour / black-and-white pair checked by eye (lowest 0.936)
    and merges no two different objects of one class that a viewer would call
    different drawings, except families of near-identical pictures (ice-cream
    cones, houses by one artist), which is the safe side.
    """
    from scipy.sparse.csgraph import connected_components

    labels = np.asarray(labels)
    keys = np.array([f"{c}/{group_key(Path(n).name)}" for c, n in zip(labels, names)])
    t = _edge_thumbnails(x)
    same = (labels[:, None] == labels[None, :]) & ((t @ t.T >= threshold) | (keys[:, None] == keys[None, :]))
    return connected_components(same, directed=False)[1]


@dataclasses.dataclass
class Pool:
    """Every image of a dataset, with labels, groups (near-copies share one) and any fixed split."""

    name: str
    x: np.ndarray               # uint8 (N, H, W, 3)
    y: np.ndarray               # int (N,)
    groups: np.ndarray          # int (N,): images in one group stay on one side of every split
    class_names: list[str]
    fixed: dict | None = None   # {"train": idx, "val": idx, "test": idx} for datasets with their own split
    names: list[str] | None = None  # clip art: ``class/file.png`` (independent of the split folder)

    def __len__(self) -> int:
        return len(self.y)

    def digest(self) -> str:
        """sha256 of the pool's pixels, labels and groups: what a stored result was computed on."""
        import hashlib

        h = hashlib.sha256()
        for a in (self.x, self.y.astype(np.int64), self.groups.astype(np.int64)):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()


@functools.lru_cache(maxsize=4)
def load_pool(name: str) -> Pool:
    """All images of ``name`` at their stored size, for cross-validation (cached).

    ``"clipart"`` pools ``clipart/`` (all three splits of notebooks 01-02) with
    ``clipart_extra/``, checked against the manifest, ordered by class and file
    name (so moving a file between split folders changes nothing), grouped by
    :func:`drawing_groups`. ``"fashion_mnist"`` and ``"spoken_words"`` keep
    their own split in ``pool.fixed``; each image is its own group.
    """
    from PIL import Image

    if name == "clipart":
        root = datasets_dir()
        entries = {r: h for r, h in read_manifest().items()
                   if r.startswith(("clipart/", "clipart_extra/")) and r.endswith(".png")}
        bad = [r for r, h in sorted(entries.items()) if not (root / r).is_file() or not hash_matches(root / r, h)]
        if bad:
            raise DatasetIntegrityError(
                f"{len(bad)} clip-art files are missing or changed (first: {bad[0]}); restore them with "
                f"`git checkout datasets/` or rebuild with `{_REBUILD}`.")
        rels = list(entries)
        rels.sort(key=lambda r: (Path(r).parts[-2], Path(r).name))
        classes = sorted({Path(r).parts[-2] for r in rels})
        x = np.empty((len(rels), 128, 128, 3), np.uint8)
        for i, rel in enumerate(rels):
            with Image.open(root / rel) as im:
                x[i] = np.asarray(im.convert("RGB"))
        y = np.array([classes.index(Path(r).parts[-2]) for r in rels])
        names = [f"{Path(r).parts[-2]}/{Path(r).name}" for r in rels]
        return Pool(name, x, y, drawing_groups(x, y, names), classes, names=names)
    raw, class_names = _raw(name, verify=True)
    parts = [raw[s] for s in ("train", "val", "test")]
    x = np.concatenate([p[0] for p in parts])
    if x.ndim == 3:
        x = np.repeat(x[..., None], 3, axis=-1)
    y = np.concatenate([p[1] for p in parts]).astype(int)
    bounds = np.cumsum([0] + [len(p[1]) for p in parts])
    fixed = {s: np.arange(bounds[i], bounds[i + 1]) for i, s in enumerate(("train", "val", "test"))}
    return Pool(name, x, y, np.arange(len(y)), list(class_names), fixed)
