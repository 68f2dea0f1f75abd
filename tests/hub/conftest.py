"""The JupyterHub integration tests (marker ``hub``) run only when asked for.

They start a hub, a proxy and one Jupyter server and kernel per student: minutes of CPU
and Node.js with ``configurable-http-proxy`` in ``hub/node_modules``. The README's test
command leaves them out (deselected, not skipped); run them with

    TLCOURSE_HUB_TESTS=1 python -m pytest tests/hub      # what .ci/run does
    python -m pytest tests/hub -m hub                    # same, by the marker
"""

from __future__ import annotations

import os


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "hub: starts a JupyterHub on 127.0.0.1 with concurrent students (minutes; "
        "run with TLCOURSE_HUB_TESTS=1 or -m hub)")


def hub_tests_requested(config) -> bool:
    return os.environ.get("TLCOURSE_HUB_TESTS", "") not in ("", "0") or "hub" in (config.getoption("markexpr") or "")


def pytest_collection_modifyitems(config, items):
    if hub_tests_requested(config):
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("hub") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
