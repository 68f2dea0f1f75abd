"""nbgrader on the course, for real and offline: build a notebook's assignment in a temporary
course folder, autograde three submissions and read the scores and the feedback.

* ``reference``: the notebook's own solutions: full marks;
* ``untouched``: the released student copy as handed out: zero on every graded cell;
* ``typical``: typical wrong answers in some exercises, the others right: partial marks, and
  the feedback names each mistake.

Notebook 03 is the one graded here (the cheapest to run: its exercises analyse committed
records); notebook 01's wrong answers (softmax with ``from_logits=True``, ``make_head()``'s 7
outputs for 3 classes) are ready in ``SCENARIOS`` for ``TLCOURSE_GRADE_NOTEBOOK=01``.
Autograding runs the notebook three times (minutes on 2 cores): marked slow.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NUMBER = os.environ.get("TLCOURSE_GRADE_NOTEBOOK", "03")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("nbgrader") is None,
                                 reason="nbgrader is not installed (pip install -e '.[classroom]')")]


def _tool():
    spec = importlib.util.spec_from_file_location("make_student_copies", ROOT / "tools" / "make_student_copies.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


msc = _tool()

WRONG_01 = {
    "deeper_head_answer": """### BEGIN SOLUTION
deeper = keras.Sequential([keras.Input((1280,)), keras.layers.Dense(256, activation="relu"),
                           keras.layers.Dense(len(class_names), activation="softmax")])
deeper.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
               metrics=["accuracy"])
deeper.fit(f_train, y_train, epochs=40, batch_size=32, verbose=0)
### END SOLUTION""",
    "own_pictures_answer": """import shutil
import tempfile

folder = Path(tempfile.mkdtemp()) / "my_pictures"
for name in ("birds", "fruit", "vehicles"):
    shutil.copytree(root / "test" / name, folder / name)
mine = data.load_folder(folder, image_size=IMAGE_SIZE, as_numpy=True)
my_head = make_head()
my_head.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
my_head.fit(base.predict(mine.train[0], verbose=0), mine.train[1], epochs=40, verbose=0)""",
}


WRONG_03 = {
    "power_images_answer": """### BEGIN SOLUTION
need = next(n for n in range(100, 20000, 100) if stats.mcnemar_power(n, discord["clipart"], 0.03) >= 0.8)
### END SOLUTION""",
}

#: notebook -> (its name, wrong answers, the typical submission's score per check, what its feedback says)
SCENARIOS = {
    "01": ("01_feature_extraction", WRONG_01, {"deeper_head": 0.0, "smaller_images": 1.0, "own_pictures": 0.0},
           ["softmax a second time", "7 outputs, but your folder has 3 classes"]),
    "03": ("03_comparison", WRONG_03, {"power_images": 0.0, "drop_seed": 1.0},
           ["the answer for a 3-point difference (0.03)"]),
}
NAME, WRONG, TYPICAL, SAYS = SCENARIOS[NUMBER]


def _sources(nb: dict) -> dict[str, str]:
    return {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"]) if isinstance(c["source"], list)
            else c["source"] for c in nb["cells"] if "nbgrader" in c["metadata"]}


def _submit(course: Path, student: str, answers: dict[str, str]) -> None:
    nb = json.loads((course / "release" / NAME / f"{NAME}.ipynb").read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell["source"] = answers[grade_id]
    folder = course / "submitted" / student / NAME
    folder.mkdir(parents=True)
    (folder / f"{NAME}.ipynb").write_text(json.dumps(nb, indent=1), encoding="utf-8")


def test_autograde_three_submissions(tmp_path):
    course = tmp_path / "course"
    names = msc.prepare_course(course, msc.notebooks([NUMBER]))
    assert names == [NAME]
    msc.nbgrader(course, "generate_assignment", NAME, "--force")
    released = json.loads((course / "release" / NAME / f"{NAME}.ipynb").read_text(encoding="utf-8"))
    source = json.loads((course / "source" / NAME / f"{NAME}.ipynb").read_text(encoding="utf-8"))
    text = json.dumps(released)
    assert "BEGIN SOLUTION" not in text and "NotImplementedError" in text
    answers = {k: v for k, v in _sources(json.loads(json.dumps(released))).items() if k.endswith("_answer")}
    assert answers and all(v.strip() == "# YOUR CODE HERE\nraise NotImplementedError()" for v in answers.values())

    reference = {k: v for k, v in _sources(source).items() if k.endswith("_answer")}
    _submit(course, "reference", reference)
    _submit(course, "untouched", {})
    _submit(course, "typical", {**reference, **WRONG})
    t0 = time.perf_counter()
    msc.nbgrader(course, "autograde", NAME, "--force")
    seconds = time.perf_counter() - t0
    print(f"\nautograde of {NAME}, 3 submissions: {seconds:.0f} s ({seconds / 3:.0f} s each)")

    from nbgrader.api import Gradebook

    graded = tuple(TYPICAL)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {s: {g: gb.find_grade(g, NAME, NAME, s).score for g in graded}
                  for s in ("reference", "untouched", "typical")}
        totals = {s: gb.find_submission(NAME, s).score for s in scores}
        max_score = gb.find_submission(NAME, "reference").max_score
    print("scores:", scores)
    assert max_score == len(graded)
    assert scores["reference"] == dict.fromkeys(graded, 1.0) and totals["reference"] == len(graded)
    assert scores["untouched"] == dict.fromkeys(graded, 0.0) and totals["untouched"] == 0
    assert scores["typical"] == TYPICAL and 0 < totals["typical"] < len(graded)
    assert seconds / 3 < 300, "one notebook's autograde took more than 5 minutes"

    msc.nbgrader(course, "generate_feedback", NAME, "--force")
    feedback = {s: (course / "feedback" / s / NAME / f"{NAME}.html").read_text(encoding="utf-8")
                for s in scores}
    for says in SAYS:
        assert says in feedback["typical"] and says not in feedback["reference"]
    assert feedback["reference"].count("✓ Exercise") == len(graded)
    assert "NotImplementedError" in feedback["untouched"] and "✓ Exercise" not in feedback["untouched"]
    assert feedback["typical"].count("✓ Exercise") == sum(TYPICAL.values())
    shutil.rmtree(course / "autograded")
