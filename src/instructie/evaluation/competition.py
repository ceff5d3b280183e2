"""The CCF BDCI 2019 financial negative-entity competition's score, on the competition's own
data shape: text id -> (negative flag, set of key entities)."""
from __future__ import annotations

from typing import Sequence


def competition_score(gold: dict[str, tuple[int, set[str]]], pred: dict[str, tuple[int, set[str]]]) -> dict[str, float]:
    """The competition's final score: ``0.4 * F1_sentiment + 0.6 * F1_entity``.

    * F1_sentiment: binary F1 over texts, positive class negative=1
      (P = TP / predicted 1, R = TP / gold 1).
    * F1_entity: micro F1 over (text id, key entity) pairs of all texts together
      (TP = |pred keys ∩ gold keys| summed over texts; P = TP / all predicted keys,
      R = TP / all gold keys). Predicted keys count as given, whatever the predicted
      negative flag.

    A text missing from ``pred`` counts as (0, {}); ids only in ``pred`` are ignored
    (reported as ``extra_ids``). A 0/0 ratio is 0.

    Sources: the task statement ("整体任务F1=0.4负面F1+0.6实体F1", DataFountain
    competition 353, quoted in DSXiangLi/ClassicSolution fin_neg_entity/README.md),
    and that repository's local re-implementation fin_neg_entity/evaluation.py
    (``overall_f1``: sklearn precision/recall on the per-text flag, entity TP/FP/FN
    over (id, candidate) rows, ``0.6 * f1_e + 0.4 * f1_s``). The official evaluation
    program is no longer online, so this follows that reading.
    """
    return {**competition_from_counts(competition_counts(gold, pred)), "n": len(gold),
            "extra_ids": len(set(pred) - set(gold))}


def competition_counts(gold: dict[str, tuple[int, set[str]]],
                       pred: dict[str, tuple[int, set[str]]]) -> tuple[int, int, int, int, int, int]:
    """The sums the score is made of: (TP, FP, FN of the negative flag; entity TP, predicted keys, gold keys).
    Each is a sum over texts, so the counts of disjoint sets of texts add up (a bootstrap resamples them)."""
    tp_s = fp_s = fn_s = tp_e = n_pred_e = n_gold_e = 0
    for rid, (g_neg, g_keys) in gold.items():
        p_neg, p_keys = pred.get(rid, (0, set()))
        tp_s += bool(g_neg and p_neg)
        fp_s += bool(p_neg and not g_neg)
        fn_s += bool(g_neg and not p_neg)
        g_keys, p_keys = set(g_keys), set(p_keys)
        tp_e += len(g_keys & p_keys)
        n_pred_e += len(p_keys)
        n_gold_e += len(g_keys)
    return tp_s, fp_s, fn_s, tp_e, n_pred_e, n_gold_e


def competition_from_counts(counts: Sequence[int]) -> dict[str, float]:
    """``competition_score``'s values from ``competition_counts``' sums."""
    tp_s, fp_s, fn_s, tp_e, n_pred_e, n_gold_e = counts
    p_s, r_s = _ratio(tp_s, tp_s + fp_s), _ratio(tp_s, tp_s + fn_s)
    p_e, r_e = _ratio(tp_e, n_pred_e), _ratio(tp_e, n_gold_e)
    f1_s, f1_e = _f1(p_s, r_s), _f1(p_e, r_e)
    return {"f1_sentiment": f1_s, "precision_sentiment": p_s, "recall_sentiment": r_s,
            "f1_entity": f1_e, "precision_entity": p_e, "recall_entity": r_e,
            "score": 0.4 * f1_s + 0.6 * f1_e}


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def to_competition(records, answers: dict[str, list[str]] | None = None) -> dict[str, tuple[int, set[str]]]:
    """Gold (from records' labels) or, with ``answers`` (id -> predicted key entities),
    predictions in ``competition_score``'s format; negative = 1 iff any key entity."""
    out = {}
    for r in records:
        if answers is None:
            keys = {e.text for e in r.entities}
            out[r.id] = (int(r.meta.get("negative") or bool(keys)), keys)
        else:
            keys = set(answers.get(r.id, ()))
            out[r.id] = (int(bool(keys)), keys)
    return out
