"""The committed notebooks as a learner first sees them, in JupyterLab at 1366x768 (headless Chromium).

For each ``notebooks/NN_*.ipynb`` (copied by the ``lab_server`` fixture), without running
anything: it opens unmodified (no "●" on the tab once the kernel is up; checked when the kernel's
Python is the one that executed the notebook, since JupyterLab then writes its version), holds no error
output, every solution's code **and** stored output is folded, every stored widget renders
(no "Error displaying widget"; notebook 02's panel from the stored widget state: the fixture
trusts the copies, as the README tells learners to), and its
figures are shown at a scale where 10-point tick labels stay at least 9 px high. Then Run All
of 00 in the browser: no error and no stderr output at all (TensorFlow's start-up lines are
silenced by ``setup_course``).

Needs ``playwright`` and Debian's ``chromium-headless-shell`` (skipped without them).
"""

from __future__ import annotations

import json
import platform
import re
import time

import pytest
from conftest import REPO
from test_notebook02_in_browser import PROGRESS_JS, _shoot, _wait

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STORED = sorted(p.name for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))

#: What JupyterLab shows of the open notebook: dirty flag, stored errors and stderr, the solution
#: cells' folding, and the displayed scale of every figure.
STATE_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cells = panel.content.widgets;
  const out = {dirty: panel.context.model.dirty, errors: [], stderr: [], unfolded: [], scales: []};
  cells.forEach((c, i) => {
    const tags = c.model.getMetadata('tags') || [];
    const outputs = c.model.type === 'code' ? c.model.outputs.toJSON() : [];
    for (const o of outputs) {
      if (o.output_type === 'error') out.errors.push(i + ': ' + o.ename);
      if (o.output_type === 'stream' && o.name === 'stderr') out.stderr.push(i + ': ' + String(o.text).slice(0, 120));
    }
    if (tags.includes('solution')) {
      if (!c.inputHidden || (outputs.length && !c.outputHidden)) out.unfolded.push(i);
    }
  });
  out.text = Array.from(panel.node.querySelectorAll('.jp-OutputArea-output')).map(e => e.innerText).join(String.fromCharCode(10));
  for (const img of panel.node.querySelectorAll('.jp-OutputArea-output img')) {
    if (img.naturalWidth > 0 && img.clientWidth > 0) out.scales.push(img.clientWidth / img.naturalWidth);
  }
  return out;
}"""


def _open(page, base_url: str, name: str) -> None:
    page.goto(f"{base_url}/lab/tree/{name}", wait_until="domcontentloaded")
    page.wait_for_function("() => !!window.jupyterapp", timeout=120_000)
    _wait(page, lambda: page.evaluate("""(name) => {
      const w = window.jupyterapp.shell.currentWidget;
      return !!(w && w.context && w.context.path.endsWith(name) && w.context.isReady && w.sessionContext
                && w.sessionContext.session && w.sessionContext.session.kernel
                && w.sessionContext.session.kernel.status === 'idle');
    }""", name), 180, f"{name} and an idle kernel")
    page.wait_for_timeout(3000)  # let the widget manager restore the stored state


@pytest.mark.parametrize("name", STORED)
def test_stored_notebook_as_a_learner_opens_it(lab_server, browser, name):
    base_url, root = lab_server
    page = browser.new_page()
    page.set_default_timeout(30_000)
    try:
        _open(page, base_url, name)
        state = page.evaluate(STATE_JS)
        shot = _shoot(page, name[:2])
        stored = json.loads((root / name).read_text(encoding="utf-8"))["metadata"]["language_info"]
        if stored.get("version") == platform.python_version():  # another Python: JupyterLab updates it
            assert not state["dirty"], f"{name} opens modified (● on the tab); screenshot {shot}"
        assert not state["errors"], state["errors"]
        assert not state["unfolded"], f"{name}: solution cells shown unasked: {state['unfolded']}"
        outputs = state["text"]   # this notebook's outputs only (the workspace may restore others' tabs)
        assert "Error displaying widget" not in outputs, f"a stored widget did not render; screenshot {shot}"
        small = [round(s, 2) for s in state["scales"] if s < 0.65]
        assert not small, f"{name}: figures shown at {small} of their size: ticks under 9 px at 1366 px"
        if name.startswith("02"):  # the panel, from the stored widget state (trusted), without running anything
            slider = page.locator(".widget-slider", has=page.locator(".widget-label", has_text=re.compile(r"^unfreeze$")))
            assert slider.count() == 1, f"the panel is not rendered from the stored state; screenshot {shot}"
            assert page.locator("button.widget-button", has_text="Train").count() == 1
            # untrusted (or on a code host), the panel's plain-text stand-in says what it is
            plain = [o["data"]["text/plain"] for c in json.loads((root / name).read_text(encoding="utf-8"))["cells"]
                     for o in c.get("outputs", []) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
            assert any("".join(p).startswith("[fine-tuning panel") for p in plain), plain
    finally:
        page.close()


def test_run_all_of_00_shows_no_stderr(lab_server, browser):
    base_url, _ = lab_server
    name = next(n for n in STORED if n.startswith("00"))
    page = browser.new_page()
    page.set_default_timeout(30_000)
    try:
        _open(page, base_url, name)
        page.evaluate("""async () => {
          await window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs');
          window.jupyterapp.commands.execute('notebook:run-all-cells');
        }""")
        start = time.monotonic()

        def finished():
            p = page.evaluate(PROGRESS_JS)
            return p if p["done"] == p["total"] and p["running"] == 0 and p["kernel"] == "idle" else None

        _wait(page, finished, 300, "Run All of 00", poll=2)
        print(f"\n00 ran in {time.monotonic() - start:.0f} s in the browser")
        state = page.evaluate(STATE_JS)
        assert not state["errors"], state["errors"]
        assert not state["stderr"], f"stderr boxes after Run All of 00: {state['stderr']}"
    finally:
        page.close()
