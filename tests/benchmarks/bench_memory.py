"""Benchmark the notebooks' memory: each notebook's kernel peak (resident set), cell by cell.

Run by hand (not collected by pytest), from anywhere::

    .venv/bin/python tests/benchmarks/bench_memory.py            # every notebook
    .venv/bin/python tests/benchmarks/bench_memory.py 01 02      # some, by number or name
    .venv/bin/python tests/benchmarks/bench_memory.py 01 --cells # and the cells that raise it
    .venv/bin/python tests/benchmarks/bench_memory.py 02 --times 2  # and the cells over 2 s
    .venv/bin/python tests/benchmarks/bench_memory.py --cold     # as a learner's first run
    sudo .venv/bin/python tests/benchmarks/bench_memory.py 02 --limit 1.5  # in a 1.5 GiB pod

Each notebook is executed by ``nbclient`` (as ``jupyter nbconvert --execute`` does) in a
fresh kernel, from the ``notebooks`` folder, into memory (the stored notebook is not
touched). After every cell the script reads the kernel's ``/proc/<pid>/status``:
``VmHWM``, the kernel's peak resident set so far (kept by Linux, so no peak between two
readings is missed), and ``VmRSS``, what the kernel still holds. The report gives each
notebook's peak, its wall time, and with ``--cells`` every cell that raised the peak by
more than 20 MiB (the cell's first line, the new peak, the RSS after it).

By default the notebooks find the features they cached on earlier runs; ``--cold`` gives
each one an empty feature cache, as on a learner's first run (or a new Binder), where
every frozen model runs once. ``--limit GIB`` runs each kernel in a memory cgroup with that
hard limit, as a Binder or Kubernetes pod does, and says whether it finished; it first drops
the system's page cache, so that the kernel is charged for the library files it reads, as in
a fresh pod (otherwise pages cached by an earlier process are charged elsewhere). The resident
peak counts TensorFlow's library pages (about 0.4 GiB, file-backed); under a limit the
kernel reclaims those before it kills anything, so the two measures differ.

The kernel imports this checkout's ``tlcourse``: the repository root is put first on
``PYTHONPATH``. Linux only (``/proc``). Goal (issue 19): every notebook <= 1.5 GiB, stretch
1.0 GiB.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
GIB = 1024**3
MIB = 1024**2
GOAL, STRETCH = 1.5 * GIB, 1.0 * GIB


def proc_memory(pid: int) -> tuple[int, int]:
    """Return (peak, current) resident bytes of process ``pid`` from /proc (VmHWM, VmRSS)."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                values[key] = int(rest.split()[0]) * 1024
    return values["VmHWM"], values["VmRSS"]


def find_notebooks(selection: list[str]) -> list[Path]:
    all_nbs = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if not selection:
        return all_nbs
    picked = []
    for sel in selection:
        key = f"{int(sel):02d}" if sel.isdigit() else Path(sel).stem
        matches = [nb for nb in all_nbs if nb.stem == key or nb.stem.startswith(key + "_")]
        if not matches:
            raise SystemExit(f"no notebook matches {sel!r} (have: "
                             f"{', '.join(nb.name for nb in all_nbs) or 'none'})")
        picked += matches
    return list(dict.fromkeys(picked))


class MemoryLimit:
    """A Linux memory cgroup with a hard limit (no swap), as Binder and Kubernetes give a pod.

    The cgroup v1 memory controller (``/sys/fs/cgroup/memory``) or cgroup v2 (with the
    ``memory`` controller enabled); needs permission to create a cgroup (root). A process
    moved in is charged for its memory, the page cache it reads included; at the limit the
    kernel first reclaims that cache, then kills the process (an OOM kill).
    """

    def __init__(self, gib: float):
        v1, v2 = Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup")
        limit = str(int(gib * GIB))
        name = f"bench_memory_{os.getpid()}"
        if (v1 / "memory.limit_in_bytes").exists():
            self.group, self.v1 = v1 / name, True
            self.group.mkdir()
            (self.group / "memory.limit_in_bytes").write_text(limit)
            if (self.group / "memory.memsw.limit_in_bytes").exists():
                (self.group / "memory.memsw.limit_in_bytes").write_text(limit)
        elif "memory" in (v2 / "cgroup.controllers").read_text().split():
            self.group, self.v1 = v2 / name, False
            self.group.mkdir()
            (self.group / "memory.max").write_text(limit)
            (self.group / "memory.swap.max").write_text("0")
        else:
            raise SystemExit("--limit needs a cgroup memory controller (Linux, root)")

    def add(self, pid: int) -> None:
        """Move ``pid`` in (before its first cell: what it held from starting is not charged)."""
        (self.group / "cgroup.procs").write_text(str(pid))

    def peak(self) -> int:
        """The most memory charged to the group so far (page cache included)."""
        f = "memory.max_usage_in_bytes" if self.v1 else "memory.peak"
        return int((self.group / f).read_text())

    def close(self) -> None:
        try:
            self.group.rmdir()
        except OSError:
            pass


