"""Fixtures for the real-browser tests: a throw-away JupyterLab server and a headless Chromium.

Nothing here touches the network beyond 127.0.0.1, so the tests run under CI's
``unshare -n`` (loopback only). Playwright's own browser download is never used:
the browser is Debian's ``chromium-headless-shell`` (or ``TLCOURSE_CHROMIUM``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

#: The notebook the browser test opens, built here (not stored, so nbval never collects it):
#: the fine-tuning panel of notebook 02 on a small real problem (clip art at 64 px, 8 training
#: pictures per class, a stage-1 head trained on the frozen base's features), so that Run All
#: takes seconds, not the minutes of the whole notebook 02.
PANEL_NOTEBOOK = "panel.ipynb"
#: the repository (the committed notebooks are copied next to the panel notebook)
REPO = Path(__file__).resolve().parents[2]
PANEL_CELLS = [
    "import tlcourse\n\nprint(tlcourse.setup_course(seed=0, threads=2))",
    """import types

import keras
import numpy as np

from tlcourse import backbones, data, training, widgets

splits = data.load_dataset("clipart", image_size=64, per_class=8, as_numpy=True)
(x_train, y_train), (x_val, y_val), (x_test, y_test) = splits.train, splits.val, splits.test
base = backbones.load_backbone("efficientnet_lite0", image_size=64)
base.trainable = False
f_train, f_val, f_test = (training.extract_features(base, x).mean(axis=(1, 2)) for x in (x_train, x_val, x_test))
head = keras.Sequential([keras.Input((1280,)), keras.layers.Dense(splits.num_classes, name="logits")])
head.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
             metrics=["accuracy"])
stage1 = head.fit(f_train, y_train, validation_data=(f_val, y_val), epochs=10, verbose=0)
baseline = types.SimpleNamespace(history=stage1.history, test_accuracy=head.evaluate(f_test, y_test, verbose=0)[1])
train_data = training.FineTuneData(x_train, y_train, x_val, y_val, x_test, y_test, splits.num_classes)""",
    """lab = widgets.FineTuneLab(base, head.get_layer("logits").get_weights(), train_data, baseline=baseline)
panel = widgets.fine_tune_panel(lab, depth=3, learning_rate=1e-4, epochs=1)
panel""",
    """panel.depth.value = 2
panel.learning_rate.value = 3e-4
panel.train_button.click()
assert panel.result.blocks == 2 and panel.error is None""",
]

CHROMIUM_CANDIDATES = [
    "/usr/lib/chromium/chromium-headless-shell",  # Debian 12 package chromium-headless-shell
    "/usr/bin/chromium-headless-shell",
    "/usr/lib/chromium/chromium",
    "/usr/bin/chromium",
]

# Chromium flags for a sandbox-less (root, container) run with only loopback:
# no background traffic, no GPU, no first-run or sync, no proxy from the environment.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-proxy-server",
    "--metrics-recording-only",
    "--disable-breakpad",
]

# JupyterLab user settings for tests: render every cell (no windowing, so the panel is
# in the DOM wherever it is), and no news / update checks (they would go online).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "checkForUpdates": False, "fetchNews": "false"},
}


def chromium_path() -> str | None:
    """The headless Chromium binary: ``TLCOURSE_CHROMIUM`` or a Debian path."""
    env = os.environ.get("TLCOURSE_CHROMIUM")
    if env:
        return env if os.access(env, os.X_OK) else None
    for path in CHROMIUM_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("chromium-headless-shell")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with opener.open(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not answer {url} in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium driven by Playwright; skips if either is missing."""
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="python package 'playwright' is not installed")
    exe = chromium_path()
    if exe is None:
        pytest.skip("no headless Chromium: apt-get install chromium-headless-shell "
                    "(or set TLCOURSE_CHROMIUM to a Chromium binary)")
    profile = tempfile.mkdtemp(prefix="tlcourse-chromium-")
    with sync_api.sync_playwright() as p:
        # A persistent context is the way to give Chromium a fresh --user-data-dir.
        context = p.chromium.launch_persistent_context(
            profile, executable_path=exe, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1366, "height": 768}, service_workers="block")
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    """A token-less JupyterLab on 127.0.0.1 serving a temp folder with :data:`PANEL_NOTEBOOK`
    and copies of the committed notebooks (``NN_*.ipynb``, with ``results/``).

    Yields ``(base_url, root_dir)``. Nothing the browser saves can reach the repository.
    """
    import nbformat

    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "notebooks"
    root.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in PANEL_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / PANEL_NOTEBOOK)
    for stored in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):   # as committed, with outputs
        shutil.copy(stored, root / stored.name)
    shutil.copytree(REPO / "notebooks" / "results", root / "results", dirs_exist_ok=True)
    settings = tmp / "user-settings"
    for rel, value in LAB_SETTINGS.items():
        path = settings / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    port = _free_port()
    config = tmp / "jupyter_server_test_config.py"
    config.write_text(
        "from jupyterlab.galata import configure_jupyter_server\n"
        "configure_jupyter_server(c)\n"
        f"c.ServerApp.ip = '127.0.0.1'\n"
        f"c.ServerApp.port = {port}\n"
        f"c.ServerApp.root_dir = {str(root)!r}\n"
        f"c.LabApp.workspaces_dir = {str(tmp / 'workspaces')!r}\n"
        f"c.LabApp.user_settings_dir = {str(settings)!r}\n"
        "c.LabApp.news_url = None\n"
        "c.LabApp.check_for_updates_class = 'jupyterlab.NeverCheckForUpdate'\n"
        "c.ServerApp.open_browser = False\n"
        "c.ServerApp.allow_root = True\n"          # CI containers run as root
        "c.LabApp.extension_manager = 'readonly'\n")  # no PyPI queries from the extension manager
    env = dict(os.environ)  # TLCOURSE_CACHE, KERAS_HOME, MPLCONFIGDIR, TF_* are inherited
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    env["JUPYTER_CONFIG_DIR"] = str(tmp / "jupyter-config")   # ignore the user's own config
    env["JUPYTER_RUNTIME_DIR"] = str(tmp / "jupyter-runtime")
    env["JUPYTER_DATA_DIR"] = str(tmp / "jupyter-data")   # its own trust database
    # trusted, as after `jupyter trust notebooks/*.ipynb` (README): JupyterLab then renders stored widgets
    subprocess.run([sys.executable, "-m", "jupyter", "trust", *map(str, sorted(root.glob("[0-9][0-9]_*.ipynb")))],
                   env=env, check=True, capture_output=True, timeout=120)
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(tmp / "workspaces")
    env.pop("PYTEST_CURRENT_TEST", None)  # the kernel should behave as under a student's Jupyter
    log = tmp / "jupyterlab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", f"--config={config}", "--no-browser"],
                                cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(base_url + "/api/status", proc, log)
        yield base_url, root
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if os.environ.get("TLCOURSE_BROWSER_LOG"):
            print(log.read_text()[-5000:])


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives JupyterLab in a headless Chromium (minutes)")
