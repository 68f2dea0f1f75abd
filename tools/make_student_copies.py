"""The notebooks' exercises as nbgrader assignments: a thin wrapper over ``nbgrader``.

One source gives the learner's notebook, the lecturer's assignment and the autograder.
In ``notebooks/NN_*.py`` (and so in the executed ``.ipynb``):

* a **solution** cell is a code cell tagged ``solution``, its answer between the lines
  ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (a solution without them is replaced whole);
* a **check** cell is a code cell tagged ``check`` that calls one of ``tlcourse.checks``
  (``checks.unfreeze(model5, base, head)``): the learner runs it, the autograder grades it.

:func:`nbgrader_cells` turns those tags into nbgrader's cell metadata (``tools/notebook_meta.py``
calls it on every build, so the committed notebooks carry it): a solution cell becomes an
autograded answer (``solution``), a check cell a locked, graded test cell worth 1 point (a tag
``points-N`` gives N). This script then lays out an nbgrader course folder and runs
``nbgrader generate_assignment`` on it::

    python tools/make_student_copies.py                 # every notebook -> course/release/NN_name/
    python tools/make_student_copies.py 01 02 --course /srv/course

For each notebook ``NN_name`` it copies the notebook to ``COURSE/source/NN_name/NN_name.ipynb``,
writes ``COURSE/nbgrader_config.py`` when there is none (cell timeout 900 s: the notebooks train;
autograde leaves out code cells tagged ``autograde-skip``, which no exercise needs),
and runs ``nbgrader generate_assignment NN_name --force`` in ``COURSE``: the student version
(solutions replaced by ``# YOUR CODE HERE`` / ``raise NotImplementedError()``, outputs cleared,
check cells locked) lands in ``COURSE/release/NN_name/``. INSTRUCTORS.md walks through release,
collect, autograde and feedback. It exits 1 (and says why) on a notebook without check cells or
when nbgrader fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
_CHECK_CALL = re.compile(r"^checks\.(\w+)\(", re.MULTILINE)
CONFIG = '''# nbgrader configuration of the tlcourse exercises (written by tools/make_student_copies.py)
c = get_config()  # noqa: F821
c.Execute.timeout = 900            # seconds per cell: the notebooks train networks
c.Execute.interrupt_on_timeout = True

from nbconvert.preprocessors import Preprocessor  # noqa: E402


class SkipTagged(Preprocessor):
    """Autograde leaves out code cells tagged ``autograde-skip``: cells that grade nothing and that
    no exercise needs (a live re-run that checks the machine, a demonstration), to save their
    run time per submission. Graded and answer cells are never skipped."""

    enabled = True

    def preprocess_cell(self, cell, resources, index):
        if (cell.cell_type == "code" and "autograde-skip" in cell.metadata.get("tags", [])
                and "nbgrader" not in cell.metadata):
            cell.source = "# not run by the autograder (tag autograde-skip): no exercise needs it"
        return cell, resources


c.Autograde.sanitize_preprocessors.append(SkipTagged)
'''


def _text(source) -> str:
    return "".join(source) if isinstance(source, list) else (source or "")


def _tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags") or []


def nbgrader_cells(nb: dict) -> dict:
    """Set nbgrader's metadata from the cells' tags (in place; returns ``nb``).

    A ``check`` cell calling ``checks.NAME(...)`` becomes the graded, locked test cell
    ``NAME`` (1 point, or N with a tag ``points-N``); the last ``solution`` cell before it
    becomes the answer cell ``NAME_answer``; any other ``solution`` cell becomes an answer
    cell ``solution_K``. Every other cell loses nbgrader metadata it may have had, and so does
    every cell of a notebook without check cells.
    """
    last_solution = None
    plain = 0
    graded = is_assignment(nb)
    for cell in nb.get("cells", []):
        meta = cell.setdefault("metadata", {})
        meta.pop("nbgrader", None)
        tags = _tags(cell)
        if not graded:
            continue  # a notebook without check cells (00) is no assignment
        if "solution" in tags:
            plain += 1
            meta["nbgrader"] = {"grade": False, "grade_id": f"solution_{plain}", "locked": False,
                                "schema_version": 3, "solution": True, "task": False}
            last_solution = cell
        elif "check" in tags and cell.get("cell_type") == "code":
            found = _CHECK_CALL.search(_text(cell.get("source")))
            if not found:
                raise ValueError(f"a cell tagged 'check' calls no checks.NAME(...): {_text(cell.get('source'))[:60]!r}")
            points = next((int(t[len("points-"):]) for t in tags if re.fullmatch(r"points-\d+", t)), 1)
            meta["nbgrader"] = {"grade": True, "grade_id": found.group(1), "locked": True, "points": points,
                                "schema_version": 3, "solution": False, "task": False}
            if last_solution is not None:
                last_solution["metadata"]["nbgrader"]["grade_id"] = f"{found.group(1)}_answer"
            last_solution = None
    return nb


def problems(nb: dict) -> list[str]:
    """What keeps a notebook from being a sound assignment (empty list: none)."""
    out = []
    cells = nb.get("cells", [])
    ids = [c["metadata"]["nbgrader"]["grade_id"] for c in cells if "nbgrader" in c.get("metadata", {})]
    if len(ids) != len(set(ids)):
        out.append(f"repeated nbgrader grade ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    for c in cells:
        nbg = c.get("metadata", {}).get("nbgrader", {})
        src = _text(c.get("source"))
        if nbg.get("grade_id", "").endswith("_answer") and not (BEGIN in src and END in src):
            out.append(f"answer cell {nbg['grade_id']} lacks the '{BEGIN}' / '{END}' lines")
    return out


def notebooks(names: list[str]) -> list[Path]:
    """The course notebooks ``notebooks/NN_*.ipynb`` whose number or name is in ``names`` (all if empty)."""
    found = sorted((ROOT / "notebooks").glob(NOTEBOOK_GLOB))
    if not names:
        return found
    picked = [p for p in found if p.stem[:2] in names or p.stem in names or str(p) in names]
    missing = set(names) - {p.stem[:2] for p in picked} - {p.stem for p in picked} - {str(p) for p in picked}
    if missing:
        raise SystemExit(f"no notebook {', '.join(sorted(missing))} in notebooks/ "
                         f"(there are {', '.join(p.stem for p in found)})")
    return picked


def is_assignment(nb: dict) -> bool:
    """True for a notebook with at least one check cell (00 has exercises but nothing graded)."""
    return any("check" in _tags(c) for c in nb.get("cells", []))


def prepare_course(course: Path, paths: list[Path]) -> list[str]:
    """Copy each notebook with check cells into ``course/source/NAME/`` (nbgrader metadata set)
    and write the course's ``nbgrader_config.py`` if it has none; return the assignment names."""
    course.mkdir(parents=True, exist_ok=True)
    config = course / "nbgrader_config.py"
    if not config.exists():
        config.write_text(CONFIG, encoding="utf-8")
    names = []
    for path in paths:
        nb = nbgrader_cells(json.loads(path.read_text(encoding="utf-8")))
        if not is_assignment(nb):
            print(f"skipped {path.stem}: no check cell, nothing to grade")
            continue
        found = problems(nb)
        if found:
            raise SystemExit(f"{path.name}: " + "; ".join(found))
        for cell in nb["cells"]:   # in the student version an answer cell is open, ready to type into
            if cell["metadata"].get("nbgrader", {}).get("solution"):
                cell["metadata"].pop("jupyter", None)
        target = course / "source" / path.stem / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        names.append(path.stem)
    return names


def nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in the course folder (this Python's nbgrader); raise with its log on failure."""
    # nbgrader runs its database migrations with the `alembic` command: this Python's scripts first on PATH
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, capture_output=True, text=True,
                          env=env)
    if done.returncode:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="*", help="numbers or names (default: every notebook)")
    ap.add_argument("--course", type=Path, default=ROOT / "course",
                    help="the nbgrader course folder (default: course/, not versioned)")
    args = ap.parse_args(argv)
    if importlib.util.find_spec("nbgrader") is None:
        print("nbgrader is not installed: pip install -e '.[classroom]'", file=sys.stderr)
        return 1
    names = prepare_course(args.course.resolve(), notebooks(args.notebooks))
    for name in names:
        try:
            nbgrader(args.course.resolve(), "generate_assignment", name, "--force")
        except RuntimeError as e:
            print(e, file=sys.stderr)
            return 1
        print(f"released {name}: {args.course / 'release' / name / (name + '.ipynb')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
