"""The HTML a reader opens (``tools/export_html.py``), checked offline in headless Chromium at 1366x768.

For each stored notebook: the export folds every solution cell (code and output) in a closed
``<details>`` element that opens on a click, shows its figures at a readable scale, holds no error
output, and asks the network only for the CDN scripts nbconvert's page loads (MathJax, require.js,
mermaid, and for notebook 02 the widget HTML manager). Offline, those fail: formulas stay as TeX and
notebook 02's stored panel is not drawn, so the static picture of a click beside it must be there.
Online, the widget manager from unpkg draws the panel from the stored widget state.

The first test needs no browser (nbconvert only); the second needs ``playwright`` and Debian's
``chromium-headless-shell`` (skipped without them).
"""

from __future__ import annotations

import re
import sys
from urllib.parse import urlparse

import pytest
from conftest import REPO
from test_notebook02_in_browser import _shoot

sys.path.insert(0, str(REPO / "tools"))
from export_html import export_html  # noqa: E402

STORED = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: The hosts nbconvert's page loads scripts from; nothing else may be asked for.
CDN_HOSTS = {"cdnjs.cloudflare.com", "unpkg.com", "cdn.jsdelivr.net"}

PAGE_JS = """() => {
  const visible = e => e.checkVisibility({visibilityProperty: true, contentVisibilityAuto: true});
  const details = Array.from(document.querySelectorAll('details.tlcourse-solution'));
  const out = {details: details.length, open: details.filter(d => d.open).length,
               solutionVisible: 0, errors: [], scales: [], images: 0};
  for (const d of details)
    for (const c of d.querySelectorAll('.jp-Cell')) if (visible(c)) out.solutionVisible += 1;
  for (const e of document.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'))
    if (/Traceback|Error/.test(e.innerText)) out.errors.push(e.innerText.slice(0, 120));
  for (const img of document.querySelectorAll('.jp-OutputArea-output img')) {
    if (!visible(img) || img.naturalWidth === 0) continue;
    out.images += 1;
    out.scales.push(img.clientWidth / img.naturalWidth);
  }
  return out;
}"""


def _solution_cells(notebook) -> int:
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    return sum("solution" in c.metadata.get("tags", []) for c in nb.cells)


def _shown_figures(notebook) -> int:
    """Stored PNG outputs outside the solution cells (those are folded)."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
               and "solution" not in c.metadata.get("tags", []) for o in c.outputs)


@pytest.mark.parametrize("notebook", STORED, ids=lambda p: p.name[:2])
def test_export_folds_every_solution(tmp_path, notebook):
    html = export_html(notebook, tmp_path).read_text(encoding="utf-8")
    n = _solution_cells(notebook)
    assert n >= 2, f"{notebook.name}: fewer than two exercises with solutions"
    assert html.count('<details class="tlcourse-solution">') == n
    assert "<details open" not in html


def test_export_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="give the path of an .ipynb"):
        export_html(tmp_path / "nope.ipynb", tmp_path)


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("notebook", STORED, ids=lambda p: p.name[:2])
def test_html_export_read_offline(browser, tmp_path, notebook):
    html = export_html(notebook, tmp_path)
    page = browser.new_page()
    asked: list[str] = []

    def offline(route):
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            asked.append(url)
            route.abort()

    page.route("**/*", offline)
    try:
        page.goto(html.as_uri(), wait_until="load")
        page.wait_for_timeout(500)
        state = page.evaluate(PAGE_JS)
        shot = _shoot(page, f"html-{notebook.name[:2]}")
        assert state["details"] == _solution_cells(notebook) and state["open"] == 0
        assert state["solutionVisible"] == 0, f"solution cells shown unasked; screenshot {shot}"
        assert not state["errors"], state["errors"]
        assert state["images"] == _shown_figures(notebook), f"a figure is not rendered; screenshot {shot}"
        small = [round(s, 2) for s in state["scales"] if s < 0.65]
        assert not small, f"{notebook.name}: figures shown at {small} of their size"
        hosts = {urlparse(u).hostname for u in asked}
        assert hosts <= CDN_HOSTS, f"the page asked for {sorted(hosts - CDN_HOSTS)}"
        if notebook.name.startswith("02"):
            assert any("html-manager" in u for u in asked), "the widget manager is not loaded for the panel"
        # a click on the first solution's summary shows its code
        page.locator("details.tlcourse-solution > summary").first.click()
        opened = page.evaluate("() => document.querySelector('details.tlcourse-solution').open")
        code = page.locator("details.tlcourse-solution").first.locator(".jp-InputArea").inner_text()
        assert opened and re.search(r"\w", code), "the solution does not open on a click"
    finally:
        page.close()
