"""Write student copies of the notebooks: exercises kept, solutions removed.

The notebooks in ``notebooks/NN_*.ipynb`` carry each exercise's solution in a
code cell tagged ``solution`` (its input collapsed). A student copy, written to
``student/NN_*.ipynb`` (gitignored), is the same notebook with

* each solution code cell's source replaced by ``# Your solution here``, its
  outputs and execution count cleared and its input no longer collapsed;
* each markdown cell tagged ``solution`` dropped;
* every other cell unchanged (outputs included).

The JSON is written deterministically (cell and key order kept, indent=1,
UTF-8, trailing newline), so regenerating gives identical bytes.

Usage (from the repository root)::

    python tools/make_student_copies.py            # write student/NN_*.ipynb
    python tools/make_student_copies.py --check    # verify, write nothing
    python tools/make_student_copies.py notebooks/01_feature_extraction.ipynb

``--check`` verifies, for every notebook: at least one exercise (a markdown cell
with ``**Exercise N.**`` or an ``Exercise`` heading) and one solution cell; no
line of any solution's source in the student copy (lines that also occur in the
notebook's other cells, e.g. ``keras.utils.set_random_seed(0)``, and blank lines
are not evidence of a leak); identical output when generated twice. It exits 1
on a problem. A student copy already in ``student/`` that differs from a fresh
one is reported as stale (a note, not a failure: the folder is not versioned).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

PLACEHOLDER = "# Your solution here"
SOLUTION_TAG = "solution"
ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
_EXERCISE = re.compile(r"(\*\*Exercise\s+\d+|^#+\s*Exercises?\b)", re.MULTILINE)


def _text(source) -> str:
    return "".join(source) if isinstance(source, list) else (source or "")


def is_solution(cell: dict) -> bool:
    """True for a cell tagged ``solution``."""
    return SOLUTION_TAG in (cell.get("metadata", {}).get("tags") or [])


def is_exercise(cell: dict) -> bool:
    """True for a markdown cell that states an exercise (``**Exercise N.**``)."""
    return (cell.get("cell_type") == "markdown" and not is_solution(cell)
            and bool(re.search(r"\*\*Exercise\s+\d+", _text(cell.get("source")))))


def make_student(nb: dict) -> dict:
    """Return the student copy of a notebook (a new dict; ``nb`` is not changed)."""
    out = copy.deepcopy(nb)
    cells = []
    for cell in out.get("cells", []):
        if not is_solution(cell):
            cells.append(cell)
            continue
        if cell.get("cell_type") != "code":
            continue  # a markdown (or raw) solution is dropped
        src = cell.get("source")
        cell["source"] = [PLACEHOLDER] if isinstance(src, list) else PLACEHOLDER
        cell["outputs"] = []
        cell["execution_count"] = None
        meta = cell.get("metadata", {})
        jup = meta.get("jupyter")
        if isinstance(jup, dict):
            jup.pop("source_hidden", None)
            jup.pop("outputs_hidden", None)
            if not jup:
                del meta["jupyter"]
        cells.append(cell)
    out["cells"] = cells
    return out


def dumps(nb: dict) -> str:
    """Deterministic notebook JSON: order kept, indent=1, UTF-8, trailing newline."""
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def _lines(text: str) -> set[str]:
    return {ln.strip() for ln in text.splitlines() if ln.strip()}


def _all_text(nb: dict, skip_solutions: bool = False) -> str:
    """Every cell's source and text outputs, joined."""
    parts = []
    for cell in nb.get("cells", []):
        if skip_solutions and is_solution(cell):
            continue
        parts.append(_text(cell.get("source")))
        for o in cell.get("outputs", []) or []:
            parts.append(_text(o.get("text")))
            for value in (o.get("data") or {}).values():
                if isinstance(value, (str, list)):
                    parts.append(_text(value))
    return "\n".join(parts)


