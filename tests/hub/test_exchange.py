"""nbgrader's exchange on the JupyterHub of ``hub/jupyterhub_config.py``: release, fetch, submit,
collect, autograde, feedback, with two students.

The instructor builds notebook 03's assignment (``tools/make_student_copies.py``) and releases
it with nbgrader's command line, as INSTRUCTORS.md says. Two students, ``ada`` and ``ben``, work
through their own Jupyter servers behind the hub, with the calls JupyterLab's Assignments tab
makes (``/user/<name>/assignments/fetch``, ``.../submit``, ``.../fetch_feedback``): each fetches
the assignment, writes answers into it over the contents API (as saving in JupyterLab does) and
submits. ``ada`` writes the reference solutions, ``ben`` the power for a 3-point difference
instead of 2. The instructor collects, autogrades, generates and releases the feedback; each
student fetches theirs.

Asserted: the scores (ada 2/2, ben 1/2); nothing lost (the collected notebooks hold exactly the
answers each student saved); each student's list and feedback hold only their own submission,
and ben's feedback names his mistake; the exchange keeps its inbound and feedback folders
unlistable for other users (nbgrader's modes), and a student's feedback is filed under a hash
keyed by a secret kept in that student's own cache.

The test hub runs every student as one OS user (``SimpleLocalProcessSpawner``). nbgrader names
a student by the OS user (``JUPYTERHUB_USER`` only for ``jovyan``), so here each student's
``~/.jupyter/nbgrader_config.py`` sets ``CourseDirectory.student_id``, and file modes cannot
keep one student from another's files: a class needs a spawner with one OS user per student
(INSTRUCTORS.md).
"""

from __future__ import annotations

import importlib.util
import json
import stat
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

hubclass = pytest.importorskip("hubclass", reason="tests/hub/hubclass.py")
pytest.importorskip("jupyterhub", reason="pip install -e '.[hub]'")
pytest.importorskip("nbgrader", reason="pip install -e '.[classroom]'")

pytestmark = pytest.mark.hub

COURSE_ID = "tlcourse"
NAME = "03_comparison"
WRONG_POWER = """### BEGIN SOLUTION
need = next(n for n in range(100, 20000, 100) if stats.mcnemar_power(n, discord["clipart"], 0.03) >= 0.8)
### END SOLUTION"""


