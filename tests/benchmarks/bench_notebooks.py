"""Benchmark the notebooks: wall time of each under nbval (as CI runs them), and the total.

Run by hand (not collected by pytest), from anywhere::

    .venv/bin/python tests/benchmarks/bench_notebooks.py                 # all, warm cache
    .venv/bin/python tests/benchmarks/bench_notebooks.py --cold 01 03    # some, fresh caches
    .venv/bin/python tests/benchmarks/bench_notebooks.py --nbconvert 01  # plain execution

Notebooks: by default every ``notebooks/[0-9][0-9]_*.ipynb``; arguments select
some, by number (``01``, ``1``), name (``01_feature_extraction``) or path.

Each notebook runs in its own process, exactly as CI does: ``python -m pytest
notebooks/NN_x.ipynb -q`` from the repository root (the repository's pytest
``addopts`` add ``--nbval`` and the sanitizer), with this Python. The wall time
includes pytest start-up and the kernel start.

- ``--warm`` (default): the default caches (``TLCOURSE_CACHE`` as set, or
  ``~/.cache/tlcourse``), so converted weights are reused.
- ``--cold``: like ``.ci/run``, ``TLCOURSE_CACHE``, ``KERAS_HOME`` and
  ``MPLCONFIGDIR`` point to fresh empty temp dirs, created once for the whole run
  (so the first notebook pays the weight conversion and the font cache, as in CI).
- ``--nbconvert``: times ``jupyter nbconvert --to notebook --execute`` instead,
  writing the executed copy to a temp dir (no nbval, no comparison; the stored
  notebook is not touched). Combine with ``--cold`` or ``--warm``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
GOALS = {"01": 120, "02": 180, "03": 360}  # seconds per notebook
GOAL_TOTAL, STRETCH_TOTAL = 600, 300  # the whole course


def load_avg() -> str:
    return "{:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())


def find_notebooks(selection: list[str]) -> list[Path]:
    all_nbs = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if not selection:
        return all_nbs
    picked = []
    for sel in selection:
        p = Path(sel)
        if p.suffix == ".ipynb" and (p.exists() or (REPO / p).exists()):
            picked.append((p if p.exists() else REPO / p).resolve())
            continue
        key = f"{int(sel):02d}" if sel.isdigit() else Path(sel).stem
        matches = [nb for nb in all_nbs if nb.stem == key or nb.stem.startswith(key + "_")]
        if not matches:
            names = ", ".join(nb.name for nb in all_nbs) or "none"
            raise SystemExit(f"no notebook matches {sel!r} (have: {names})")
        picked += matches
    return list(dict.fromkeys(picked))


def fmt(seconds: float) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def goal_text(number: str, seconds: float) -> str:
    goal = GOALS.get(number)
    if goal is None:
        return "(no goal)"
    return f"goal <= {goal // 60} min: {'met' if seconds <= goal else 'NOT met'}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", help="numbers, names or paths (default: all)")
    cache = ap.add_mutually_exclusive_group()
    cache.add_argument("--cold", action="store_true", help="fresh empty caches, as CI")
    cache.add_argument("--warm", action="store_true", help="the default caches (the default)")
    ap.add_argument("--nbconvert", action="store_true",
                    help="time `jupyter nbconvert --execute` to a temp copy instead of nbval")
    ap.add_argument("--timeout", type=int, default=900, help="per-cell timeout, --nbconvert mode")
    ap.add_argument("-v", "--verbose", action="store_true", help="show each run's output")
    args = ap.parse_args()

    notebooks = find_notebooks(args.notebooks)
    if not notebooks:
        print(f"no notebooks found in {NOTEBOOKS}")
        return 1

    tmp = tempfile.TemporaryDirectory(prefix="tlcourse_bench_nb_")
    env = dict(os.environ)
    if args.cold:
        for var in ("TLCOURSE_CACHE", "KERAS_HOME", "MPLCONFIGDIR"):
            env[var] = str(Path(tmp.name) / var.lower())
            Path(env[var]).mkdir()
    mode = "nbconvert --execute" if args.nbconvert else "pytest --nbval (as CI)"
    caches = "cold (fresh temp caches)" if args.cold else \
        f"warm ({env.get('TLCOURSE_CACHE') or '~/.cache/tlcourse'})"
    print(f"bench_notebooks  {datetime.now():%Y-%m-%d %H:%M}  {mode}, cache {caches}")
    print(f"python {platform.python_version()} ({sys.executable}), {os.cpu_count()} cpus, "
          f"{platform.machine()}; load average at start: {load_avg()}")

    rows = []
    for nb in notebooks:
        number = nb.stem[:2]
        if args.nbconvert:
            cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                   f"--ExecutePreprocessor.timeout={args.timeout}",
                   "--output-dir", str(Path(tmp.name) / "executed"), str(nb)]
        else:
            cmd = [sys.executable, "-m", "pytest", str(nb.relative_to(REPO)), "-q"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        passed = proc.returncode == 0
        summary = ""
        if not args.nbconvert:
            lines = [ln for ln in proc.stdout.splitlines() if re.search(r"\b(passed|failed|error)", ln)]
            summary = lines[-1].strip("= ") if lines else ""
        rows.append((nb.name, number, seconds, passed))
        print(f"  {nb.name:40s} {fmt(seconds):>7s}  {'PASSED' if passed else 'FAILED':6s}  "
              f"{goal_text(number, seconds):22s} {summary}  [load {load_avg()}]", flush=True)
        if args.verbose or not passed:
            print("    " + "\n    ".join((proc.stdout + proc.stderr).strip().splitlines()[-40:]))

    total = sum(r[2] for r in rows)
    numbers = {r[1] for r in rows}
    every = {nb.stem[:2] for nb in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}
    note = "whole course" if numbers >= every else f"{len(rows)} of {len(every)} notebooks"
    verdict = ("stretch met" if total <= STRETCH_TOTAL else "met" if total <= GOAL_TOTAL else "NOT met")
    print(f"  {'total (' + note + ')':40s} {fmt(total):>7s}  "
          f"{sum(r[3] for r in rows)}/{len(rows)} passed  "
          f"course goal <= {GOAL_TOTAL // 60} min (stretch {STRETCH_TOTAL // 60}): "
          f"{verdict if numbers >= every else 'n/a, not all notebooks run'}")
    print(f"load average at end: {load_avg()}")
    tmp.cleanup()
    return 0 if all(r[3] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
