"""Notebook conventions: student copies, slide metadata, structure, jupytext pairing.

Runs on every ``notebooks/NN_*.ipynb`` (globbed: new notebooks are checked as
soon as they land), plus a small synthetic notebook for the student-copy tool.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        "make_student_copies", ROOT / "tools" / "make_student_copies.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


msc = _load_tool()


def _src(cell) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_notebooks_exist():
    assert NOTEBOOKS, "no notebooks/NN_*.ipynb found"


# ------------------------------------------------------------ nbgrader metadata
def _synthetic() -> dict:
    def md(text, **meta):
        return {"cell_type": "markdown", "metadata": meta, "source": text}

    def code(text, outputs=(), count=None, **meta):
        return {"cell_type": "code", "execution_count": count, "metadata": meta,
                "outputs": list(outputs), "source": text}

    out = [{"name": "stdout", "output_type": "stream", "text": ["42\n"]}]
    return {
        "cells": [
            md("# 99 · Synthetic\n", slideshow={"slide_type": "slide"}),
            code(["x = 41\n", "print(x + 1)"], out, 1),
            md("## Exercises\n**Exercise 1.** Print 43. Café ✓\n"),
            code(["secret_answer = x + 2\n", "\n", "print(secret_answer)"], out, 2,
                 tags=["solution"], jupyter={"source_hidden": True}),
            md("The answer is 43 because secret_reasoning.\n", tags=["solution"]),
            md("**Exercise 2.** Print 44.\n"),
            code("print(x)\nhidden_two = 44", out, 3, tags=["solution", "nbval-ignore-output"]),
            code("print(x)  # after the solutions: unchanged", out, 4),
        ],
        "metadata": {"kernelspec": {"name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _graded_synthetic() -> dict:
    def md(text, **meta):
        return {"cell_type": "markdown", "metadata": meta, "source": text}

    def code(text, **meta):
        return {"cell_type": "code", "execution_count": None, "metadata": meta, "outputs": [], "source": text}

    return {
        "cells": [
            md("# 99 · Synthetic\n"),
            code("x = 41", nbgrader={"grade": True, "grade_id": "stale"}),
            md("## Exercises\n**Exercise 1.** Print 43.\n"),
            code("### BEGIN SOLUTION\nanswer = x + 2\n### END SOLUTION", tags=["solution"]),
            code("checks.first(answer)", tags=["check"]),
            code("print(x)", tags=["solution", "nbval-ignore-output"]),      # an ungraded solution
            code("### BEGIN SOLUTION\nsecond = 44\n### END SOLUTION", tags=["solution"]),
            code("checks.second(second)", tags=["check", "points-2"]),
        ],
        "metadata": {"kernelspec": {"name": "python3"}}, "nbformat": 4, "nbformat_minor": 5,
    }


def test_nbgrader_cells_synthetic():
    nb = msc.nbgrader_cells(_graded_synthetic())
    meta = [c["metadata"].get("nbgrader") for c in nb["cells"]]
    assert meta[0] is None and meta[1] is None and meta[2] is None   # stale metadata removed
    assert meta[3] == {"grade": False, "grade_id": "first_answer", "locked": False, "schema_version": 3,
                       "solution": True, "task": False}
    assert meta[4] == {"grade": True, "grade_id": "first", "locked": True, "points": 1, "schema_version": 3,
                       "solution": False, "task": False}
    assert meta[5]["grade_id"] == "solution_2" and meta[5]["solution"] and not meta[5]["grade"]
    assert meta[6]["grade_id"] == "second_answer" and meta[7]["points"] == 2
    assert msc.problems(nb) == [] and msc.is_assignment(nb)
    again = msc.nbgrader_cells(json.loads(json.dumps(nb)))
    assert again == nb  # idempotent


def test_nbgrader_problems_are_found():
    nb = _graded_synthetic()
    nb["cells"][3]["source"] = "answer = x + 2"         # no BEGIN/END lines in a graded answer
    assert any("lacks" in p for p in msc.problems(msc.nbgrader_cells(nb)))
    nb = _graded_synthetic()
    nb["cells"][7]["source"] = "checks.first(second)"   # two check cells with one grade id
    assert any("repeated" in p for p in msc.problems(msc.nbgrader_cells(nb)))
    nb = _graded_synthetic()
    nb["cells"][4]["source"] = "print(answer)"          # tagged 'check' but calls no check
    with pytest.raises(ValueError, match="calls no checks"):
        msc.nbgrader_cells(nb)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_nbgrader_metadata_real(path):
    """The committed notebook carries the metadata its tags give; 01-04 have >= 2 graded exercises."""
    nb = _read(path)
    stored = [c["metadata"].get("nbgrader") for c in nb["cells"]]
    fresh = [c["metadata"].get("nbgrader") for c in msc.nbgrader_cells(_read(path))["cells"]]
    assert stored == fresh, "nbgrader metadata out of date: run tools/notebook_meta.py on the notebook"
    assert msc.problems(nb) == []
    from tlcourse import checks

    graded = [m["grade_id"] for m in stored if m and m["grade"]]
    assert set(graded) <= set(checks.EXERCISES), f"check cells call unknown checks: {graded}"
    assert {checks.EXERCISES[g].notebook for g in graded} <= {path.name[:2]}
    if path.name[:2] in ("01", "02", "03", "04"):
        assert len(graded) >= 2
        assert all(f"{g}_answer" in [m["grade_id"] for m in stored if m] for g in graded)


def is_exercise(cell: dict) -> bool:
    """True for a markdown cell that states an exercise (``**Exercise N.**``)."""
    return cell.get("cell_type") == "markdown" and bool(re.search(r"\*\*Exercise\s+\d+", _src(cell)))


# ------------------------------------------------------------- structure
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_slide_metadata(path):
    cells = _read(path)["cells"]
    missing = [i for i, c in enumerate(cells)
               if "slide_type" not in c.get("metadata", {}).get("slideshow", {})]
    assert not missing, f"cells without slideshow.slide_type: {missing} (run tools/notebook_meta.py)"
    assert any(c["metadata"]["slideshow"]["slide_type"] == "slide" for c in cells)
    assert cells[0]["metadata"]["slideshow"]["slide_type"] == "slide"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_structure(path):
    cells = _read(path)["cells"]
    nn = path.name[:2]
    first = cells[0]
    assert first["cell_type"] == "markdown"
    title = _src(first)
    assert re.match(rf"# {nn} · \S", title), f"first cell must start '# {nn} · <title>'"
    assert "Learning goals" in title
    assert re.search(r"run[ -]?time\W+[^\n]*\d+\s*(s\b|sec|min|minute)", title, re.I), \
        "the title cell must state a run-time estimate ('**Run time:** about N minutes')"
    setup = [c for c in cells if c["cell_type"] == "code"
             and re.search(r"\bsetup_course\(", _src(c))]
    assert setup, "no setup cell calling tlcourse.setup_course"
    assert "tlcourse" in _src(setup[0])
    headings = [(i, line) for i, c in enumerate(cells) if c["cell_type"] == "markdown"
                for line in _src(c).splitlines() if re.match(r"#{1,3} ", line)]
    assert headings and re.match(r"#{1,3} Exercises\b", headings[-1][1]), \
        f"the last section must be 'Exercises', got {headings[-1][1]!r}"
    assert any(is_exercise(c) for c in cells[headings[-1][0]:])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_jupytext_pair(path):
    import jupytext

    py = path.with_suffix(".py")
    assert py.is_file(), f"{path.name} has no paired {py.name} (jupytext --set-formats ipynb,py:percent)"
    text_nb = jupytext.read(py)
    ipynb = _read(path)
    code_py = [c.source.strip() for c in text_nb.cells if c.cell_type == "code"]
    code_nb = [_src(c).strip() for c in ipynb["cells"] if c["cell_type"] == "code"]
    assert len(code_py) == len(code_nb), f"{py.name}: {len(code_py)} code cells, ipynb {len(code_nb)}"
    for i, (a, b) in enumerate(zip(code_py, code_nb)):
        assert a == b, f"code cell {i} differs between {py.name} and {path.name}"
    tags_py = [c.metadata.get("tags", []) for c in text_nb.cells if c.cell_type == "code"]
    tags_nb = [c["metadata"].get("tags", []) for c in ipynb["cells"] if c["cell_type"] == "code"]
    assert tags_py == tags_nb, "cell tags (solution, nbval-*) differ between the pair"


# ------------------------------------------------- prose in code cells
def prose_comment_blocks(source: str, min_lines: int = 4, min_words: int = 5) -> list[str]:
    """Runs of ``min_lines`` or more whole-line comments that read as sentences.

    A learner sees a code cell's comments as code, not as text: a paragraph
    belongs in a markdown cell. A line counts as prose when it has at least
    ``min_words`` words; one shorter line (a paragraph's last) is allowed per run.
    """
    blocks, run = [], []

    def flush():
        if len(run) >= min_lines and sum(len(re.findall(r"[A-Za-z]{2,}", line)) >= min_words
                                         for line in run) >= len(run) - 1:
            blocks.append("\n".join(run))
        run.clear()

    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") and not stripped.startswith("#!"):
            run.append(stripped)
        else:
            flush()
    flush()
    return blocks


def test_prose_comment_blocks_are_found():
    paragraph = ("x = 1\n#\n# **Why is validation accuracy sometimes above training accuracy?** Look at the\n"
                 "# curves. The training accuracy Keras reports is measured during the epoch, on\n"
                 "# augmented images, with dropout switched on, and averaged over batches while the\n"
                 "# weights still change. Measured the same way, the picture changes:\n")
    assert len(prose_comment_blocks(paragraph)) == 1
    code_comments = ("# %%\nbase.trainable = True  # switch the model on\n# stage 1\n# stage 2\n"
                     "x = 1\n# a: b\n# c\n# d\n# e\n")
    assert prose_comment_blocks(code_comments) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_prose_in_code_cells(path):
    import jupytext

    cells = [c for c in jupytext.read(path.with_suffix(".py")).cells if c.cell_type == "code"]
    found = [block for c in cells for block in prose_comment_blocks(c.source)]
    assert not found, f"{path.with_suffix('.py').name}: a paragraph in a code cell belongs in a markdown cell:\n{found[0]}"


# ------------------------------------------------- answers folded until asked for
def _load_meta_tool():
    spec = importlib.util.spec_from_file_location("notebook_meta", ROOT / "tools" / "notebook_meta.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _unfolded_solutions(nb: dict) -> list[int]:
    """Indices of solution cells whose source, or stored outputs, JupyterLab would show unasked."""
    bad = []
    for i, c in enumerate(nb["cells"]):
        if "solution" not in c.get("metadata", {}).get("tags", []):
            continue
        jup = c["metadata"].get("jupyter", {})
        if c["cell_type"] == "code" and not jup.get("source_hidden"):
            bad.append(i)
        elif c.get("outputs") and not jup.get("outputs_hidden"):
            bad.append(i)
    return bad


def test_notebook_meta_folds_solution_outputs(tmp_path):
    path = tmp_path / "99_synthetic.ipynb"
    path.write_text(json.dumps(_synthetic()), encoding="utf-8")
    assert _unfolded_solutions(_read(path)) == [3, 6]
    _load_meta_tool().normalise(str(path))
    nb = _read(path)
    assert _unfolded_solutions(nb) == []
    assert nb["cells"][3]["metadata"]["jupyter"] == {"source_hidden": True, "outputs_hidden": True}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_solutions_and_their_outputs_are_folded(path, tmp_path):
    """In the notebook no answer shows before the learner opens it (nbgrader's student version
    has no answers and no outputs: tests/test_grading.py)."""
    nb = _read(path)
    assert _unfolded_solutions(nb) == [], f"{path.name}: run tools/notebook_meta.py {path}"
