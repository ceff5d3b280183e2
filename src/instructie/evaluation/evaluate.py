"""Evaluation: a model's predictions (``inference.predict``, the path extraction uses) or a predictions file,
scored against gold records.

Used by training (dev/test during and after a run), ``instructie test`` and ``instructie eval``.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, replace
from typing import Sequence

from ..core.io import InputError, SkipCounter, iter_jsonl
from ..core.records import MAIN_TASKS, Entity, Event, Record, Relation, item_spans
from ..model.tokenizer import UnrepresentableChars
from ..inference.predict import Answer, Decoding, TokenCounts, generate_for, read_answer, record_prompts
from ..prompts.offsets import ground_for
from ..prompts.targets import ParseResult, parse
from .gold import check_offsets, read_scored_gold
from .scoring import Prediction, format_table, score_all, summarize


def decoding_for(cfg, tokenizer_roles: dict | None = None, constrained=None, templates=None) -> Decoding:
    """The config's decoding settings (``eval`` and ``data`` sections)."""
    return Decoding(batch_size=cfg.eval.batch_size, num_beams=cfg.eval.num_beams,
                    max_source_length=cfg.data.max_source_length, max_new_tokens=cfg.eval.max_new_tokens,
                    constrained=cfg.eval.constrained if constrained is None else constrained,
                    roles=dict(tokenizer_roles or {}), templates=templates)


def record_roles(records: Sequence[Record]) -> dict[str, list[str]]:
    """The event roles the records' schemas give, per event type (for parsing EE answers)."""
    out: dict[str, list[str]] = {}
    for r in records:
        for k, v in (r.roles or {}).items():
            out[k] = list(dict.fromkeys(out.get(k, []) + list(v)))
    return out


def predict(model, tokenizer, records: Sequence[Record], templates: dict, decoding: Decoding, *,
            max_options: int | None, option_order: str = "schema", hints=None,
            floors: Sequence = (None,)) -> list[tuple[list[Prediction], list[str]]]:
    """Each record asked as extraction asks a text (``inference.predict``): its prompts (one per option
    chunk) answered in one generation, then read once per unhinted floor of ``floors`` (None: the hints
    plug-in's own) -- the floor only filters answers. Per floor: predictions aligned with ``records`` and
    the raw answers (chunks joined by ' || ')."""
    tok_len = TokenCounts(tokenizer) if hints is not None else None
    owner, prompts = [], []
    for i, r in enumerate(records):
        for p in record_prompts(r, templates, max_options, option_order, hints, tok_len):
            owner.append(i)
            prompts.append(p)
    gens = generate_for(model, tokenizer, prompts, decoding, hints)
    out = []
    for floor in floors:
        answers = [read_answer(p, g, tokenizer, decoding, hints, floor) for p, g in zip(prompts, gens)]
        out.append(pool(records, owner, answers))
    return out


def prediction_of(answer: Answer) -> Prediction:
    """One prompt's answer as a scored prediction: every item, those with a span not in the text unlocated."""
    found = [f.item for f in answer.found]
    p = Prediction([x for x in found if isinstance(x, Entity)], [x for x in found if isinstance(x, Relation)],
                   [x for x in found if isinstance(x, Event)], [x for x in found if isinstance(x, str)],
                   answer.dropped.copy(), sum(bool(f.missing) for f in answer.found))
    return p.without_duplicates()


def pool(records: Sequence[Record], owner: Sequence[int], answers: Sequence[Answer]
         ) -> tuple[list[Prediction], list[str]]:
    """Each record's prediction from its prompts' answers (an option chunk's items are located on their own,
    then pooled) and its raw answers joined by ' || '."""
    parts: list[list[Prediction]] = [[] for _ in records]
    raw: list[list[str]] = [[] for _ in records]
    cut = [0] * len(records)
    for i, ans in zip(owner, answers):
        parts[i].append(prediction_of(ans))
        raw[i].append(ans.text)
        cut[i] += ans.truncated
    preds = []
    for ps, n_cut in zip(parts, cut):
        p = merge_predictions(ps)
        p.n_truncated = n_cut
        preds.append(p)
    return preds, [" || ".join(r) for r in raw]


def merge_predictions(parts: Sequence[Prediction]) -> Prediction:
    out = Prediction()
    for p in parts:
        out.entities += p.entities
        out.relations += p.relations
        out.events += p.events
        out.labels += p.labels
        out.dropped.update(p.dropped)
        out.n_unsupported += p.n_unsupported
    return out


