"""Every third-party package that the course's code imports is declared in pyproject.toml.

Reads every ``import`` statement (top level and inside functions) in ``tlcourse/``,
``tools/``, ``tests/``, ``conftest.py`` and the notebooks' paired ``.py`` files, maps
each imported top-level module to the distribution that provides it (with
``importlib.metadata.packages_distributions``), and fails when that distribution
is not among the dependencies or extras of ``pyproject.toml``.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [*sorted((ROOT / "tlcourse").rglob("*.py")), *sorted((ROOT / "tools").glob("*.py")),
           *sorted((ROOT / "tests").rglob("*.py")), ROOT / "conftest.py",
           *sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))]
#: Modules of this repository imported by path-based scripts (tools/, tests/).
LOCAL = {"tlcourse"} | {p.stem for p in ROOT.rglob("*.py")}


def imported_modules(path: Path) -> set[str]:
    """Top-level names of the absolute imports in one Python file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def declared() -> set[str]:
    """Canonical names of every distribution in pyproject.toml (dependencies and extras)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return {canonicalize_name(Requirement(r).name) for r in reqs}


def test_every_imported_package_is_declared():
    providers = importlib.metadata.packages_distributions()
    wanted = declared()
    undeclared, unknown = {}, {}
    for path in SOURCES:
        for module in imported_modules(path) - LOCAL - set(sys.stdlib_module_names):
            dists = providers.get(module)
            where = str(path.relative_to(ROOT))
            if not dists:
                unknown.setdefault(module, where)
            elif not {canonicalize_name(d) for d in dists} & wanted:
                undeclared.setdefault(f"{module} (from {', '.join(dists)})", where)
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
    # A module no installed distribution provides: either a missing declaration of a
    # package that is not installed here, or a typo. (torch is the maintainers' optional extra.)
    unknown.pop("torch", None)
    # an extra not installed here (e.g. nbgrader of the `classroom` extra, imported by a test that
    # then skips) is declared under its own name: not a typo
    unknown = {m: w for m, w in unknown.items() if canonicalize_name(m) not in wanted}
    assert not unknown, f"imported but provided by no installed distribution: {unknown}"


def test_the_checker_sees_lazy_imports(tmp_path):
    script = tmp_path / "x.py"
    script.write_text("import os\n\ndef f():\n    import sklearn.decomposition\n"
                      "    from skimage import data\n    from . import sibling\n")
    assert imported_modules(script) == {"os", "sklearn", "skimage"}


def test_requirements_txt_installs_the_package_with_its_extras():
    lines = [ln.split("#", 1)[0].strip() for ln in
             (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()]
    assert [ln for ln in lines if ln] == ["-e .[lab,test]"], \
        "version ranges belong in pyproject.toml only; requirements.txt installs the package"
