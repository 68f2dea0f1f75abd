"""Statistics for comparing methods honestly: intervals that hold the training's randomness.

A comparison's accuracy varies for two reasons: which **test images** were drawn
and which **seed** trained the model (on cross-validated data, which fold it
trained on). :class:`Bootstrap` resamples both at once: in every replicate it
draws the seeds (runs) with replacement and gives every *group* of test images
(a drawing and its near-copies, see :func:`tlcourse.data.drawing_groups`) a
multinomial weight, the same weights for every method, size and seed of a
dataset. So the accuracy of a method, the difference of two methods on the same
images (a paired test) and how that difference changes with the training-set
size all come from one set of replicates.

Everything is integer counting on NumPy's portable random generator: the same
records give the same digits on every machine.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

__all__ = ["Cell", "Bootstrap", "Comparison", "interval", "p_value", "holm", "verdict", "claim_verdict",
           "cells_from_records", "mcnemar_power"]


@dataclass
class Cell:
    """One method at one training-set size: per-seed correct counts per image group."""

    seeds: tuple            # the seeds, one run each, in this order
    correct: np.ndarray     # int (runs, groups): test images right, per group
    tested: np.ndarray      # int (runs, groups): test images, per group
    train_accuracy: np.ndarray  # float (runs,)
    seconds: np.ndarray     # float (runs,)
    epochs: np.ndarray      # int (runs,)
    capped: np.ndarray      # bool (runs,)

    @property
    def accuracy(self) -> float:
        """Share of all held-out predictions (over seeds and images) that are right."""
        return float(self.correct.sum() / self.tested.sum())

    def run_accuracies(self) -> np.ndarray:
        """Test accuracy of each run."""
        return self.correct.sum(axis=1) / self.tested.sum(axis=1)


def cells_from_records(records: list[dict], labels: np.ndarray, groups: np.ndarray) -> dict:
    """``{(method, per_class): Cell}`` from one dataset's comparison records.

    ``labels`` and ``groups`` are the pool's (``pool.y``, ``pool.groups``);
    each record's ``test_index`` and ``test_pred`` give its per-image results.
    """
    tested_any = np.unique(np.concatenate([np.asarray(r["test_index"], int) for r in records]))
    g = np.full(len(labels), -1)
    g[tested_any] = np.unique(np.asarray(groups)[tested_any], return_inverse=True)[1]  # tested groups only
    n_groups = int(g.max()) + 1
    out: dict = {}
    keys = sorted({(r["method"], r["per_class"]) for r in records}, key=lambda k: (k[0], k[1] or 10**9))
    for key in keys:
        rows = sorted((r for r in records if (r["method"], r["per_class"]) == key), key=lambda r: r["seed"])
        correct = np.zeros((len(rows), n_groups), np.int64)
        tested = np.zeros((len(rows), n_groups), np.int64)
        for i, r in enumerate(rows):
            idx = np.asarray(r["test_index"], int)
            ok = np.frombuffer(r["test_pred"].encode(), np.uint8) - ord("0") == labels[idx]
            np.add.at(correct[i], g[idx], ok.astype(np.int64))
            np.add.at(tested[i], g[idx], 1)
        out[key] = Cell(tuple(r["seed"] for r in rows), correct, tested,
                        np.array([r["train_accuracy"] for r in rows]), np.array([r["seconds"] for r in rows]),
                        np.array([r["epochs"] for r in rows]), np.array([bool(r.get("capped")) for r in rows]))
    return out


class Bootstrap:
    """Replicates that resample seeds and image groups together (``n`` of them, drawn from ``seed``).

    ``runs``: how many seeds each cell has (the same seeds in every cell of a
    dataset, so run ``k`` of two methods trained with the same seed and fold:
    resampling run indices keeps the pairs). ``groups``: the number of image groups.
    """

    def __init__(self, runs: int, groups: int, n: int = 10000, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.n = n
        self.run_counts = rng.multinomial(runs, np.full(runs, 1 / runs), size=n)        # (n, runs)
        # (n, groups), drawn in slices and stored in the smallest integer type that holds `groups`
        # (2 bytes, not 8, for Fashion-MNIST's 2,000 groups: 38 MiB instead of 153 at n=10,000);
        # the same numbers as one draw of size n, and `_per_run` multiplies them as float64
        probs, small = np.full(groups, 1 / groups), np.min_scalar_type(groups)
        self.group_weights = np.concatenate([rng.multinomial(groups, probs, size=min(self._CHUNK, n - i)).astype(small)
                                             for i in range(0, n, self._CHUNK)])

    _CHUNK = 1000

    def _chunks(self, f, chunk: int = _CHUNK) -> np.ndarray:
        """``f(run_counts, group_weights)`` over slices of the replicates (bounded memory)."""
        return np.concatenate([f(self.run_counts[i:i + chunk], self.group_weights[i:i + chunk])
                               for i in range(0, self.n, chunk)])

    @staticmethod
    def _per_run(w: np.ndarray, cell: Cell) -> tuple[np.ndarray, np.ndarray]:
        """(correct, tested) of each run under the group weights ``w``: two (chunk, runs) arrays.

        One float64 matrix product (BLAS) instead of NumPy's slow integer one; every product
        and sum is an integer far below 2**53, so the result is exact: the same digits."""
        runs = len(cell.correct)
        both = w.astype(np.float64) @ np.concatenate([cell.correct, cell.tested]).T.astype(np.float64)
        return both[:, :runs], both[:, runs:]

    def accuracy(self, cell: Cell) -> np.ndarray:
        """Replicates of the cell's accuracy (micro-averaged over the resampled seeds and groups)."""
        def f(c, w):
            correct, tested = self._per_run(w, cell)
            return (c * correct).sum(axis=1) / np.maximum((c * tested).sum(axis=1), 1)
        return self._chunks(f)

    def run_accuracies(self, cell: Cell) -> np.ndarray:
        """(n, runs): each run's test accuracy under each replicate's group weights."""
        def f(c, w):
            correct, tested = self._per_run(w, cell)
            return correct / np.maximum(tested, 1)
        return self._chunks(f)

    def mean_over_runs(self, per_run: np.ndarray) -> np.ndarray:
        """Replicates of the mean of a per-run quantity (``(runs,)`` or ``(n, runs)``) over resampled seeds."""
        per_run = np.broadcast_to(per_run, self.run_counts.shape)
        return (self.run_counts * per_run).sum(axis=1) / self.run_counts.sum(axis=1)