def measure(path: Path, timeout: int, limit: float | None = None) -> dict:
    """Execute one notebook in a fresh kernel; return its peak, wall time and per-cell steps.

    With ``limit`` (GiB) the kernel runs in a memory cgroup with that hard limit.
    """
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    cells: list[tuple[int, str, int, int, float]] = []
    state = {"pid": None, "peak": 0, "t": time.perf_counter()}
    group = MemoryLimit(limit) if limit else None

    def before_cell(cell, cell_index, **_):
        if group is not None and state["pid"] is None:
            state["pid"] = client.km.provisioner.process.pid
            group.add(state["pid"])

    def after_cell(cell, cell_index, **_):
        if state["pid"] is None:
            state["pid"] = client.km.provisioner.process.pid
        peak, rss = proc_memory(state["pid"])
        state["peak"] = peak
        first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")
        now = time.perf_counter()
        cells.append((cell_index, first, peak, rss, now - state["t"]))
        state["t"] = now

    client.on_cell_start = before_cell
    client.on_cell_executed = after_cell
    t0 = state["t"] = time.perf_counter()
    error = ""
    try:
        client.execute()
    except Exception as exc:  # a failing cell: report the peak so far, name the error
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
    finally:
        charged = group.peak() if group is not None else None
        if group is not None:
            group.close()
    return {"peak": state["peak"], "seconds": time.perf_counter() - t0, "cells": cells,
            "error": error, "charged": charged}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", help="numbers or names (default: all)")
    ap.add_argument("--cells", action="store_true", help="list the cells that raise the peak")
    ap.add_argument("--times", type=float, metavar="S",
                    help="also list the cells that take more than S seconds")
    ap.add_argument("--timeout", type=int, default=900, help="per-cell timeout, seconds")
    ap.add_argument("--cold", action="store_true",
                    help="an empty course cache for each notebook (TLCOURSE_CACHE in a temporary "
                         "folder), as on a learner's first run")
    ap.add_argument("--limit", type=float, metavar="GIB",
                    help="run each kernel under a hard memory limit (a cgroup, as in a Binder or "
                         "Kubernetes pod): does it finish? Linux, root")
    args = ap.parse_args()
    if not Path("/proc/self/status").exists():
        raise SystemExit("bench_memory reads /proc/<pid>/status: Linux only")

    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    threads = os.environ.get("TLCOURSE_THREADS", "the course default")
    print(f"bench_memory  {datetime.now():%Y-%m-%d %H:%M}  python {platform.python_version()}, "
          f"{os.cpu_count()} cpus, threads {threads}, load "
          + "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    failed = 0
    for path in find_notebooks(args.notebooks):
        cold = tempfile.TemporaryDirectory(prefix="tlcourse-cold-") if args.cold else None
        if cold is not None:
            os.environ["TLCOURSE_CACHE"] = cold.name
        if args.limit:  # as in a fresh pod: the kernel reads (and is charged for) its libraries itself
            os.sync()
            Path("/proc/sys/vm/drop_caches").write_text("3")
        try:
            r = measure(path, args.timeout, args.limit)
        finally:
            if cold is not None:
                cold.cleanup()
        verdict = ("stretch met" if r["peak"] <= STRETCH else "met" if r["peak"] <= GOAL
                   else "NOT met")
        print(f"  {path.name:32s} peak {r['peak'] / GIB:5.2f} GiB  {r['seconds']:6.1f} s  "
              f"goal <= 1.5 GiB: {verdict}  [load {os.getloadavg()[0]:.2f}]"
              + (f"  FAILED {r['error']}" if r["error"] else ""), flush=True)
        if r["charged"] is not None:
            print(f"      under a {args.limit:g} GiB limit: {'killed or failed' if r['error'] else 'finished'}; "
                  f"charged at most {r['charged'] / GIB:.2f} GiB (page cache included)")
        failed += bool(r["error"])
        if args.times is not None:
            for index, first, _, _, seconds in r["cells"]:
                if seconds > args.times:
                    print(f"      cell {index:3d} {seconds:6.1f} s  {first[:70]}")
        if args.cells:
            previous = 0
            for index, first, peak, rss, _ in r["cells"]:
                if peak - previous > 20 * MIB:
                    print(f"      cell {index:3d} peak {peak / MIB:6.0f} MiB (+{(peak - previous) / MIB:4.0f})"
                          f"  rss after {rss / MIB:6.0f} MiB  {first[:60]}")
                previous = peak
            if r["cells"]:
                print(f"      at the end: rss {r['cells'][-1][3] / MIB:.0f} MiB")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
