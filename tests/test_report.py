"""Notebook 03's claims table and decision guide, built by tlcourse.report from test verdicts."""

from __future__ import annotations

import pytest

from tlcourse import report

DATASETS = ["a", "b"]
TESTS = ["FE vs scratch, small", "FE vs scratch, large", "FT vs FE, small", "FT vs FE, large",
         "FT vs scratch, large", "FT - FE grows with data", "gap FE vs FT, large", "time FT vs FE, large"]


def _tests(verdicts: dict) -> dict:
    out = {}
    for d in DATASETS + ["spoken_words"]:
        for t in TESTS:
            ratio = t.startswith("time")
            out[d, t] = dict(estimate=3.0 if ratio else 0.012, low=2.0 if ratio else -0.01, high=4.0 if ratio else 0.03,
                             verdict=verdicts.get((d, t), "no difference shown"))
    return out


def test_claims_table_counts_verdicts_and_shows_the_evidence():
    tests = _tests({("a", "FT vs FE, large"): "FT wins", ("b", "FT vs FE, large"): "borderline",
                    ("a", "time FT vs FE, large"): "FT costs more", ("b", "time FT vs FE, large"): "FT costs less",
                    ("spoken_words", "FE vs scratch, large"): "scratch wins"})
    text = report.claims_table(tests, DATASETS, {"a": "set A"})
    lines = text.splitlines()
    assert len(lines) == 2 + len(report.CLAIMS) and all(line.count(" | ") == 3 for line in lines[2:])
    accuracy = next(line for line in lines if "better accuracy" in line)
    assert "**agrees (1 for, 0 against, 1 borderline of 2)**" in accuracy
    assert "set A +0.012 [-0.010, +0.030] (FT wins); b +0.012" in accuracy
    cost = next(line for line in lines if "costs more compute" in line)
    assert "**mixed (1 for, 1 against, 0 borderline of 2)**" in cost and "3.000 [2.000, 4.000]x" in cost
    modality = next(line for line in lines if "very different modality" in line)
    assert "**agrees**" in modality and "set A" not in modality   # judged on spoken words only
    assert "{" not in text and "(\'" not in text                  # no raw dicts or tuples


def test_claims_table_says_what_is_missing():
    tests = _tests({})
    del tests["b", "FT vs FE, small"]
    with pytest.raises(KeyError, match=r"\('b', 'FT vs FE, small'\).*section 6"):
        report.claims_table(tests, DATASETS)


def test_decision_guide_follows_the_verdicts():
    cheap = {(d, "time FT vs FE, large"): "FT costs more" for d in DATASETS}
    guide = report.decision_guide(_tests(cheap), DATASETS)
    assert guide.startswith("1. **Start with feature extraction**: it was cheaper on every dataset, and fine "
                            "tuning was never worse")
    worse = report.decision_guide(_tests({**cheap, ("b", "FT vs FE, small"): "FE wins"}), DATASETS)
    assert "worse than it somewhere" in worse and "b +0.012 [-0.010, +0.030] (FE wins)" in worse
    assert len(guide.splitlines()) == 5
