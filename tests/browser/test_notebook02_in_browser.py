"""Notebook 02's fine-tuning panel in a real browser: run a small notebook in JupyterLab, use the panel.

The headless widget tests (tests/test_widgets.py) drive the Python side; this test checks
what only a browser shows: that every widget renders (no "Error displaying widget"), that
the sliders answer the keyboard, that the kernel answers a slider move (the params label is
computed in Python), and that the Train button fills the status and the plot.

The notebook (``conftest.PANEL_CELLS``) holds only what the panel needs, on clip art at
64 px with 8 training pictures per class, so the whole test takes seconds rather than the
minutes notebook 02 runs. Needs the python package ``playwright`` and Debian's
``chromium-headless-shell`` (skipped without them).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = "panel.ipynb"  # written by the lab_server fixture (conftest.PANEL_CELLS)
RUN_TIMEOUT = 300  # s for Run All (38 s measured on 2 busy cores, load average 9)
TRAIN_TIMEOUT = 180  # s for one Train click at depth 1

# Progress of the open notebook, read from JupyterLab's models (galata exposes window.jupyterapp).
PROGRESS_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  const errors = [];
  for (const c of cells) {
    for (const o of c.model.outputs.toJSON()) {
      if (o.output_type === 'error') errors.push(o.ename + ': ' + o.evalue);
    }
  }
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return {total: cells.length,
          done: cells.filter(c => c.model.executionCount !== null).length,
          running: cells.filter(c => c.promptNode && c.promptNode.textContent.includes('*')).length,
          errors: errors,
          kernel: kernel ? kernel.status : 'none'};
}"""


def _shoot(page, name: str) -> str:
    path = Path(tempfile.gettempdir()) / f"tlcourse-browser-{name}-{int(time.time())}.png"
    try:
        page.screenshot(path=str(path), full_page=False)
    except Exception as error:  # the page may be gone; the assertion message matters more
        return f"(no screenshot: {error})"
    print(f"screenshot: {path}")
    return str(path)