def check_notebook(nb: dict, student: dict | None = None) -> list[str]:
    """Problems with a notebook and its student copy (empty list: all good)."""
    problems = []
    cells = nb.get("cells", [])
    if not any(is_exercise(c) for c in cells):
        problems.append("no exercise (a markdown cell with '**Exercise N.**')")
    solutions = [c for c in cells if is_solution(c) and c.get("cell_type") == "code"]
    if not solutions:
        problems.append(f"no solution cell (a code cell tagged '{SOLUTION_TAG}')")
    student = make_student(nb) if student is None else student
    shared = _lines(_all_text(nb, skip_solutions=True))
    present = _lines(_all_text(student))
    for i, cell in enumerate(c for c in cells if is_solution(c)):
        leaked = sorted((_lines(_text(cell.get("source"))) - shared) & present)
        if leaked:
            problems.append(f"solution {i + 1} leaks into the student copy: {leaked[0]!r}"
                            + (f" (+{len(leaked) - 1} more lines)" if len(leaked) > 1 else ""))
    for c in student.get("cells", []):
        if is_solution(c) and (c.get("outputs") or _text(c.get("source")).strip() != PLACEHOLDER):
            problems.append("a solution cell in the student copy still has source or outputs")
            break
    fresh = dumps(make_student(nb))
    if fresh != dumps(make_student(copy.deepcopy(nb))):
        problems.append("generating the student copy twice gives different output")
    elif dumps(student) != fresh:
        problems.append("the student copy differs from a freshly generated one")
    return problems


def notebooks(folder: Path) -> list[Path]:
    """The course notebooks ``NN_*.ipynb`` in ``folder``, in name order."""
    return sorted(folder.glob(NOTEBOOK_GLOB))


def write_copies(paths: list[Path], out_dir: Path) -> list[Path]:
    """Write each notebook's student copy into ``out_dir``; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        nb = json.loads(path.read_text(encoding="utf-8"))
        target = out_dir / path.name
        target.write_text(dumps(make_student(nb)), encoding="utf-8", newline="\n")
        written.append(target)
    return written


def check(paths: list[Path], out_dir: Path, stream=None) -> int:
    """Run the checks on every notebook; print a line each; return the exit status."""
    stream = stream or sys.stdout
    if not paths:
        print("no notebooks found", file=stream)
        return 1
    status = 0
    for path in paths:
        nb = json.loads(path.read_text(encoding="utf-8"))
        text = dumps(make_student(nb))
        problems = check_notebook(nb, json.loads(text))
        if text != dumps(make_student(json.loads(path.read_text(encoding="utf-8")))):
            problems.append("generating the student copy twice gives different output")
        n_ex = sum(is_exercise(c) for c in nb["cells"])
        n_sol = sum(is_solution(c) and c.get("cell_type") == "code" for c in nb["cells"])
        if problems:
            status = 1
            print(f"FAIL  {path.name}", file=stream)
            for p in problems:
                print(f"      {p}", file=stream)
        else:
            print(f"OK    {path.name}: {n_ex} exercise(s), {n_sol} solution(s) removed",
                  file=stream)
        existing = out_dir / path.name
        if existing.is_file() and existing.read_text(encoding="utf-8") != text:
            print(f"      note: {existing} is stale; run python tools/make_student_copies.py",
                  file=stream)
    return status


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="*", type=Path,
                    help=f"notebooks (default: notebooks/{NOTEBOOK_GLOB})")
    ap.add_argument("--out", type=Path, default=ROOT / "student",
                    help="output folder (default: student/)")
    ap.add_argument("--check", action="store_true",
                    help="verify exercises, solutions and determinism; write nothing")
    args = ap.parse_args(argv)
    paths = list(args.notebooks) or notebooks(ROOT / "notebooks")
    if args.check:
        return check(paths, args.out)
    if not paths:
        print("no notebooks found", file=sys.stderr)
        return 1
    for path in paths:
        problems = check_notebook(json.loads(path.read_text(encoding="utf-8")))
        if problems:
            print(f"{path}: " + "; ".join(problems), file=sys.stderr)
            return 1
    for target in write_copies(paths, args.out):
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
