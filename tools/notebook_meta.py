"""Normalise an executed notebook's metadata so diffs stay small and slides work.

* every cell gets RISE/Jupyter slide metadata: a markdown cell whose metadata already
  says "slide" keeps it; others become "-" (same slide) or "fragment";
* solution cells (tag ``solution``) keep their input collapsed, and their stored outputs too
  (``jupyter.outputs_hidden``: JupyterLab shows a bar to click, not the answer);
* the notebook metadata keeps only kernelspec, jupytext, widgets and the kernel's full language_info
  (JupyterLab fills in a partial one when the kernel starts, and the notebook opened modified);
* cells tagged ``solution`` / ``check`` get nbgrader's metadata (answer cell / graded test
  cell), from ``tools/make_student_copies.py``'s ``nbgrader_cells``;
* TensorFlow's C++ start-up log lines (absl "All log messages before ...", "I0000 ...
  cudart_stub ... Could not find cuda drivers") are removed from stderr outputs: no
  environment variable silences them in TF 2.21, and a learner reads red lines as an error;
* warnings that name a file of this checkout (``/home/me/tlcourse/tlcourse/training.py:295:``)
  name it relative to the repository (``tlcourse/training.py:295:``), so a stored notebook
  shows no maintainer's folder;
* in stdout, the checkout's own folder is left out (``/home/me/tlcourse/datasets`` ->
  ``datasets``, ``/home/me/tlcourse/.venv/bin/python3`` -> ``.venv/bin/python3``) and the
  home folder is written ``~`` (notebook 00 prints the doctor's report and the cache folder);
  the same in Markdown outputs (00's environment table).

Usage: python tools/notebook_meta.py NOTEBOOK.ipynb [...]
"""

from __future__ import annotations

import json
import platform
import re
import sys
import os
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_student_copies import nbgrader_cells  # noqa: E402

_ROOT = str(Path(__file__).resolve().parent.parent) + "/"
_HOME = str(Path.home())

#: the repository root, as warnings print it (``.../tlcourse/training.py`` -> ``tlcourse/...``)
_REPO_PREFIX = re.compile(r"(?<![\w/])/[^\s:]*?/(?=tlcourse/[\w/]+\.py:\d+:)")

#: a TensorFlow/absl C++ log line: "WARNING: All log messages before absl::InitializeLog() ..."
#: or glog style "I0000 00:00:1795954736.021774   12151 cudart_stub.cc:31] ..."
_TF_LOG_LINE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|"
                          r"[IWE]\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.]+:\d+\]).*\n?$")


#: the course cache folder of whoever executed the notebook (default ~/.cache/tlcourse, or $TLCOURSE_CACHE)
_CACHE = os.environ.get("TLCOURSE_CACHE") or str(Path.home() / ".cache" / "tlcourse")


#: the folder holding the executing virtualenv (``/home/me/tlcourse/.venv`` -> ``/home/me/tlcourse/``), when
#: the notebook ran with a ``.venv`` of another checkout (a git worktree sharing one virtualenv)
_VENV_HOME = str(Path(sys.prefix).parent) + "/" if Path(sys.prefix).name == ".venv" else _ROOT


#: what ipykernel reports for this Python (used when a notebook's stored language_info is incomplete)
_LANGUAGE_INFO = {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
                  "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
                  "pygments_lexer": "ipython3", "version": platform.python_version()}


def _local_paths(text: str) -> str:
    """``text`` without this checkout's absolute folder or the executor's cache folder, home as ``~``."""
    text = text.replace(_ROOT, "").replace(_VENV_HOME + ".venv/", ".venv/")
    text = text.replace(_CACHE, "$TLCOURSE_CACHE").replace("~/.cache/tlcourse", "$TLCOURSE_CACHE")
    return re.sub(rf"(?<![\w/]){re.escape(_HOME)}(?=/|\s|$)", "~", text) if _HOME not in ("", "/") else text


def _strip_tf_log(outputs: list) -> list:
    """Drop TensorFlow's C++ log lines from stderr stream outputs (and outputs left empty);
    make paths into this checkout relative to it."""
    kept = []
    for out in outputs:
        if out.get("output_type") == "stream" and out.get("name") == "stderr":
            text = out["text"] if isinstance(out["text"], str) else "".join(out["text"])
            lines = text.splitlines(keepends=True)
            kept_lines = [_REPO_PREFIX.sub("", line) for line in lines if not _TF_LOG_LINE.match(line)]
            if not "".join(kept_lines).strip():
                continue
            if kept_lines != lines:
                out["text"] = kept_lines
        elif out.get("output_type") == "stream" and out.get("name") == "stdout":
            text = out["text"] if isinstance(out["text"], str) else "".join(out["text"])
            local = _local_paths(text)
            if local != text:
                out["text"] = local.splitlines(keepends=True)
        elif "text/markdown" in out.get("data", {}):   # e.g. 00's environment table
            value = out["data"]["text/markdown"]
            text = value if isinstance(value, str) else "".join(value)
            local = _local_paths(text)
            if local != text:
                out["data"]["text/markdown"] = local.splitlines(keepends=True)
        kept.append(out)
    return kept


def normalise(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    for cell in nb["cells"]:
        meta = cell.setdefault("metadata", {})
        meta.pop("execution", None)
        if cell.get("cell_type") == "code":
            cell["outputs"] = _strip_tf_log(cell.get("outputs", []))
        slide = meta.setdefault("slideshow", {})
        slide.setdefault("slide_type", "-")
        if "solution" in meta.get("tags", []):
            meta.setdefault("jupyter", {})["source_hidden"] = True
            if cell.get("cell_type") == "code" and cell.get("outputs"):
                meta["jupyter"]["outputs_hidden"] = True   # the answer stays folded too
    nbgrader_cells(nb)   # solution/check tags -> nbgrader's cell metadata (tools/make_student_copies.py)
    # "widgets" holds the saved widget state, so a stored notebook shows its panels
    keep = {k: nb["metadata"][k] for k in ("kernelspec", "jupytext", "widgets") if k in nb["metadata"]}
    # the kernel's full language_info, as JupyterLab writes it when the kernel starts: anything less
    # (e.g. only the name) is "changed" by JupyterLab on opening, so the notebook opened modified (●)
    info = nb["metadata"].get("language_info") or {}
    keep["language_info"] = info if info.get("version") else _LANGUAGE_INFO
    nb["metadata"] = keep
    with open(path, "w", encoding="utf-8") as f:
        json.dump(nb, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    for p in sys.argv[1:]:
        normalise(p)