def interval(replicates: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates."""
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(replicates, tail)), float(np.percentile(replicates, 100 - tail))


def p_value(replicates: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "the true value is 0": twice the smaller tail, (count + 1) / (n + 1)."""
    n = len(replicates)
    tail = min(np.sum(replicates <= 0), np.sum(replicates >= 0))
    return float(min(1.0, 2 * (tail + 1) / (n + 1)))


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control, any dependence)."""
    p = np.asarray(p_values, float)
    order = np.argsort(p, kind="stable")
    adjusted = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def verdict(difference: float, low: float, high: float, p_holm: float, a: str, b: str,
            alpha: float = 0.05, touch: float = 0.005) -> str:
    """``a`` or ``b`` when the difference survives Holm's correction; otherwise ``"borderline"`` when
    the 95 % interval excludes zero or touches it (an end within ``touch`` of 0), else ``"no difference shown"``.
    """
    if p_holm < alpha:
        return a if difference > 0 else b
    if low > -touch and high > 0 or high < touch and low < 0:
        return "borderline"
    return "no difference shown"


def claim_verdict(results: list[str], for_claim: str, against: str) -> str:
    """A claim's verdict from its tests' verdicts (one per dataset), symmetric in the two sides.

    ``agrees``: some test goes the claim's way and none against it; ``disagrees``:
    the reverse; ``mixed``: both happen; ``not shown``: neither (ties and borderlines).
    """
    pro, con = results.count(for_claim), results.count(against)
    return ("mixed" if pro and con else "agrees" if pro else "disagrees" if con else "not shown")


@functools.lru_cache(maxsize=4)
def _bootstrap(runs: int, groups: int, n: int, seed: int) -> Bootstrap:
    """One :class:`Bootstrap` per shape and seed, shared (it is never changed after it is drawn):
    notebook 03 builds 15 comparisons without one seed, and a test set that is the same for every
    seed (Fashion-MNIST's) then draws its 10,000 x 2,000 group weights once, not five times."""
    boot = Bootstrap(runs, groups, n, seed)
    boot.run_counts.flags.writeable = boot.group_weights.flags.writeable = False
    return boot


class Comparison:
    """One dataset's comparison records, analysed with one set of :class:`Bootstrap` replicates.

    Every accuracy, difference and interaction of the dataset uses the same
    replicates, so the run ``k`` (seed ``k``, on cross-validated data fold
    ``k``) of every method and size is resampled together, and so is every
    image group.
    """

    def __init__(self, records: list[dict], labels: np.ndarray, groups: np.ndarray, n: int = 10000, seed: int = 0,
                 drop_seed: int | None = None):
        rows = [r for r in records if r.get("stage", "compare") == "compare" and r["seed"] != drop_seed]
        self.cells = cells_from_records(rows, labels, groups)
        seeds = {c.seeds for c in self.cells.values()}
        if len(seeds) != 1:
            raise ValueError(f"every method and size needs the same seeds; found {sorted(seeds)}.")
        self.seeds = seeds.pop()
        self.sizes = sorted({k[1] for k in self.cells}, key=lambda z: z or 10**9)
        self.methods = sorted({k[0] for k in self.cells})
        any_cell = next(iter(self.cells.values()))
        self.boot = _bootstrap(len(self.seeds), any_cell.correct.shape[1], n, seed)
        self._memo: dict = {}

    def _replicates(self, method: str, size) -> np.ndarray:
        if (method, size) not in self._memo:
            self._memo[method, size] = self.boot.accuracy(self.cells[method, size])
        return self._memo[method, size]

    @staticmethod
    def _summary(point: float, reps: np.ndarray, **extra) -> dict:
        low, high = interval(reps)
        return {"estimate": float(point), "low": low, "high": high, "p": p_value(reps), **extra}

    def accuracy(self, method: str, size) -> dict:
        """Accuracy over every seed's held-out predictions, with its 95 % interval."""
        cell = self.cells[method, size]
        reps = self._replicates(method, size)
        low, high = interval(reps)
        return {"estimate": cell.accuracy, "low": low, "high": high, "runs": len(cell.seeds),
                "predictions": int(cell.tested.sum()), "capped": int(cell.capped.sum()),
                "seconds": float(np.median(cell.seconds)), "epochs": float(np.median(cell.epochs))}

    def difference(self, a: str, b: str, size) -> dict:
        """Accuracy of ``a`` minus ``b`` on the same test images (paired), with interval and p-value."""
        point = self.cells[a, size].accuracy - self.cells[b, size].accuracy
        return self._summary(point, self._replicates(a, size) - self._replicates(b, size))

    def interaction(self, a: str, b: str, small, large) -> dict:
        """How much ``a - b`` grows from ``small`` to ``large`` labels per class."""
        point = self.difference(a, b, large)["estimate"] - self.difference(a, b, small)["estimate"]
        reps = (self._replicates(a, large) - self._replicates(b, large)) - (
            self._replicates(a, small) - self._replicates(b, small))
        return self._summary(point, reps)

    def gap(self, method: str, size) -> tuple[float, np.ndarray]:
        """Train minus test accuracy (the overfitting gap), mean over runs, and its replicates."""
        cell = self.cells[method, size]
        point = float(np.mean(cell.train_accuracy - cell.run_accuracies()))
        return point, self.boot.mean_over_runs(cell.train_accuracy[None, :] - self.boot.run_accuracies(cell))

    def gap_difference(self, a: str, b: str, size) -> dict:
        """Gap of ``a`` minus gap of ``b`` (negative: ``a`` overfits less)."""
        (pa, ra), (pb, rb) = self.gap(a, size), self.gap(b, size)
        return self._summary(pa - pb, ra - rb, gaps=(pa, pb))

    def seconds_ratio(self, a: str, b: str, size) -> dict:
        """Mean training seconds of ``a`` over ``b``'s (runs resampled); p tests a ratio of 1."""
        sa, sb = self.cells[a, size].seconds, self.cells[b, size].seconds
        reps = self.boot.mean_over_runs(sa) / self.boot.mean_over_runs(sb)
        low, high = interval(reps)
        return {"estimate": float(sa.mean() / sb.mean()), "low": low, "high": high, "p": p_value(np.log(reps))}


def mcnemar_power(n: int, discordance: float, difference: float, alpha: float = 0.05) -> float:
    """Power of McNemar's exact test (level ``alpha``) on ``n`` paired images.

    ``discordance``: the share of images the two methods disagree on (one right,
    one wrong); ``difference``: the true accuracy difference. The number of
    discordant pairs is binomial(``n``, ``discordance``); given ``D`` of them,
    the count won by the better method is binomial(``D``, 1/2 + difference /
    (2 discordance)). Exact sums with :mod:`scipy.stats`.
    """
    from scipy import stats as st

    if not 0 < discordance <= 1 or abs(difference) > discordance:
        raise ValueError("need 0 < discordance <= 1 and |difference| <= discordance.")
    q = 0.5 + abs(difference) / (2 * discordance)
    d = st.binom(n, discordance)
    lo_d, hi_d = (int(v) for v in d.interval(1 - 1e-9))
    pairs = [(D, lo) for D in range(max(lo_d, 1), hi_d + 1) if (lo := _mcnemar_lo(D, alpha)) is not None]
    if not pairs:
        return 0.0
    D, lo = (np.array(v) for v in zip(*pairs))
    terms = d.pmf(D) * (st.binom.cdf(lo, D, q) + st.binom.sf(D - lo - 1, D, q))   # element by element
    power = 0.0
    for t in terms:            # summed in the same order as one term at a time: the same digits
        power += t
    return float(power)


@functools.lru_cache(maxsize=None)
def _mcnemar_lo(D: int, alpha: float) -> int | None:
    """The exact two-sided test on ``D`` discordant pairs rejects when k <= lo or k >= D - lo:
    lo is the largest k with 2 P(X <= k) < alpha (None when no k qualifies). Depends on D only."""
    from scipy import stats as st

    small = np.flatnonzero(2 * st.binom.cdf(np.arange(D // 2 + 1), D, 0.5) < alpha)
    return int(small[-1]) if len(small) else None
