"""nbgrader on the course, for real and offline: build a notebook's assignment in a temporary
course folder, autograde three submissions and read the scores and the feedback.

* ``reference``: the notebook's own solutions: full marks;
* ``untouched``: the released student copy as handed out: zero on every graded cell;
* ``typical``: typical wrong answers in some exercises, the others right: partial marks, and
  the feedback names each mistake.

Notebook 03 is the one graded here (the cheapest to run: its exercises analyse committed
records); notebook 01's wrong answers (softmax with ``from_logits=True``, ``make_head()``'s 7
outputs for 3 classes) are ready in ``SCENARIOS`` for ``TLCOURSE_GRADE_NOTEBOOK=01`` (passed once with
01's lesson-only cells tagged ``autograde-skip``: 247 s for the three submissions, 82 s each,
at load 3.5-5.2; not in CI), notebook 02's (BatchNorm left trainable in the
unfreeze loop, a depth guessed) for ``TLCOURSE_GRADE_NOTEBOOK=02``, and notebook 04's (Grad-CAM of one class
repeated, counts instead of shares) for ``TLCOURSE_GRADE_NOTEBOOK=04`` (479 s for the three
submissions at load 4-6; 252 s at load 3.6-4.0 with its heavy sections skipped: not in CI either). Every graded notebook (01 to 04) is built
as an nbgrader assignment (seconds, nothing executed). The three submissions are autograded in
one ``nbgrader autograde`` call; cells tagged ``autograde-skip`` (01's sections that no exercise builds on; 03's ImageNet
demonstration, its verdicts with one seed left out and what reads them, its live re-run of the comparison; 04's
per-block, gradual-unfreezing and Holm sections, its sanity check and spectrograms: no exercise
needs them) are left out by the course's
``nbgrader_config.py``. Autograding still runs the rest of the notebook three times: marked slow.
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


WRONG_02 = {
    "unfreeze_answer": """### BEGIN SOLUTION
top5 = ("block_12_", "block_13_", "block_14_", "block_15_", "head_")
base.trainable = True
for layer in base.layers:
    layer.trainable = layer.name.startswith(top5)
inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
model5 = keras.Model(inputs, head(keras.layers.GlobalAveragePooling2D()(base(inputs, training=False))))
model5.compile(keras.optimizers.Adam(1e-4), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
### END SOLUTION""",
    "article_recipe_answer": """### BEGIN SOLUTION
by_weights, by_convs = 2, 3
### END SOLUTION""",
}


WRONG_03 = {
    "power_images_answer": """### BEGIN SOLUTION
need = next(n for n in range(100, 20000, 100) if stats.mcnemar_power(n, discord["clipart"], 0.03) >= 0.8)
### END SOLUTION""",
}

WRONG_04 = {
    "cam_classes_answer": """### BEGIN SOLUTION
i = shift_idx[0]
one = training.extract_features(to_cut, x96[i:i + 1], cache=False)
all_maps = grad_cam(net, np.repeat(one, len(class_names), axis=0), np.full(len(class_names), y[i]))
predicted = int(np.argmax(net.predict(acts[i:i + 1], verbose=0)))
### END SOLUTION""",
    "forgetting_by_class_answer": """### BEGIN SOLUTION
both = np.r_[test_idx, shift_idx]
flips = results["FT 1e-03", SEEDS[0]]["imagenet"] != imagenet_top1[both]
per_class = np.array([flips[y[both] == c].sum() for c in range(len(class_names))])
### END SOLUTION""",
}

