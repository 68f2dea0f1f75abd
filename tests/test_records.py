"""The committed comparison records (notebooks/results/comparison.jsonl) against the design the code would run.

Notebook 03 analyses these records instead of training live, so they must be
exactly the runs :func:`tlcourse.experiments.plan` asks for, with today's
settings, on today's data; and the verdicts drawn from them must not hang on one seed.
"""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pytest

from tlcourse import data, experiments as E

RECORDS = E.read_records()
KEY = ("stage", "dataset", "method", "per_class", "seed", "depth", "learning_rate")


@pytest.mark.parametrize("name", list(E.DESIGN))
def test_the_records_are_the_planned_runs_and_nothing_else(name):
    mine = [r for r in RECORDS if r["dataset"] == name]
    planned = [tuple(p[k] for k in KEY) for p in E.plan(name, mine)]
    recorded = [tuple(r[k] for k in KEY) for r in mine]
    assert sorted(recorded, key=repr) == sorted(planned, key=repr), \
        f"the records of {name} do not match the design: run `python -m tlcourse compare {name}`"
    assert any(p[0] == "compare" for p in planned), "the comparison stage has not run"


@pytest.mark.parametrize("name", list(E.DESIGN))
def test_every_record_used_todays_settings_and_data(name):
    settings, digest = E.DESIGN[name]["settings"], data.load_pool(name).digest()
    for r in (r for r in RECORDS if r["dataset"] == name):
        expected = asdict(replace(settings, depth=r["depth"], learning_rate=r["learning_rate"]))
        assert {k: r[k] for k in expected} == expected, f"a {name} record was made with other settings"
        assert r["pool_digest"] == digest, f"{name} changed since its records were made: re-run the comparison"


@pytest.mark.parametrize("name", [n for n in E.DESIGN if n != "fashion_mnist"])
def test_cross_validated_records_test_each_image_once_per_cell(name):
    pool = data.load_pool(name)
    for method in E.METHODS:
        rows = [r for r in RECORDS if r["dataset"] == name and r["stage"] == "compare" and r["method"] == method
                and r["per_class"] is None]
        tested = np.sort(np.concatenate([r["test_index"] for r in rows]))
        assert np.array_equal(tested, np.arange(len(pool)))


def test_the_selection_never_predicted_a_test_image():
    assert all(r["test_index"] == [] and r["test_pred"] == "" for r in RECORDS if r["stage"] == "select")


def test_scratch_trains_until_it_stops_improving():
    scratch = [r for r in RECORDS if r["stage"] == "compare" and r["method"] == "scratch"]
    assert sum(r["capped"] for r in scratch) <= 0.1 * len(scratch)