def _tool():
    spec = importlib.util.spec_from_file_location("make_student_copies",
                                                  hubclass.REPO / "tools" / "make_student_copies.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


msc = _tool()


def _exchange_config(exchange: Path) -> str:
    return f"c.CourseDirectory.course_id = {COURSE_ID!r}\nc.Exchange.root = {str(exchange)!r}\n"


def _server(hub, user: str, method: str, path: str, body: dict | None = None, timeout: float = 300):
    """A call to ``user``'s Jupyter server through the hub's proxy (the admin service's token)."""
    return hub.api(method, f"/user/{user}{path}", body, timeout=timeout)


def _answer_sources(nb: dict) -> dict[str, str]:
    return {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"]) if isinstance(c["source"], list)
            else c["source"] for c in nb["cells"]
            if c["metadata"].get("nbgrader", {}).get("solution")}


def test_two_students_through_the_exchange(tmp_path):
    if not hubclass.CHP.exists():
        pytest.fail(f"{hubclass.CHP} is missing: run `npm ci --prefix hub` (.ci/run does)")
    exchange, course = tmp_path / "exchange", tmp_path / "course"
    exchange.mkdir()
    exchange.chmod(0o777)   # every user writes here (INSTRUCTORS.md)
    # the instructor: build and release the assignment
    assert msc.prepare_course(course, msc.notebooks([NAME[:2]])) == [NAME]
    with open(course / "nbgrader_config.py", "a", encoding="utf-8") as f:
        f.write(_exchange_config(exchange))
    msc.nbgrader(course, "generate_assignment", NAME, "--force")
    msc.nbgrader(course, "release_assignment", NAME, "--force")
    source = json.loads((course / "source" / NAME / f"{NAME}.ipynb").read_text(encoding="utf-8"))
    reference = _answer_sources(source)
    wrote = {"ada": reference, "ben": {**reference, "power_images_answer": WRONG_POWER}}

    empty = tmp_path / "no_notebooks"
    empty.mkdir()
    hub = hubclass.Hub(tmp_path / "hub", notebooks=empty)
    for user in wrote:   # each student's nbgrader finds the course, the exchange and its name in ~/.jupyter
        config = tmp_path / "hub" / "home" / user / ".jupyter" / "nbgrader_config.py"
        config.parent.mkdir(parents=True)
        config.write_text(_exchange_config(exchange) + f"c.CourseDirectory.student_id = {user!r}\n")
    query = urllib.parse.urlencode({"course_id": COURSE_ID, "assignment_id": NAME})
    lists, feedback = {}, {}
    t0 = time.perf_counter()
    try:
        hub.start()
        for user, answers in wrote.items():
            hub.add_student(user)
            listed = _server(hub, user, "POST", f"/assignments/fetch?{query}")
            assert listed["success"], listed
            path = f"/api/contents/{NAME}/{NAME}.ipynb"
            model = _server(hub, user, "GET", path + "?content=1")
            nb = model["content"]
            assert "BEGIN SOLUTION" not in json.dumps(nb)
            for cell in nb["cells"]:
                grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
                if grade_id in answers:
                    cell["source"] = answers[grade_id]
            _server(hub, user, "PUT", path, {"type": "notebook", "format": "json", "content": nb})
            submitted = _server(hub, user, "POST", f"/assignments/submit?{query}")
            assert submitted["success"], submitted
        t1 = time.perf_counter()
        # the instructor: collect, autograde, feedback
        msc.nbgrader(course, "collect", NAME)
        msc.nbgrader(course, "autograde", NAME, "--force")
        t2 = time.perf_counter()
        msc.nbgrader(course, "generate_feedback", NAME, "--force")
        msc.nbgrader(course, "release_feedback", NAME)
        for user in wrote:
            _server(hub, user, "POST", f"/assignments/fetch_feedback?{query}")
            lists[user] = _server(hub, user, "GET", f"/assignments?course_id={COURSE_ID}")
            pages = sorted((tmp_path / "hub" / "home" / user / NAME / "feedback").rglob("*.html"))
            feedback[user] = [p.read_text(encoding="utf-8") for p in pages]
    finally:
        hub.close()
    print(f"\nhub, release, 2 fetches and submits: {t1 - t0:.0f} s; collect and autograde of 2: {t2 - t1:.0f} s; "
          f"feedback: {time.perf_counter() - t2:.0f} s")

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        totals = {u: gb.find_submission(NAME, u).score for u in wrote}
        max_score = gb.find_submission(NAME, "ada").max_score
    assert max_score == 2 and totals == {"ada": 2.0, "ben": 1.0}, totals
    # nothing lost: the instructor holds exactly what each student saved, once
    inbound = sorted(p.name for p in (exchange / COURSE_ID / "inbound").iterdir())
    assert [n.split("+")[0] for n in inbound] == ["ada", "ben"], inbound
    for user, answers in wrote.items():
        got = json.loads((course / "submitted" / user / NAME / f"{NAME}.ipynb").read_text(encoding="utf-8"))
        assert _answer_sources(got) == answers
    # each student sees their own submission and feedback, and only theirs
    for user, listing in lists.items():
        assert listing["success"], listing
        mine = [a for a in listing["value"] if a["assignment_id"] == NAME and a["status"] == "submitted"]
        assert mine and all(a["student_id"] == user for a in mine), mine
        assert len(feedback[user]) == 1, f"{user} has {len(feedback[user])} feedback pages"
    assert feedback["ada"][0].count("✓ Exercise") == 2
    assert feedback["ben"][0].count("✓ Exercise") == 1
    assert "the answer for a 3-point difference (0.03)" in feedback["ben"][0]
    assert "the answer for a 3-point difference (0.03)" not in feedback["ada"][0]
    # the exchange's modes: other users may drop a submission in inbound and open their own
    # feedback by its hash, but cannot list either folder
    for folder in ("inbound", "feedback"):
        mode = stat.S_IMODE((exchange / COURSE_ID / folder).stat().st_mode)
        assert not mode & (stat.S_IRGRP | stat.S_IROTH), f"{folder} is listable by others: {oct(mode)}"