def unsupported_rate(preds: Sequence[Prediction]) -> float:
    items = sum(len(p.entities) + len(p.relations) + len(p.events) for p in preds)
    return sum(p.n_unsupported for p in preds) / items if items else 0.0


def prediction_rows(records: Sequence[Record], preds: Sequence[Prediction], answers: Sequence[str]) -> list[dict]:
    """One row per record: its id, dataset and task, the model's answer text and the items
    scored (with character offsets where the span is in the text). ``instructie eval
    --predictions`` reads these rows back and scores them the same way."""
    return [{"id": r.id, "dataset": r.dataset, "task": r.task, "answer": a,
             "entities": [asdict(x) for x in p.entities], "relations": [asdict(x) for x in p.relations],
             "events": [asdict(x) for x in p.events], "labels": list(p.labels),
             "unsupported": p.n_unsupported, "dropped": dict(p.dropped)}
            for r, p, a in zip(records, preds, answers)]


def evaluate_records(model, tokenizer, records: list[Record], cfg, templates: dict,
                     constrained: bool | str | None = None, hints=None, keep_predictions: bool = False,
                     floors: Sequence = (None,)) -> list[dict]:
    """Predict and score ``records``: one report per unhinted floor of ``floors`` (None: the hints plug-in's
    own), from one generation. With ``keep_predictions`` a report's "predictions" holds
    ``prediction_rows`` (for a predictions file, not for metrics.json). ``constrained`` defaults to the
    config's ``eval.constrained``."""
    t0 = time.time()
    decoding = decoding_for(cfg, record_roles(records), constrained, templates)
    results = predict(model, tokenizer, records, templates, decoding, max_options=cfg.data.max_options,
                      option_order=cfg.eval.option_order, hints=hints, floors=floors)
    gen_s = round(time.time() - t0, 2)
    chars = UnrepresentableChars(tokenizer) if tokenizer is not None else None
    n_unrepresentable = sum(chars.count(r.text) for r in records) if chars is not None else 0
    reports = []
    for floor, (preds, raw) in zip(floors, results):
        report = score_all(records, preds)
        used = floor if floor is not None else (hints.settings.floor if hints is not None else 0.0)
        out = {"summary": summarize(report), "scores": report.to_json(), "table": format_table(report),
               "records": len(records), "generation_s": gen_s, "unhinted_floor": used,
               "unsupported_rate": round(unsupported_rate(preds), 4),
               "examples": [{"id": r.id, "task": r.task, "answer": a} for r, a in list(zip(records, raw))[:5]]}
        if n_unrepresentable:  # what the model read of them is not the text: spans holding them cannot be found
            out["unrepresentable_chars"] = n_unrepresentable
            out["table"] += (f"\n{n_unrepresentable} characters of the texts are ones the model's tokenizer cannot "
                             f"represent")
        if keep_predictions:
            out["predictions"] = prediction_rows(records, preds, raw)
        reports.append(out)
    return reports


def in_record_order(cfg):
    """``cfg`` with options asked as each record lists them (eval.option_order schema): a test of records
    whose options ``reorder_options`` shuffled asks that order, not the sorted one."""
    return replace(cfg, eval=replace(cfg.eval, option_order="schema"))


def reorder_options(record: Record, seed: int) -> Record:
    """The record with its options in a seeded random order (the same for every run with
    this seed): scoring one test set under two orders shows how much answers depend on it."""
    opts = list(record.options)
    random.Random(f"{seed}:{record.id}:{record.task}").shuffle(opts)
    return replace(record, options=opts)


def evaluate_sources(model, tokenizer, sources, cfg, templates: dict, limit: int | None = None,
                     constrained: bool | str | None = None, option_seed: int | None = None,
                     hints=None, keep_predictions: bool = False) -> dict:
    """Score main-task records of the configured eval/test datasets (``limit`` per dataset);
    with ``option_seed`` the options of every record are asked in a shuffled order."""
    records = [r if option_seed is None else reorder_options(r, option_seed) for r in scored_records(sources, limit)]
    if option_seed is not None:
        cfg = in_record_order(cfg)
    return evaluate_records(model, tokenizer, records, cfg, templates, constrained, hints, keep_predictions)[0]


def scored_records(sources, limit: int | None = None) -> list[Record]:
    """The records ``evaluate_sources`` scores, as gold for ``instructie eval``."""
    out, per_dataset = [], {}
    for src in sources:
        for r in src.records:
            if r.task in MAIN_TASKS and (not limit or per_dataset.get(r.dataset, 0) < limit):
                per_dataset[r.dataset] = per_dataset.get(r.dataset, 0) + 1
                out.append(r)
    return out


