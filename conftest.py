"""Shared pytest set-up for the unit tests (tests/) and the nbval notebook runs (notebooks/).

It lives at the top level so that it applies to both folders.
"""

from __future__ import annotations

import os

# Same environment as a notebook's setup cell, before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def pytest_collectstart(collector):
    """Leave stderr out of nbval's comparison.

    Under Jupyter, TensorFlow's C++ log lines land in a stored notebook's
    stderr; under nbval they do not (ipykernel turns off capturing file
    descriptor 2 when ``PYTEST_CURRENT_TEST`` is set), so the two never match.
    The ``hasattr`` guard keeps other collectors working.
    """
    if hasattr(collector, "skip_compare"):
        collector.skip_compare += ("stderr",)
