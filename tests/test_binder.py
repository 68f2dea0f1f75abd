"""The Binder configuration (`.binder/`, repo2docker's conventions) is complete and coherent.

The last test asks repo2docker itself (``jupyter-repo2docker --no-build``: it picks the build
pack and writes the Dockerfile, without Docker); it runs when ``jupyter-repo2docker`` is on
PATH or named by ``$REPO2DOCKER``, and is skipped otherwise (it is not a course dependency).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[1]
BINDER = REPO / ".binder"


def test_runtime_is_a_python_the_course_supports():
    text = (BINDER / "runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-(3\.\d+)", text)
    assert match, f".binder/runtime.txt must be 'python-3.X', got {text!r}"
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(requires).contains(match.group(1) + ".0"), (match.group(1), requires)


def test_requirements_install_this_checkout_with_the_lab_extra():
    lines = [ln.strip() for ln in (BINDER / "requirements.txt").read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    # editable: the notebooks find datasets/ next to the package (config.repo_root)
    assert lines == ["-e .[lab]"], lines
    lab = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["lab"]
    assert any(req.startswith("jupyter-resource-usage") for req in lab), lab


def test_start_script_sets_small_pools_and_hands_over():
    start = BINDER / "start"
    assert os.access(start, os.X_OK), ".binder/start must be executable (chmod +x)"
    text = start.read_text()
    assert text.startswith("#!/bin/bash\n")
    for var in ("TLCOURSE_THREADS", "OMP_NUM_THREADS"):
        assert f"export {var}=" in text, var
    assert text.rstrip().splitlines()[-1] == 'exec "$@"', "start must end by running the server: exec \"$@\""
    out = subprocess.run([str(start), "env"], capture_output=True, text=True, check=True,
                         env={"PATH": os.environ["PATH"], "OMP_NUM_THREADS": "1"}).stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert env["TLCOURSE_THREADS"] == "2"
    assert env["OMP_NUM_THREADS"] == "1", "a value set by the host must win"


def _repo2docker() -> str | None:
    return os.environ.get("REPO2DOCKER") or shutil.which("jupyter-repo2docker")


@pytest.mark.skipif(_repo2docker() is None,
                    reason="jupyter-repo2docker not installed (pip install jupyter-repo2docker, or set $REPO2DOCKER)")
def test_repo2docker_resolves_the_configuration(tmp_path):
    # a copy of the tracked configuration only: the check must not depend on untracked files
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, tmp_path / name)
    shutil.copytree(BINDER, tmp_path / ".binder")
    proc = subprocess.run([_repo2docker(), "--no-build", "--debug", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "Building conda environment for python=3.11" in log, log[-3000:]
    assert 'pip install --no-cache-dir -r ".binder/requirements.txt"' in log
    assert 'R2D_ENTRYPOINT="${REPO_DIR}/.binder/start"' in log
