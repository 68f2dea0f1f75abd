"""Check which Python versions the course's declared requirements resolve for.

For each version, asks pip for a dry-run install of every requirement in
``pyproject.toml`` (the dependencies and the ``lab``, ``test`` and ``classroom`` extras) as
binary wheels only, for that Python version (``--extras`` to choose them; the default
includes ``classroom``, so nbgrader, Notebook 7 and RISE are checked with JupyterLab):

    pip install --dry-run --ignore-installed --only-binary=:all: --python-version X --target TMP ...

Nothing is installed; pip reads the package index (the network is needed).
Prints one line per version and exits 1 when a version that ``requires-python``
admits does not resolve. Run it before widening or narrowing ``requires-python``,
and after changing a version range:

    python tools/check_python_versions.py            # 3.10 .. 3.14
    python tools/check_python_versions.py 3.13
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = ("lab", "test", "classroom")


def requirements(pyproject: Path = ROOT / "pyproject.toml",
                 extras: tuple[str, ...] = EXTRAS) -> tuple[list[str], SpecifierSet]:
    """The requirements to resolve (dependencies and ``extras``) and ``requires-python``."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return reqs, SpecifierSet(project["requires-python"])


def for_version(reqs: list[str], version: str) -> list[str]:
    """The requirements that apply under Python ``version``, markers evaluated and dropped.

    pip evaluates markers for the Python running it, not for ``--python-version``,
    so a requirement written for another version has to be chosen here.
    """
    env = {"python_version": version, "python_full_version": f"{version}.0"}
    out = []
    for line in reqs:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            req.marker = None
            out.append(str(req))
    return out


def resolves(version: str, reqs: list[str]) -> tuple[bool, str]:
    """``(ok, pip's error or last line)`` for a binary-only dry run under Python ``version``."""
    reqs = for_version(reqs, version)
    with tempfile.TemporaryDirectory() as target:  # pip wants --target with --python-version
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--only-binary=:all:", "--python-version", version, "--target", target,
               "--disable-pip-version-check", *reqs]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    errors = [ln for ln in lines if "ERROR" in ln and "Ignored the following" not in ln]
    return proc.returncode == 0, (errors or lines or ["resolved"])[0 if errors else -1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="*", default=["3.10", "3.11", "3.12", "3.13", "3.14"])
    parser.add_argument("--extras", nargs="*", default=list(EXTRAS), help="extras resolved with the dependencies")
    args = parser.parse_args(argv)
    reqs, admitted = requirements(extras=tuple(args.extras))
    status = 0
    for version in args.versions:
        ok, note = resolves(version, reqs)
        allowed = f"{version}.0" in admitted
        verdict = "resolves" if ok else "does NOT resolve"
        print(f"Python {version}: {verdict}; requires-python {'admits' if allowed else 'excludes'} it"
              + ("" if ok else f"\n    {note}"), flush=True)
        if allowed and not ok:
            status = 1
        if ok and not allowed:
            print(f"    (requires-python {admitted} could admit {version})", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
