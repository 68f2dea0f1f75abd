"""VGG16's weights download (notebook 02's optional cell) against a loopback server.

Every failure is a ``WeightsUnavailableError`` that names the file, the URL and the folder,
and never leaves a partial or tampered file where Keras would use it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tlcourse import backbones as bb


@pytest.fixture(autouse=True)
def _keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("TLCOURSE_SHARED_KERAS_HOME", raising=False)


def _target() -> Path:
    return Path(os.environ["KERAS_HOME"]) / "models" / bb.keras_weights_file()[0]


def test_the_real_entry_is_pinned():
    fname, url, md5 = bb.VGG16_WEIGHTS
    assert url.startswith("https://") and url.endswith("/" + fname) and len(md5) == 32
    int(md5, 16)


def test_good_download_then_cached(server, fake_vgg16):
    assert bb.fetch_weights("vgg16") == _target()
    assert _target().read_bytes() == fake_vgg16
    assert bb.fetch_weights("vgg16") == _target()
    assert server.hits == {"vgg16_test_notop.h5": 1}   # the second call did not download


@pytest.mark.parametrize("mode", ["tamper", "truncate", "drop"])
def test_a_bad_download_is_a_clear_error_and_is_not_kept(server, fake_vgg16, mode):
    server.mode["vgg16_test_notop.h5"] = mode
    with pytest.raises(bb.WeightsUnavailableError) as info:
        bb.fetch_weights("vgg16")
    for part in ("vgg16_test_notop.h5", server.url, str(_target().parent), "prefetch"):
        assert part in str(info.value)
    assert not _target().exists()   # nothing notebook 02 would load
    server.mode.clear()   # the network is back: the next call fetches a good copy
    assert bb.fetch_weights("vgg16").read_bytes() == fake_vgg16


def test_a_damaged_cached_file_is_fetched_again(server, fake_vgg16):
    _target().parent.mkdir(parents=True)
    _target().write_bytes(b"damaged")
    assert bb.fetch_weights("vgg16").read_bytes() == fake_vgg16


def test_a_damaged_cached_file_is_set_aside_when_offline(server, fake_vgg16):
    _target().parent.mkdir(parents=True)
    _target().write_bytes(b"damaged")
    server.files.clear()   # 404
    with pytest.raises(bb.WeightsUnavailableError, match="failed its md5 check.*corrupt"):
        bb.fetch_weights("vgg16")
    assert not _target().exists()
    assert _target().with_name(_target().name + ".corrupt").read_bytes() == b"damaged"   # kept, not deleted
