"""Three students on one JupyterHub run notebook 01 at the same time, through their servers.

Starts ``hub/jupyterhub_config.py`` on 127.0.0.1 (proxy from ``hub/node_modules``),
creates the students through the hub's REST API, starts their servers, and runs the
code cells of ``notebooks/01_feature_extraction.ipynb`` (whatever is committed) in a
kernel of each student's server, concurrently, over the kernel websocket. Every cell
must finish without an error, so the notebook's own asserts hold in every kernel. The
students share a read-only folder (as the instructor's prefetched cache) that must not
change; each student writes only into their own cache. Every process the hub started is
gone afterwards, also when the test fails.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

import psutil
import pytest

hubclass = pytest.importorskip("hubclass", reason="tests/hub/hubclass.py")
pytest.importorskip("jupyterhub", reason="pip install -e '.[hub]'")

NOTEBOOK = "notebooks/01_feature_extraction.ipynb"
STUDENTS = ["ada", "ben", "chloe"]

pytestmark = pytest.mark.hub


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture
def shared(tmp_path):
    """A stand-in for the instructor's prefetched folder, read-only (mode 0555)."""
    root = tmp_path / "shared"
    (root / "keras" / "models").mkdir(parents=True)
    (root / "keras" / "models" / "README.txt").write_text("prefetched by the instructor\n")
    for p in sorted(root.rglob("*"), reverse=True) + [root]:
        p.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
                if p.is_dir() else stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    yield root
    for p in [root] + sorted(root.rglob("*")):
        p.chmod(0o755 if p.is_dir() else 0o644)


def test_three_students_run_notebook_01_at_once(tmp_path, shared):
    if not hubclass.CHP.exists():
        pytest.fail(f"{hubclass.CHP} is missing: run `npm ci --prefix hub` (.ci/run does)")
    before = _snapshot(shared)
    hub = hubclass.Hub(tmp_path / "hub", notebooks=hubclass.REPO / "notebooks", shared=shared)
    started: list[int] = []
    t0 = time.perf_counter()
    try:
        hub.start()
        for name in STUDENTS:
            model = hub.add_student(name)
            assert model["name"] == name and model["servers"][""]["ready"]
        t1 = time.perf_counter()
        results = asyncio.run(hubclass.run_class(hub, STUDENTS, NOTEBOOK))
        t2 = time.perf_counter()
        started = [p.pid for p in hub._remember()]
    finally:
        killed = hub.close()
    print(f"hub + {len(STUDENTS)} servers up in {t1 - t0:.0f} s; notebook runs {t2 - t1:.0f} s; "
          f"shut down in {time.perf_counter() - t2:.0f} s; load average {os.getloadavg()}")
    for r in results:
        print(f"{r.user}: {r.cells} cells in {r.wall_s:.0f} s, kernel peak RSS "
              f"{r.kernel_peak_rss_mib:.0f} MiB, {r.kernel_cpu_s:.0f} CPU-s")
    errors = [e for r in results for e in r.errors]
    assert not errors, "\n\n".join(errors) + "\n\nhub log:\n" + hub.log_tail()
    assert all(r.ok for r in results)
    # the kernels were the hub's: one per student, each in that student's environment
    assert sorted(r.kernel_env_user for r in results) == STUDENTS
    assert len({r.kernel_pid for r in results}) == len(STUDENTS)
    # each student's cache is their own and holds no temporary file; the shared folder is untouched
    for name in STUDENTS:
        cache = tmp_path / "hub" / "home" / name / ".cache" / "tlcourse"
        assert not [p for p in cache.rglob("*") if ".tmp" in p.name], f"temporary file left in {cache}"
    assert _snapshot(shared) == before, "the read-only shared folder changed"
    # nothing the hub started is still running
    alive = [pid for pid in set(started) | set(killed) if psutil.pid_exists(pid)
             and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"processes left running: {alive}"
    assert os.path.exists(tmp_path / "hub" / "jupyterhub.sqlite")
