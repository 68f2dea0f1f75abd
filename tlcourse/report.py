"""Notebook 03's claims table and decision guide, built from the verdicts of its paired tests.

Both functions take ``tests``: ``{(dataset, test name): result}``, where a result is a
dict with ``estimate``, ``low``, ``high`` and ``verdict`` (notebook 03, section 6), and
return Markdown for ``IPython.display.Markdown``. The rules that turn verdicts into
claims live in :func:`tlcourse.stats.claim_verdict`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .stats import claim_verdict

__all__ = ["Claim", "CLAIMS", "format_interval", "claims_table", "decision_guide"]


@dataclass(frozen=True)
class Claim:
    """One claim of the article, the test that judges it and the verdicts for and against it.

    ``datasets``: the datasets it is judged on (None: all of them).
    """

    says: str
    test: str
    for_claim: str
    against: str
    datasets: tuple[str, ...] | None = None


#: The article's claims, in the order of the table (the tests are notebook 03's family).
CLAIMS = (
    Claim("transfer helps: ImageNet features beat training from scratch", "FE vs scratch, large", "FE wins",
          "scratch wins"),
    Claim("feature extraction works with **little data**", "FE vs scratch, small", "FE wins", "scratch wins"),
    Claim("fine tuning **needs more data**: with little data it does not beat FE", "FT vs FE, small", "FE wins",
          "FT wins"),
    Claim("fine tuning gives **better accuracy**", "FT vs FE, large", "FT wins", "FE wins"),
    Claim("fine tuning pays off **with more data**", "FT - FE grows with data", "grows", "shrinks"),
    Claim("feature extraction **overfits less**", "gap FE vs FT, large", "FE overfits less", "FE overfits more"),
    Claim("fine tuning **costs more compute**", "time FT vs FE, large", "FT costs more", "FT costs less"),
    Claim("a **very different modality**: FE may not beat training from scratch", "FE vs scratch, large",
          "scratch wins", "FE wins", ("spoken_words",)),
    Claim("... but fine tuning adapts: FT beats scratch there", "FT vs scratch, large", "FT wins", "scratch wins",
          ("spoken_words",)),
)


def format_interval(result: dict, signed: bool = False) -> str:
    """``0.812 [0.790, 0.833]``: an estimate and its 95 % interval (``signed``: ``+0.012 [...]``)."""
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(result['estimate'])} [{f.format(result['low'])}, {f.format(result['high'])}]"


def _said(tests: dict, dataset: str, test: str, names: dict) -> str:
    t = tests[dataset, test]
    ratio = test.startswith("time")
    return f"{names.get(dataset, dataset)} {format_interval(t, signed=not ratio)}{'x' if ratio else ''} ({t['verdict']})"


def claims_table(tests: dict, datasets: Sequence[str], names: dict | None = None,
                 claims: Sequence[Claim] = CLAIMS) -> str:
    """The claims table (Markdown): claim, test, verdict (with counts), evidence per dataset.

    ``names`` maps a dataset to the name shown (default: the dataset's own).
    Raises ``KeyError`` naming the missing (dataset, test) if ``tests`` lacks one.
    """
    names = names or {}
    rows = []
    for c in claims:
        on = list(c.datasets or datasets)
        missing = [(d, c.test) for d in on if (d, c.test) not in tests]
        if missing:
            raise KeyError(f"no test result for {missing[0]}: run section 6's tests first")
        found = [tests[d, c.test]["verdict"] for d in on]
        verdict = claim_verdict(found, c.for_claim, c.against)
        if len(found) > 1:
            verdict += (f" ({found.count(c.for_claim)} for, {found.count(c.against)} against, "
                        f"{found.count('borderline')} borderline of {len(found)})")
        evidence = "; ".join(_said(tests, d, c.test, names) for d in on)
        rows.append(f"| {c.says} | {c.test} | **{verdict}** | {evidence} |")
    return "\n".join(["| the article says | test (section 6) | verdict | evidence: estimate [95 % interval] (verdict) |",
                      "|---|---|---|---|", *rows])


def decision_guide(tests: dict, datasets: Sequence[str], names: dict | None = None) -> str:
    """The decision guide (a Markdown list) as the verdicts support it, not as the article says."""
    names = names or {}

    def said(test: str) -> str:
        return "; ".join(_said(tests, d, test, names) for d in datasets)

    cheaper = all(tests[d, "time FT vs FE, large"]["verdict"] == "FT costs more" for d in datasets)
    never_worse = all(tests[d, t]["verdict"] != "FE wins" for d in datasets
                      for t in ("FT vs FE, small", "FT vs FE, large"))
    return "\n".join([
        "1. **Start with feature extraction**: "
        + ("it was cheaper on every dataset" if cheaper else "it was not cheaper everywhere")
        + (", and fine tuning was never worse than it, so it is a safe baseline to fine-tune from."
           if never_worse else "; fine tuning was worse than it somewhere, so keep it as a real contender."),
        f"2. **Fine tuning, with the most labels**, against feature extraction: {said('FT vs FE, large')}.",
        "3. **With the fewest labels** (the smallest size of each dataset), fine tuning against feature "
        f"extraction: {said('FT vs FE, small')}.",
        f"4. **Training from scratch**, against feature extraction with the most labels: "
        f"{said('FE vs scratch, large')}.",
        "5. **Count your test images** before believing a difference (section 7), and prefer a difference "
        "that survives another seed.",
    ])
