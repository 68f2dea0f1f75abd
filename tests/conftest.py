"""Fixtures for the unit tests: a loopback server and VGG16 weights served from it."""

from __future__ import annotations

import hashlib

import pytest
from support import LoopbackServer


@pytest.fixture()
def server():
    """An HTTP server on 127.0.0.1 (never the internet); see :class:`support.LoopbackServer`."""
    s = LoopbackServer()
    yield s
    s.close()


@pytest.fixture()
def fake_vgg16(server, monkeypatch):
    """VGG16's weights entry pointed at ``server``, which serves these bytes."""
    from tlcourse import backbones as bb

    body = b"HDF-ish test weights " * 100
    server.files["vgg16_test_notop.h5"] = body
    monkeypatch.setattr(bb, "VGG16_WEIGHTS", ("vgg16_test_notop.h5", server.url + "/vgg16_test_notop.h5",
                                              hashlib.md5(body).hexdigest()))
    return body
