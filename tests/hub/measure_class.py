"""Measure what students cost on a JupyterHub: the figures behind INSTRUCTORS.md's sizing table.

Not a test (pytest does not collect it). For each class size (default 1, then 3, back to
back) it starts a fresh hub on 127.0.0.1 (``hub/jupyterhub_config.py``, empty per-student
caches), creates the students, and runs each notebook (default 01 then 02, as a class
would) in every student's kernel at the same time, through their servers. It prints, per
student and notebook: wall time, the kernel's peak resident memory (``VmHWM``) and CPU
seconds (user + system), the Jupyter server's peak memory, and the load average before
and after each run (other users of the machine show up there). Run from the repository root:

    python tests/hub/measure_class.py                     # 1 and 3 students, notebooks 01 02
    python tests/hub/measure_class.py --students 3 --notebooks 01 --repeat 2
    python tests/hub/measure_class.py --json results.json

Each notebook's kernel is a new kernel (as when a student opens the next notebook), so a
notebook's figures are its own; the per-student caches carry over from 01 to 02.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hubclass  # noqa: E402

NAMES = ["ada", "ben", "chloe", "dev", "eve", "finn", "gus", "hana"]


def _notebook(spec: str) -> str:
    matches = sorted((hubclass.REPO / "notebooks").glob(f"{spec}*.ipynb"))
    if not matches:
        raise SystemExit(f"no notebook matches {spec!r} in notebooks/")
    return f"notebooks/{matches[0].name}"


def measure(students: int, notebooks: list[str], tmp: Path) -> list[dict]:
    rows = []
    users = NAMES[:students]
    with hubclass.Hub(tmp / f"hub-{students}", notebooks=hubclass.REPO / "notebooks") as hub:
        for name in users:
            hub.add_student(name)
        for nb in notebooks:
            load_before = os.getloadavg()
            t0 = time.perf_counter()
            results = asyncio.run(hubclass.run_class(hub, users, nb))
            wall_all = time.perf_counter() - t0
            load_after = os.getloadavg()
            for r in results:
                row = {"students": students, "notebook": Path(nb).name[:2], "user": r.user, "ok": r.ok,
                       "cells": r.cells, "wall_s": round(r.wall_s, 1), "wall_all_s": round(wall_all, 1),
                       "kernel_peak_rss_mib": round(r.kernel_peak_rss_mib or 0),
                       "kernel_end_rss_mib": round(r.kernel_end_rss_mib or 0),
                       "kernel_end_anon_mib": round(r.kernel_end_anon_mib or 0),
                       "kernel_cpu_s": round(r.kernel_cpu_s or 0, 1),
                       "server_peak_rss_mib": round(r.server_peak_rss_mib or 0),
                       "peak_by_cell": r.peak_by_cell,
                       "load_before": [round(x, 2) for x in load_before],
                       "load_after": [round(x, 2) for x in load_after], "errors": r.errors}
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| students | notebook | student | wall s | kernel peak RSS MiB | kernel RSS (private) at end MiB | "
             "kernel CPU s | server peak RSS MiB | load 1-min before/after | ok |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['students']} | {r['notebook']} | {r['user']} | {r['wall_s']:.0f} | "
                     f"{r['kernel_peak_rss_mib']} | {r.get('kernel_end_rss_mib', '')} ({r.get('kernel_end_anon_mib', '')}) | {r['kernel_cpu_s']:.0f} | {r['server_peak_rss_mib']} | "
                     f"{r['load_before'][0]:.1f} / {r['load_after'][0]:.1f} | {'yes' if r['ok'] else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--students", nargs="+", type=int, default=[1, 3], help="class sizes, in order")
    p.add_argument("--notebooks", nargs="+", default=["01", "02"], help="notebook numbers, in order")
    p.add_argument("--repeat", type=int, default=1, help="repeat the whole sequence")
    p.add_argument("--json", type=Path, default=None, help="also write the rows to this file")
    args = p.parse_args(argv)
    notebooks = [_notebook(n) for n in args.notebooks]
    print(f"cores: {os.cpu_count()}, load average now: {os.getloadavg()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tlcourse-measure-") as tmp:
        for _ in range(args.repeat):
            for n in args.students:
                rows += measure(n, notebooks, Path(tmp))
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
