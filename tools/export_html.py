"""Export the course's notebooks to HTML for readers, with the solutions folded.

nbconvert's own templates show every cell in full, so a plain
``jupyter nbconvert --to html`` puts each exercise's answer (code and output)
right under its question. This uses JupyterLab's template with one change
(``tools/html_template/tlcourse``): each cell tagged ``solution`` sits in a
closed ``<details>`` element ("Solution (click to show ...)").

Stored widget state (notebook 02's panel) is exported too; a reader online sees
the panel drawn by the widget HTML manager that the page loads from jsDelivr,
a reader offline sees the static picture of a click that stands beside it.

Usage (repository root)::

    .venv/bin/python tools/export_html.py                 # every notebook -> build/html/
    .venv/bin/python tools/export_html.py notebooks/02_fine_tuning.ipynb -o site
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = Path(__file__).resolve().parent / "html_template"


def export_html(notebook: Path, out_dir: Path) -> Path:
    """Write ``notebook`` as ``out_dir/<name>.html`` with folded solutions; return the path."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook = Path(notebook)
    if not notebook.is_file():
        raise FileNotFoundError(f"no notebook at {notebook}: give the path of an .ipynb file")
    exporter = HTMLExporter(template_name="tlcourse", extra_template_basedirs=[str(TEMPLATES)])
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4),
                                          resources={"metadata": {"name": notebook.stem}})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{notebook.stem}.html"
    target.write_text(body, encoding="utf-8")
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        default=sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))
    parser.add_argument("-o", "--out", type=Path, default=ROOT / "build" / "html")
    args = parser.parse_args(argv)
    for nb in args.notebooks:
        print(export_html(nb, args.out))


if __name__ == "__main__":
    main()
