"""Is a margin over a baseline real? A paired bootstrap over test records.

Model and baseline are scored on the same records drawn with replacement, many times;
the spread of the difference says whether the test split's size can tell it from
chance (a 298-record DuEE split cannot tell +0.005 trigger F1 apart from nothing).
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from .scoring import HEADLINE
from ..core.records import MAIN_TASKS, Record
from .scoring import AUTO_SPANS, Counts, Prediction, competition_counts, score_task


def headline(golds: Sequence[Record], preds: Sequence[Prediction], task: str, dataset: str = "") -> float:
    """The task's headline metric, scored as ``score_all`` scores it."""
    return score_task(golds, preds, task, dataset, spans=AUTO_SPANS.get(task, "offsets")).values()[HEADLINE[task]]


@dataclass
class Margin:
    dataset: str
    task: str
    metric: str
    records: int
    model: float
    baseline: str          # the baseline that scores best on the whole split
    baseline_value: float
    difference: float      # model - baseline on the whole split
    difference_low: float  # 2.5th percentile of the difference over the draws
    difference_high: float  # 97.5th
    model_ahead_share: float  # share of draws where the model scores strictly higher
    resamples: int

    def to_json(self) -> dict:
        return asdict(self)


def paired_bootstrap(golds: Sequence[Record], model: Sequence[Prediction], base: Sequence[Prediction], task: str,
                     dataset: str = "", resamples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """(2.5th, 97.5th percentile of model - base, share of draws with model strictly above base: a tie is not
    ahead), the same draw of records for both.

    Each record is scored once: every headline metric is a function of sums over records (tp / fp / fn, correct
    labels, the competition's counts), so a draw adds up its records' counts instead of scoring them again, and
    gives what scoring the drawn records would (tests/test_baselines.py checks it)."""
    if not golds:
        raise ValueError("a bootstrap needs records and at least one draw")
    if not len(model) == len(base) == len(golds):
        raise ValueError(f"{len(golds)} records, {len(model)} and {len(base)} predictions: not the same records")
    return _bootstrap(count_rows(golds, model, task, dataset), count_rows(golds, base, task, dataset), task,
                      resamples, seed)


def _bootstrap(model_counts: np.ndarray, base_counts: np.ndarray, task: str, resamples: int,
               seed: int) -> tuple[float, float, float]:
    """``paired_bootstrap`` over the records' ``count_rows``."""
    if resamples < 1 or not len(model_counts):
        raise ValueError("a bootstrap needs records and at least one draw")
    rng = random.Random(seed)
    n, diffs = len(model_counts), []
    for _ in range(resamples):
        idx = np.fromiter((rng.randrange(n) for _ in range(n)), dtype=np.int64, count=n)
        diffs.append(headline_from_counts(task, model_counts[idx].sum(axis=0))
                     - headline_from_counts(task, base_counts[idx].sum(axis=0)))
    diffs.sort()
    k = int(0.025 * resamples)  # as many draws cut at each end
    return diffs[k], diffs[resamples - 1 - k], sum(d > 0 for d in diffs) / resamples


def count_rows(golds: Sequence[Record], preds: Sequence[Prediction], task: str, dataset: str = "") -> np.ndarray:
    """One row of ``record_counts`` per record: their column sums give the headline metric of any set of them."""
    return np.array([record_counts(g, p, task, dataset) for g, p in zip(golds, preds)], dtype=np.int64)


def record_counts(gold: Record, pred: Prediction, task: str, dataset: str = "") -> tuple[int, ...]:
    """The counts of one record that the task's headline metric is made of (``headline_from_counts``)."""
    if task == "NEG":
        return competition_counts([gold], [pred])
    ts = score_task([gold], [pred], task, dataset, spans=AUTO_SPANS.get(task, "offsets"))
    if task == "RC":
        return int(ts.extra["accuracy"]), 1
    c = ts.metrics[HEADLINE[task].removesuffix("_f1")]
    return c.tp, c.fp, c.fn


def headline_from_counts(task: str, counts: Sequence[int]) -> float:
    """The headline metric of records whose ``record_counts`` sum to ``counts``."""
    counts = [int(c) for c in counts]
    if task == "NEG":
        from .competition import competition_from_counts
        return competition_from_counts(counts)["score"]
    if task == "RC":
        return counts[0] / counts[1] if counts[1] else 0.0
    return Counts(*counts).f1


def _groups(golds: Sequence[Record], keep: Callable[[Record], bool]) -> dict[tuple[str, str], list[int]]:
    """Record indices per (dataset, main task), of the records ``keep`` accepts."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, g in enumerate(golds):
        if g.task in MAIN_TASKS and keep(g):
            groups.setdefault((g.dataset, g.task), []).append(i)
    return dict(sorted(groups.items()))


def against_best_baseline(golds: Sequence[Record], preds: Sequence[Prediction],
                          baselines: Mapping[tuple[str, str], Mapping[str, Callable[[Record], Prediction]]],
                          resamples: int = 1000, seed: int = 0) -> list[Margin]:
    """Per (dataset, main task) with a baseline: the model against the baseline that scores best on that
    group's whole split (``baselines``: ``instructie.baselines.build_baselines`` output)."""
    out = []
    for (ds, task), idx in _groups(golds, lambda g: bool(baselines.get((g.dataset, g.task)))).items():
        g = [golds[i] for i in idx]
        counts = {name: count_rows(g, [fn(x) for x in g], task, ds) for name, fn in baselines[ds, task].items()}
        full = {name: headline_from_counts(task, c.sum(axis=0)) for name, c in counts.items()}
        best = max(full, key=lambda k: (full[k], k))
        out.append(_margin(count_rows(g, [preds[i] for i in idx], task, ds), counts[best], best, task, ds,
                           resamples, seed))
    return out


def against_other_run(golds: Sequence[Record], preds: Sequence[Prediction], other: Sequence[Prediction],
                      other_name: str, resamples: int = 1000, seed: int = 0) -> list[Margin]:
    """Per (dataset, main task): one run's predictions against another run's on the same test records (an
    ablation's difference: is it larger than the test split can tell from chance?). ``baseline`` in each
    Margin names the other run."""
    if len(other) != len(preds):
        raise ValueError(f"{len(preds)} predictions against {len(other)}: not the same test records")
    out = []
    for (ds, task), idx in _groups(golds, lambda g: True).items():
        g = [golds[i] for i in idx]
        out.append(_margin(count_rows(g, [preds[i] for i in idx], task, ds),
                           count_rows(g, [other[i] for i in idx], task, ds), other_name, task, ds, resamples, seed))
    return out


def _margin(model_counts: np.ndarray, base_counts: np.ndarray, base_name: str, task: str, dataset: str,
            resamples: int, seed: int) -> Margin:
    """The whole split's scores (the sums of all rows) and the bootstrap, from the records' ``count_rows``."""
    m, b = (headline_from_counts(task, c.sum(axis=0)) for c in (model_counts, base_counts))
    low, high, ahead = _bootstrap(model_counts, base_counts, task, resamples, seed)
    return Margin(dataset, task, HEADLINE[task], len(model_counts), m, base_name, b, m - b, low, high, ahead,
                  resamples)


def margin_table(rows: Sequence[Margin], model: str = "model", baseline: str = "best baseline") -> str:
    lines = [f"| dataset | task | metric | {model} | {baseline} | difference (95% interval) | {model} ahead in |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.dataset} | {r.task} | {r.metric} | {r.model:.4f} | {r.baseline_value:.4f} ({r.baseline}) | "
              f"{r.difference:+.4f} ({r.difference_low:+.4f} to {r.difference_high:+.4f}) | "
              f"{r.model_ahead_share:.1%} of {r.resamples} draws |" for r in rows]
    return "\n".join(lines)
