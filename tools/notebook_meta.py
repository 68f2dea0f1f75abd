"""Normalise an executed notebook's metadata so diffs stay small and slides work.

* every cell gets RISE/Jupyter slide metadata: a markdown cell whose metadata already
  says "slide" keeps it; others become "-" (same slide) or "fragment";
* solution cells (tag ``solution``) keep their input collapsed;
* the notebook metadata keeps only kernelspec, language_info name and jupytext.

Usage: python tools/notebook_meta.py NOTEBOOK.ipynb [...]
"""

from __future__ import annotations

import json
import sys


def normalise(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    for cell in nb["cells"]:
        meta = cell.setdefault("metadata", {})
        meta.pop("execution", None)
        slide = meta.setdefault("slideshow", {})
        slide.setdefault("slide_type", "-")
        if "solution" in meta.get("tags", []):
            meta.setdefault("jupyter", {})["source_hidden"] = True
    # "widgets" holds the saved widget state, so a stored notebook shows its panels
    keep = {k: nb["metadata"][k] for k in ("kernelspec", "jupytext", "widgets") if k in nb["metadata"]}
    keep["language_info"] = {"name": "python"}
    nb["metadata"] = keep
    with open(path, "w", encoding="utf-8") as f:
        json.dump(nb, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    for p in sys.argv[1:]:
        normalise(p)