#: notebook -> (its name, wrong answers, the typical submission's score per check, what its feedback says)
SCENARIOS = {
    "01": ("01_feature_extraction", WRONG_01, {"deeper_head": 0.0, "smaller_images": 1.0, "own_pictures": 0.0},
           ["softmax a second time", "7 outputs, but your folder has 3 classes"]),
    "02": ("02_fine_tuning", WRONG_02, {"unfreeze": 0.0, "article_recipe": 0.0, "predict_file": 1.0},
           ["BatchNorm layers are trainable", "`by_weights` is 2, but that depth trains"]),
    "03": ("03_comparison", WRONG_03, {"power_images": 0.0, "drop_seed": 1.0},
           ["the answer for a 3-point difference (0.03)"]),
    "04": ("04_fine_tuning_further", WRONG_04, {"scaled_gradients": 1.0, "cam_classes": 0.0, "forgetting_by_class": 0.0},
           ["maps are the same", "holds counts of changed answers"]),
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


def _cell_seconds(nb: dict) -> list[tuple[float, str]]:
    """(seconds, first line) per executed code cell, from the timing nbclient records."""
    from datetime import datetime

    out = []
    for cell in nb["cells"]:
        t = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in t and "shell.execute_reply" in t:
            a, b = (datetime.fromisoformat(t[k].replace("Z", "+00:00")) for k in
                    ("iopub.execute_input", "shell.execute_reply"))
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            out.append(((b - a).total_seconds(), src.strip().splitlines()[0][:60] if src.strip() else ""))
    return out


def test_every_graded_notebook_is_an_assignment(tmp_path):
    """01 to 04 build as nbgrader assignments: solutions out, checks locked, one point each."""
    course = tmp_path / "course"
    names = msc.prepare_course(course, msc.notebooks([]))
    assert names == ["01_feature_extraction", "02_fine_tuning", "03_comparison", "04_fine_tuning_further"]
    for name in names:
        msc.nbgrader(course, "generate_assignment", name, "--force")
        released = json.loads((course / "release" / name / f"{name}.ipynb").read_text(encoding="utf-8"))
        cells = [c for c in released["cells"] if "nbgrader" in c["metadata"]]
        graded = [c for c in cells if c["metadata"]["nbgrader"]["grade"]]
        answers = [c for c in cells if c["metadata"]["nbgrader"]["solution"]]
        assert len(graded) >= 2, f"{name}: fewer than 2 graded exercises"
        assert all(c["metadata"]["nbgrader"]["locked"] and c["metadata"]["nbgrader"]["points"] == 1 for c in graded)
        assert "BEGIN SOLUTION" not in json.dumps(released), f"{name}: a solution reached the student version"
        assert all("raise NotImplementedError()" in "".join(c["source"]) for c in answers)
        assert not any(c.get("outputs") for c in released["cells"] if c["cell_type"] == "code")


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
    run = {}
    for s in scores:
        nb = json.loads((course / "autograded" / s / NAME / f"{NAME}.ipynb").read_text(encoding="utf-8"))
        run[s] = _cell_seconds(nb)
        slow = sorted(run[s], reverse=True)[:4]
        print(f"{s}: {len(run[s])} cells, {sum(t for t, _ in run[s]):.0f} s in cells; slowest: "
              + "; ".join(f"{t:.0f} s {line!r}" for t, line in slow))
        skipped = [c for c in nb["cells"] if "autograde-skip" in c["metadata"].get("tags", [])]
        assert all("not run by the autograder" in "".join(c["source"]) and not c.get("outputs") for c in skipped)
        if NUMBER == "03":   # section 3's two cells, section 6's verdicts with a seed left out and the 3 cells
            assert len(skipped) == 7     # that read them (the rule's check, claims table, decision guide), the live slice
        if NUMBER == "04":   # sections 4, 5 and 7, the Grad-CAM sanity check, the spectrograms
            assert len(skipped) == 9
    print(f"nbgrader outside the cells: {seconds - sum(t for r in run.values() for t, _ in r):.0f} s")
    assert max_score == len(graded)
    assert scores["reference"] == dict.fromkeys(graded, 1.0) and totals["reference"] == len(graded)
    assert scores["untouched"] == dict.fromkeys(graded, 0.0) and totals["untouched"] == 0
    assert scores["typical"] == TYPICAL and 0 < totals["typical"] < len(graded)
    # The goal (2 minutes per submission on an idle 2-core machine; 58 s measured at load 1-4) is
    # a speed goal: it is printed above, not asserted (a loaded CI machine is not a slow autograder).

    msc.nbgrader(course, "generate_feedback", NAME, "--force")
    feedback = {s: (course / "feedback" / s / NAME / f"{NAME}.html").read_text(encoding="utf-8")
                for s in scores}
    for says in SAYS:
        assert says in feedback["typical"] and says not in feedback["reference"]
    assert feedback["reference"].count("✓ Exercise") == len(graded)
    assert "NotImplementedError" in feedback["untouched"] and "✓ Exercise" not in feedback["untouched"]
    assert feedback["typical"].count("✓ Exercise") == sum(TYPICAL.values())
    shutil.rmtree(course / "autograded")