# ---------------------------------------------------------------- files
_STRUCTURED = ("entities", "relations", "events", "labels")


def prediction_from_row(rec: Record, row: dict, options: list[str], field: str | None) -> Prediction:
    """A prediction line holds answer text (parsed and grounded) or structured items."""
    keys = [field] if field else ["prediction", "target", "output"]
    for k in keys:
        if isinstance(row.get(k), str):
            res = parse(row[k], rec.task, options=options or None, roles=rec.roles or None)
            return Prediction.from_grounded(ground_for(rec, res), res.dropped)
    if field:
        raise ValueError(f"no string field {field!r}")
    if not any(k in row for k in _STRUCTURED):  # a typo'd field must not score as an empty answer
        raise ValueError("no answer: expected a 'prediction' (or 'target'/'output') string "
                         "or 'entities'/'relations'/'events'/'labels'")
    labels = row.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ValueError("'labels' must be a list of strings")
    structured = Record.from_dict({k: row[k] for k in _STRUCTURED[:3] if k in row} |
                                  {"id": rec.id, "dataset": rec.dataset, "task": rec.task, "text": rec.text})
    check_offsets(structured)
    res = ParseResult(structured.entities, structured.relations, structured.events, list(labels))
    pred = (Prediction.from_grounded(ground_for(rec, res)) if any(e.start is None for e in res.entities)
            else Prediction.from_parse(res))
    # as counted when the answer was parsed (prediction_rows): items with a span not in the text, parser drops
    pred.n_unsupported = sum(any(x.text and x.start is None for x in item_spans(it))
                             for it in (*pred.entities, *pred.relations, *pred.events))
    dropped = row.get("dropped") or {}
    if not isinstance(dropped, dict) or not all(isinstance(v, int) for v in dropped.values()):
        raise ValueError("'dropped' must map reasons to counts")
    pred.dropped.update(dropped)
    return pred


def _index_predictions(pred_path: str, errors: SkipCounter) -> tuple[dict, dict, dict]:
    """Prediction rows indexed by instance id, by (id, task), and by id (rows without a task).
    Several tasks share one record id (NER and its ES/ET), so a bare id only matches
    a row that names no task; a repeated key is an error (which answer would count?)."""
    by_iid: dict[str, tuple[int, dict]] = {}
    by_id_task: dict[tuple[str, str], tuple[int, dict]] = {}
    by_id: dict[str, tuple[int, dict]] = {}
    for no, row in iter_jsonl(pred_path, errors):
        if not isinstance(row, dict):
            errors(InputError(pred_path, no, "prediction is not a JSON object"))
            continue
        iid, rid, task = row.get("instance_id"), row.get("id"), row.get("task")
        if iid is None and rid is None:
            errors(InputError(pred_path, no, "prediction has no 'id' (or 'instance_id')"))
            continue
        if task is not None and not isinstance(task, str):
            errors(InputError(pred_path, no, "'task' must be a string"))
            continue
        keys = []
        if iid is not None:
            keys.append((by_iid, str(iid)))
        if rid is not None:
            if iid is None:
                keys.append((by_iid, str(rid)))  # an id may be the instance id itself
            keys.append((by_id_task, (str(rid), task.upper())) if task else (by_id, str(rid)))
        dup = next((ix[k][0] for ix, k in keys if k in ix and (ix is not by_iid or iid is not None)), None)
        if dup is not None:
            errors(InputError(pred_path, no, f"duplicate prediction for {iid or rid!r}"
                              + (f" ({task})" if task else "") + f" (first on line {dup})"))
            continue
        for ix, k in keys:
            ix.setdefault(k, (no, row))
    return by_iid, by_id_task, by_id


@dataclass
class Matched:
    """Gold records and, aligned with them, their predictions read from a file."""
    golds: list[Record]
    preds: list[Prediction]
    missing: int           # gold records with no prediction (scored as empty)
    missing_ids: list[str]  # the first 20 of them
    unmatched: int         # prediction lines that matched no gold record