def _wait(page, predicate, timeout: float, what: str, poll: float = 0.5):
    """Poll ``predicate()`` until it returns something truthy; fail with a screenshot."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        page.wait_for_timeout(poll * 1000)
    shot = _shoot(page, re.sub(r"\W+", "-", what)[:40])
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r}); screenshot {shot}")


def _run_all_cells(page) -> None:
    """Clear stored outputs (so progress is measurable), Run All, wait for the last cell."""
    page.evaluate("""async () => {
      const app = window.jupyterapp;
      await app.started; await app.restored;
    }""")
    _wait(page, lambda: page.evaluate("""() => {
      const w = window.jupyterapp.shell.currentWidget;
      return !!(w && w.context && w.context.path.endsWith('%s') && w.sessionContext
                && w.sessionContext.session && w.sessionContext.session.kernel
                && w.sessionContext.session.kernel.connectionStatus === 'connected'
                && w.content.widgets.length > 0);
    }""" % NOTEBOOK), 120, "the notebook and its kernel")
    page.evaluate("""async () => {
      const w = window.jupyterapp.shell.currentWidget;
      await w.sessionContext.ready;
      await window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs');
    }""")
    start = time.monotonic()
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    def finished():
        p = page.evaluate(PROGRESS_JS)
        if p["errors"]:
            shot = _shoot(page, "cell-error")
            pytest.fail(f"a cell raised while running all cells: {p['errors']}; screenshot {shot}")
        if p["done"] == p["total"] and p["running"] == 0 and p["kernel"] == "idle":
            return p
        return None

    p = _wait(page, finished, RUN_TIMEOUT, "Run All Cells to finish", poll=2)
    print(f"\nran {p['total']} code cells in {time.monotonic() - start:.0f} s")


def _panel(page):
    """Locators for the fine-tuning panel (the VBox holding the 'unfreeze' slider)."""
    depth = page.locator(".widget-slider", has=page.locator(".widget-label", has_text=re.compile(r"^unfreeze$")))
    lr = page.locator(".widget-slider", has=page.locator(".widget-label", has_text=re.compile(r"^learning rate$")))
    box = page.locator(".widget-vbox", has=depth).last
    return {
        "depth": depth,
        "depth_handle": depth.locator(".noUi-handle"),
        "depth_readout": depth.locator(".widget-readout"),
        "params": box.locator(".tlcourse-panel-params"),
        "lr": lr,
        "lr_handle": lr.locator(".noUi-handle"),
        "lr_readout": lr.locator(".widget-readout"),
        "train": box.locator("button.widget-button", has_text="Train"),
        "status": box.locator(".tlcourse-panel-status"),
        "output": box.locator(".tlcourse-panel-output"),
        "test": box.locator("button.widget-button", has_text="Check on test"),
        "test_status": box.locator(".tlcourse-panel-test-status"),
    }


def _text(locator) -> str:
    return locator.inner_text().strip()


def _press_until(page, handle, key: str, readout, want: str, max_presses: int = 30) -> None:
    """Press ``key`` on a slider handle until its readout shows ``want``."""
    handle.focus()
    for _ in range(max_presses):
        if _text(readout) == want:
            return
        handle.press(key)
        page.wait_for_timeout(150)
    if _text(readout) != want:
        shot = _shoot(page, "slider")
        pytest.fail(f"slider readout is {_text(readout)!r}, wanted {want!r} after {max_presses} x {key}; "
                    f"screenshot {shot}")


def test_notebook02_panel_in_jupyterlab(lab_server, browser):
    base_url, root = lab_server
    assert (root / NOTEBOOK).exists()
    page = browser.new_page()
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.set_default_timeout(30_000)
    try:
        page.goto(f"{base_url}/lab/tree/{NOTEBOOK}", wait_until="domcontentloaded")
        page.wait_for_function("() => !!window.jupyterapp", timeout=120_000)
        _run_all_cells(page)

        # 1. Every widget rendered: no "Error displaying widget" (model not found, missing
        #    frontend extension, version mismatch...) anywhere on the page.
        ui = _panel(page)
        ui["depth"].first.wait_for(state="visible", timeout=60_000)
        page_text = page.locator("body").inner_text()
        assert "Error displaying widget" not in page_text, (
            f"a widget failed to render; screenshot {_shoot(page, 'widget-error')}")
        assert ui["depth"].count() == 1 and ui["lr"].count() == 1, "expected exactly one panel"
        ui["depth"].scroll_into_view_if_needed()

        # The notebook's last cell set depth 2, lr 3e-4 and trained once:
        # the browser must show the kernel-side state.
        assert _text(ui["depth_readout"]) == "2"
        # (the browser formats ".0e" with d3-format: "3e-4"; Python writes "3e-04")
        assert float(_text(ui["lr_readout"])) == pytest.approx(3e-4)
        old_report = _text(ui["status"])
        assert "trainable parameters" in old_report and "baseline" in old_report, old_report
        old_img = ui["output"].locator("img").first.get_attribute("src")

        # 2. The depth slider answers the keyboard, and the kernel answers the slider:
        #    the params label (computed in Python) follows the depth.
        label_2 = _text(ui["params"])
        assert re.search(r"\b2 blocks \(", label_2), label_2
        _press_until(page, ui["depth_handle"], "ArrowRight", ui["depth_readout"], "3")
        label_3 = _wait(page, lambda: (t := _text(ui["params"])) != label_2 and t, 30,
                        "the params label to follow depth 3")
        assert re.search(r"\b3 blocks \(", label_3) and "trainable" in label_3, label_3
        height = ui["params"].bounding_box()["height"]
        assert height < 30, f"the params label wraps at 1366 px ({height:.0f} px high): {label_3!r}"
        _press_until(page, ui["depth_handle"], "ArrowLeft", ui["depth_readout"], "1")
        label_1 = _wait(page, lambda: re.search(r"\b1 block \(", t := _text(ui["params"])) and t, 30,
                        "the params label to follow depth 1")
        n = {}
        for lbl in (label_1, label_3):
            value, unit = re.match(r"([\d.]+) ([kM])", lbl).groups()
            n[lbl] = float(value) * (1e6 if unit == "M" else 1e3)
        assert n[label_1] < n[label_3], (label_1, label_3)

        # 3. The learning-rate slider (log scale, step 10^0.25) answers the keyboard.
        _press_until(page, ui["lr_handle"], "ArrowLeft", ui["lr_readout"], "2e-4")  # 10**-3.75
        lr_text = f"{float(_text(ui['lr_readout'])):.0e}"  # as Python's report writes it

        # 4. Train at depth 1: the status shows the new report, the output a new plot.
        ui["train"].click()
        def report():
            t = _text(ui["status"])
            return t if ("trainable parameters" in t and "baseline" in t and t != old_report) else None
        start = time.monotonic()
        new_report = _wait(page, report, TRAIN_TIMEOUT, "the report after Train")
        print(f"Train at depth 1 answered in {time.monotonic() - start:.0f} s")
        assert re.search(r"depth 1, learning rate " + re.escape(lr_text), new_report), new_report
        assert "validation" in new_report and "test" not in new_report, new_report   # choose on validation
        assert "Error" not in new_report, new_report
        _wait(page, lambda: (src := ui["output"].locator("img").first.get_attribute("src")) and src != old_img,
              60, "a new plot in the panel's output")
        # Train re-enables itself last (after the report and the plot), so wait for it.
        _wait(page, lambda: ui["train"].is_enabled(), 30, "the Train button to be enabled again")
        # 5. The test set only on request, for the final pick.
        assert "test accuracy of" not in _text(ui["test_status"])
        ui["test"].click()
        _wait(page, lambda: "test accuracy of depth 1" in _text(ui["test_status"]), 30,
              "the test accuracy after 'Check on test'")
        assert "Error displaying widget" not in page.locator("body").inner_text()
        if os.environ.get("TLCOURSE_BROWSER_SCREENSHOTS"):
            ui["depth"].scroll_into_view_if_needed()
            _shoot(page, "passed")
    except Exception:
        print("browser console errors:", *console_errors[-20:], sep="\n  ")
        _shoot(page, "failure")
        raise
    finally:
        page.close()
