"""download_dataset against a local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tlcourse import data


def _npz_bytes() -> bytes:
    """A tiny file shaped like MedMNIST's pneumoniamnist.npz."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 12), ("val", 4), ("test", 6)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(n, 1).astype(np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _eurosat_zip() -> bytes:
    """A tiny zip shaped like EuroSAT.zip (2750/<Class>/<Class>_<n>.jpg, 64x64)."""
    from PIL import Image

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for c, cls in enumerate(data.EUROSAT_CLASSES):
            for i in range(6):
                im = Image.new("RGB", (64, 64), (c * 20, i * 30, 100))
                b = io.BytesIO()
                im.save(b, format="JPEG", quality=90)
                zf.writestr(f"2750/{cls}/{cls}_{i + 1}.jpg", b.getvalue())
    return buf.getvalue()


class _Server:
    """Serves ``files`` by name; ``mode`` per name: ok, truncate, drop, tamper."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.mode: dict[str, str] = {}
        self.hits: dict[str, int] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):  # noqa: N802
                name = self.path.lstrip("/").split("?")[0]
                server.hits[name] = server.hits.get(name, 0) + 1
                body = server.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                mode = server.mode.get(name, "ok")
                if mode == "tamper":
                    body = body[:-10] + b"0123456789"
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode in ("truncate", "drop"):
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    if mode == "drop":  # reset the connection mid-body
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                   b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    s = _Server()
    yield s
    s.close()


@pytest.fixture()
def registry(monkeypatch, tmp_path, server):
    """Point the registry at the local server with test files and their hashes."""
    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path / "cache"))
    npz, zp = _npz_bytes(), _eurosat_zip()
    server.files = {"pneumoniamnist.npz": npz, "EuroSAT.zip": zp}
    test_reg = {
        "pneumoniamnist": data.RemoteFile(
            "pneumoniamnist.npz", "https://example.invalid/pneumoniamnist.npz",
            "md5:" + hashlib.md5(npz).hexdigest(), len(npz), 0.01, "CC BY 4.0", "-"),
        "eurosat": data.RemoteFile(
            "EuroSAT.zip", "https://example.invalid/EuroSAT.zip",
            "sha256:" + hashlib.sha256(zp).hexdigest(), len(zp), 0.01, "MIT", "-"),
    }
    monkeypatch.setattr(data, "REMOTE", test_reg)
    monkeypatch.setenv(data.URL_ENV, server.url)
    return test_reg


def _cache(tmp_path) -> Path:
    return tmp_path / "cache" / "datasets"


def test_real_registry_entries_are_pinned_and_checkable():
    """Every download names fixed bytes: a hash pooch can check, a URL that cannot drift."""
    import re

    lengths = {"md5": 32, "sha256": 64}
    for name, rf in data.REMOTE.items():
        alg, _, digest = rf.known_hash.partition(":")
        assert len(digest) == lengths[alg] and int(digest, 16) >= 0, name
        assert rf.url.startswith("https://") and rf.url.split("?")[0].endswith(rf.filename), name
        if "huggingface.co" in rf.url:  # a revision, not a branch name that can move
            assert re.search(r"/resolve/[0-9a-f]{40}/", rf.url), rf.url
        assert all(u.split("?")[0].endswith(rf.filename) for u in rf.fallback_urls), name


def test_good_download_then_cached(registry, server, tmp_path):
    p = data.download_dataset("pneumoniamnist", progress=False)
    assert p == _cache(tmp_path) / "pneumoniamnist.npz"
    assert p.read_bytes() == server.files["pneumoniamnist.npz"]
    assert server.hits["pneumoniamnist.npz"] == 1
    data.download_dataset("pneumoniamnist", progress=False)  # cached: no request
    assert server.hits["pneumoniamnist.npz"] == 1
    assert sorted(x.name for x in p.parent.iterdir()) == ["pneumoniamnist.npz"]  # no temp files


def test_base_url_parameter_and_cache_parameter(registry, server, tmp_path, monkeypatch):
    monkeypatch.delenv(data.URL_ENV)
    p = data.download_dataset("pneumoniamnist", cache=tmp_path / "elsewhere",
                              base_url=server.url + "/", progress=False)
    assert p.parent == tmp_path / "elsewhere" and p.exists()


@pytest.mark.parametrize("mode", ["truncate", "drop"])
def test_interrupted_download_leaves_nothing_then_retry(registry, server, tmp_path, mode):
    server.mode["pneumoniamnist.npz"] = mode
    with pytest.raises(data.DownloadError) as err:
        data.download_dataset("pneumoniamnist", progress=False)
    msg = str(err.value)
    assert "interrupted" in msg and server.url in msg
    assert "Nothing was cached" in msg and "prefetch" in msg
    assert list(_cache(tmp_path).iterdir()) == []  # no partial file, no temp file
    server.mode["pneumoniamnist.npz"] = "ok"
    p = data.download_dataset("pneumoniamnist", progress=False)
    assert p.read_bytes() == server.files["pneumoniamnist.npz"]


def test_tampered_download_is_set_aside(registry, server, tmp_path):
    server.mode["EuroSAT.zip"] = "tamper"
    with pytest.raises(data.DownloadError, match="hash"):
        data.download_dataset("eurosat", progress=False)
    names = sorted(x.name for x in _cache(tmp_path).iterdir())
    assert names == ["EuroSAT.zip.corrupt"]
    server.mode["EuroSAT.zip"] = "ok"
    assert data.download_dataset("eurosat", progress=False).exists()


def test_corrupted_cached_file_is_set_aside_and_refetched(registry, server, tmp_path):
    p = data.download_dataset("pneumoniamnist", progress=False)
    p.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="wrong hash"):
        p2 = data.download_dataset("pneumoniamnist", progress=False)
    assert p2.read_bytes() == server.files["pneumoniamnist.npz"]
    assert (p.parent / "pneumoniamnist.npz.corrupt").read_bytes() == b"garbage"


def test_offline_gives_clear_error(registry, monkeypatch, tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens on this port now
    monkeypatch.setenv(data.URL_ENV, f"http://127.0.0.1:{port}")
    with pytest.raises(data.DownloadError) as err:
        data.download_dataset("pneumoniamnist", progress=False, timeout=5)
    msg = str(err.value)
    assert "could not connect" in msg and f"127.0.0.1:{port}" in msg
    assert str(_cache(tmp_path)) in msg and "TLCOURSE_CACHE" in msg


def test_unknown_download_names(registry):
    with pytest.raises(ValueError, match="known"):
        data.download_dataset("imagenet")
    with pytest.raises(ValueError, match="ships with the course"):
        data.download_dataset("clipart")


def test_load_downloaded_datasets(registry):
    s = data.load_dataset("pneumoniamnist", image_size=32, as_numpy=True)
    assert s.class_names == ["normal", "pneumonia"]
    assert s.train[0].shape == (12, 32, 32, 3) and s.train[0].dtype == np.float32
    assert s.counts == {"train": 12, "val": 4, "test": 6}
    e = data.load_dataset("eurosat", image_size=64, batch_size=8)
    assert len(e.class_names) == 10
    x, y = next(iter(e.train))
    assert tuple(x.shape) == (8, 64, 64, 3)
    assert sum(e.counts.values()) == 60 and e.counts["val"] == 10 and e.counts["test"] == 10


def test_a_failing_source_falls_back_to_the_next(registry, server, monkeypatch, tmp_path):
    monkeypatch.delenv(data.URL_ENV)
    zp = server.files["EuroSAT.zip"]
    server.files["mirror/EuroSAT.zip"] = zp[:-10] + b"0123456789"  # the mirror serves a changed file
    monkeypatch.setitem(data.REMOTE, "eurosat", data.RemoteFile(
        "EuroSAT.zip", f"{server.url}/gone/EuroSAT.zip", registry["eurosat"].known_hash, len(zp), 0.01,
        "MIT", "-", fallback_urls=(f"{server.url}/mirror/EuroSAT.zip", f"{server.url}/EuroSAT.zip")))
    with pytest.warns(UserWarning, match="Trying the next source") as caught:
        path = data.download_dataset("eurosat", progress=False)
    assert path.read_bytes() == zp
    assert len(caught) == 2 and "404" in str(caught[0].message) and "hash" in str(caught[1].message)
    assert server.hits == {"gone/EuroSAT.zip": 1, "mirror/EuroSAT.zip": 1, "EuroSAT.zip": 1}
    server.files = {}  # cached now: no network needed
    assert data.download_dataset("eurosat", progress=False) == path
