"""Read a *legacy* (non-zip) PyTorch ``.pth`` state dict without torch.

The file layout (``torch.save(..., _use_new_zipfile_serialization=False)``):

1. a pickle of the magic number ``0x1950a86a20f9469cfc6c``,
2. a pickle of the protocol version (``1001``),
3. a pickle of a sys-info dict,
4. the state-dict pickle, whose tensors refer to storages by persistent id
   ``("storage", StorageType, key, location, numel, view_metadata)``,
5. a pickle of the list of storage keys, then for each key in that order an
   8-byte little-endian element count followed by the raw little-endian bytes.

A plain :func:`pickle.load` of an untrusted file can run arbitrary code, so a
*restricted* unpickler is used: only the few globals listed in ``_ALLOWED``
are resolved, and any other global, storage type or layout raises
:class:`UnsafeCheckpointError`.  Only what the course needs is supported.
"""

from __future__ import annotations

import collections
import pickle
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

__all__ = ["UnsafeCheckpointError", "load_legacy_state_dict"]

_MAGIC = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001

#: torch storage class name -> numpy little-endian dtype
_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint uses something outside the allow-list, or is malformed."""


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` etc.: just remembers the dtype."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"<storage type {self.name}>"


class _TensorRef:
    """A tensor whose storage bytes have not been read yet."""

    __slots__ = ("key", "offset", "size", "stride")

    def __init__(self, key: str, offset: int, size: tuple, stride: tuple) -> None:
        self.key, self.offset, self.size, self.stride = key, offset, size, stride


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    if not (isinstance(storage, tuple) and len(storage) == 2):
        raise UnsafeCheckpointError("tensor does not refer to a storage")
    key, _dtype = storage
    if backward_hooks:
        raise UnsafeCheckpointError("tensors with backward hooks are not supported")
    return _TensorRef(key, int(storage_offset), tuple(int(s) for s in size),
                      tuple(int(s) for s in stride))


def _allowed_globals() -> dict[tuple[str, str], object]:
    allowed: dict[tuple[str, str], object] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    }
    for name in _STORAGE_DTYPES:
        allowed[("torch", name)] = _StorageType(name)
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, storages: dict[str, np.dtype] | None = None):
        super().__init__(file)
        self._allowed = _allowed_globals()
        self._storages = storages if storages is not None else {}

    def find_class(self, module: str, name: str):  # noqa: D102
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"checkpoint refers to the global {module}.{name}, which is not in "
                "the allow-list; refusing to load it") from None

    def persistent_load(self, pid):  # noqa: D102
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        if len(pid) > 5 and pid[5] is not None:
            raise UnsafeCheckpointError("storage views are not supported")
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError(f"unknown storage type {storage_type!r}")
        key = str(key)
        self._storages[key] = (storage_type.dtype, int(numel))
        return (key, storage_type.dtype)


def _load_one(f: BinaryIO, storages=None):
    return _RestrictedUnpickler(f, storages).load()


def load_legacy_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Load a legacy-format torch state dict as ``{name: numpy array}``.

    Only ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the
    storage types in ``_STORAGE_DTYPES`` are accepted; anything else raises
    :class:`UnsafeCheckpointError`.  Arrays are C-contiguous native-endian copies.
    """
    with open(path, "rb") as f:
        try:
            magic = _load_one(f)
            if magic != _MAGIC:
                raise UnsafeCheckpointError("not a legacy torch checkpoint (bad magic number)")
            version = _load_one(f)
            if version != _PROTOCOL_VERSION:
                raise UnsafeCheckpointError(f"unsupported torch protocol version {version!r}")
            sys_info = _load_one(f)
            if not isinstance(sys_info, dict) or not sys_info.get("little_endian", True):
                raise UnsafeCheckpointError("unsupported sys info (big-endian checkpoint?)")
            storages: dict[str, tuple[np.dtype, int]] = {}
            state = _load_one(f, storages)
            keys = _load_one(f)
        except UnsafeCheckpointError:
            raise
        except Exception as exc:  # truncated/garbled pickle
            raise UnsafeCheckpointError(f"malformed checkpoint: {exc}") from exc
        if not isinstance(state, dict) or not isinstance(keys, list):
            raise UnsafeCheckpointError("checkpoint does not hold a state dict")
        data: dict[str, np.ndarray] = {}
        for key in keys:
            key = str(key)
            if key not in storages:
                raise UnsafeCheckpointError(f"unexpected storage key {key!r}")
            dtype, numel = storages[key]
            header = f.read(8)
            if len(header) != 8:
                raise UnsafeCheckpointError("truncated checkpoint")
            (count,) = struct.unpack("<q", header)
            if count != numel:
                raise UnsafeCheckpointError(f"storage {key}: {count} elements, expected {numel}")
            raw = f.read(count * dtype.itemsize)
            if len(raw) != count * dtype.itemsize:
                raise UnsafeCheckpointError("truncated checkpoint")
            data[key] = np.frombuffer(raw, dtype=dtype)
    out: dict[str, np.ndarray] = {}
    for name, ref in state.items():
        if not isinstance(ref, _TensorRef):
            raise UnsafeCheckpointError(f"entry {name!r} is not a tensor")
        if ref.key not in data:
            raise UnsafeCheckpointError(f"entry {name!r} refers to a missing storage")
        buf = data[ref.key]
        itemsize = buf.dtype.itemsize
        if ref.size:
            last = ref.offset + sum((s - 1) * st for s, st in zip(ref.size, ref.stride))
            if min(ref.size) > 0 and (last >= buf.size or ref.offset < 0):
                raise UnsafeCheckpointError(f"entry {name!r} is out of bounds")
        arr = np.lib.stride_tricks.as_strided(
            buf[ref.offset:], shape=ref.size,
            strides=tuple(st * itemsize for st in ref.stride), writeable=False)
        out[str(name)] = np.array(arr, dtype=buf.dtype.newbyteorder("="), order="C", copy=True)
    return out