def match_predictions(gold: Sequence[tuple[Record, dict]], pred_path: str, errors: SkipCounter,
                      field: str | None = None) -> Matched:
    """Each gold record's prediction from the JSONL file ``pred_path`` (by instance id, else
    (id, task), else id); an empty prediction where none matches. ``gold``: (record, row)
    pairs as ``read_gold`` yields them. InputError when the file is empty or matches no gold
    record: every record would score as empty, a table of zeros for a wrong file."""
    skipped = errors.count
    by_iid, by_id_task, by_id = _index_predictions(pred_path, errors)
    golds, preds = [], []
    missing, missing_ids, used = 0, [], set()
    for rec, row in gold:
        iid = row.get("instance_id")
        options = row.get("prompt_options") or rec.options
        hit = ((by_iid.get(str(iid)) if iid is not None else None) or by_id_task.get((rec.id, rec.task))
               or by_id.get(rec.id))
        if hit is None:
            missing += 1
            if len(missing_ids) < 20:
                missing_ids.append(str(iid or rec.id))
            pred = Prediction()
        else:
            used.add(hit[0])
            try:
                pred = prediction_from_row(rec, hit[1], options, field)
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                errors(InputError(pred_path, hit[0], f"bad prediction: {e}"))
                pred = Prediction()
        golds.append(rec)
        preds.append(pred)
    lines = {no for ix in (by_iid, by_id_task, by_id) for no, _ in ix.values()}
    if gold and missing == len(gold):  # fatal with --skip-invalid too: nothing left to score
        raise InputError(pred_path, None, "no prediction matches a gold record (by instance_id / id); is it the "
                         "predictions of this gold file?" if lines else
                         "empty" if errors.count == skipped else "no valid prediction (every line was skipped)")
    return Matched(golds, preds, missing, missing_ids, len(lines - used))


def evaluate_files(gold_path: str, pred_path: str, field: str | None = None, skip_invalid: bool = False,
                   baselines: list[str] | None = None, bootstrap: int = 0) -> dict:
    """Score a predictions file against converted gold; with ``baselines`` (training files) the
    no-model baselines beside it, and with ``bootstrap`` > 0 draws a paired bootstrap of the model
    against the best of them per dataset (``instructie.significance``)."""
    errors = SkipCounter(skip_invalid)
    gold, repeated = read_scored_gold(gold_path, errors)
    if not gold:  # nothing to score: a report of no records would read as a result
        raise InputError(gold_path, None, "no valid gold record (every line was skipped)" if errors.count else "empty")
    m = match_predictions(gold, pred_path, errors, field)
    golds, preds, missing, missing_ids, unmatched = m.golds, m.preds, m.missing, m.missing_ids, m.unmatched
    report = score_all(golds, preds)
    out = {"gold": gold_path, "predictions": pred_path, "records": len(golds), "missing_predictions": missing,
           "missing_ids": missing_ids, "unmatched_predictions": unmatched,
           "summary": summarize(report), "scores": report.to_json(), "table": format_table(report),
           "skipped_invalid": errors.count, "repeated_gold": len(repeated)}
    if missing:
        out["table"] += (f"\n{missing} gold record(s) had no prediction (scored as empty): "
                         + ", ".join(missing_ids) + (", ..." if missing > len(missing_ids) else ""))
    if unmatched:
        out["table"] += f"\n{unmatched} prediction(s) matched no gold record (ignored)"
    if repeated:
        out["table"] += (f"\n{len(repeated)} gold record(s) repeated verbatim, scored once: "
                         + "; ".join(repeated[:5]) + ("; ..." if len(repeated) > 5 else ""))
    if errors.count:
        out["table"] += "\n" + errors.report()
    if baselines is not None:
        from .baselines import answer_once, build_baselines, load_train, score_built_baselines
        built = build_baselines(load_train(baselines), targets={(g.dataset, g.task) for g in golds})
        if bootstrap:  # the bootstrap asks the baselines about the same records again
            built = answer_once(built)
        base = score_built_baselines(golds, built)
        out["baselines"] = base
        out["table"] += "\n\nBaselines (training split only, no model):\n" + base["table"]
        if bootstrap:
            from .significance import against_best_baseline, margin_table
            rows = against_best_baseline(golds, preds, built, resamples=bootstrap)
            out["bootstrap"] = [r.to_json() for r in rows]
            out["table"] += (f"\n\nThe predictions against the best baseline of each dataset and task (paired "
                             f"bootstrap, {bootstrap} draws of the test records):\n"
                             + (margin_table(rows) if rows else "no dataset has a baseline to compare with"))
    return out


def dump(report: dict) -> str:
    return json.dumps({k: v for k, v in report.items() if k != "table"}, ensure_ascii=False, indent=2)

