"""The perfect-model ceiling of a tokenizer: what a model that writes exactly each gold answer's tokens scores.

Every record of the config's datasets (train, eval and test sets; every task the config trains) is asked as
evaluation asks it (one prompt per option chunk); each prompt's gold answer is tokenized with the checkpoint's
tokenizer extended (``model.tokenizer.load_tokenizer``) for the texts of every configured set -- all a run
reads -- or, with ``--extend-from train``, of the training sets only (characters first seen in a dev or test
text then stay unwritable). Its ids are filtered as generation filters a model's output ids, decoded, parsed,
grounded and scored against the gold record by the evaluation's own code. Anything below 1.000 is lost to the
tokenizer (characters it cannot write or rewrites), the answer grammar or grounding -- never to a model.

    INSTRUCTIE_DATA=/work/shared/data python eval/tokenizer_ceiling.py --config configs/flan-t5-base.yaml \\
        --tokenizer DIR [--no-extend | --extend-from train] [--markdown eval/tokenizer_ceiling.md]

DIR: a model or tokenizer directory (Flan-T5's, or the stand-in ``python tests/flan_t5_standin.py DIR``
writes). ``score`` is the lowest of the task's F1 metrics, RC accuracy and the NEG competition score;
``cut at N`` is the same score when answers are cut to N tokens (``--cut``; default ``data.max_target_length``),
as training cuts them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path


from instructie.config import load_config
from instructie.data.sources import cut_ids, load_sources, training_texts
from instructie.decoding.generation import Generated
from instructie.evaluation.evaluate import pool, record_roles
from instructie.inference.predict import Decoding, read_answer, record_prompts
from instructie.evaluation.scoring import HEADLINE, score_all
from instructie.model.loading import ModelSpec, load_tokenizer
from instructie.prompts.instructions import expand_tasks, load_templates, restrict
from instructie.prompts.targets import render


def kept_ids(ids: list[int], special: set[int], eos: int | None, pad: int | None) -> list[int]:
    """The ids ``decoding.generation.generate`` keeps of a model's output: up to the first </s> or pad,
    other special tokens (<unk> among them) left out."""
    out = []
    for t in ids:
        if t in special:
            if t == eos or t == pad:
                break
            continue
        out.append(t)
    return out


def replay(records, tokenizer, templates: dict, *, max_options: int | None, option_order: str = "schema",
           max_target_length: int | None = None):
    """(predictions, answers, over): the prediction path's reading of a model that writes each prompt's gold
    answer token for token (cut to ``max_target_length`` tokens when given); ``over``: record index -> its
    answers longer than that."""
    special, eos, pad = set(tokenizer.all_special_ids), tokenizer.eos_token_id, tokenizer.pad_token_id
    plan = [(i, p, render(restrict(rec, list(p.options)))) for i, rec in enumerate(records)
            for p in record_prompts(rec, templates, max_options, option_order)]
    ids = tokenizer([p[2] for p in plan], add_special_tokens=True, verbose=False)["input_ids"]
    over: Counter = Counter()
    if max_target_length:
        ids, cut = cut_ids(ids, max_target_length, eos)
        over.update(p[0] for p, c in zip(plan, cut) if c)
    toks = [kept_ids(x, special, eos, pad) for x in ids]
    texts = tokenizer.batch_decode(toks, skip_special_tokens=True)
    # read as the prediction path reads a model's answer (parse item by item, ground, score)
    decoding = Decoding(roles=record_roles(records))
    answers = [read_answer(prompt, Generated(text, t, [0.0] * len(t)), tokenizer, decoding)
               for (_, prompt, _), text, t in zip(plan, texts, toks)]
    preds, raw = pool(records, [i for i, _, _ in plan], answers)
    return preds, raw, over


def ceiling(task_score) -> float:
    """The lowest of a task's F1 metrics (those with anything to find or found), RC accuracy and the NEG
    competition score; 1.0 when there is nothing to score."""
    vals = [c.f1 for c in task_score.metrics.values() if c.tp + c.fp + c.fn]
    vals += [task_score.extra[k] for k in ("accuracy", "competition") if k in task_score.extra]
    return float(min(vals, default=1.0))


def losses(golds, preds, answers, limit: int = 3) -> list[dict]:
    """A few records whose replayed answer does not score perfectly: what was lost."""
    out = []
    for g, p, a in zip(golds, preds, answers):
        if ceiling(score_all([g], [p]).scores[0]) < 1.0:
            out.append({"id": g.id, "text": g.text[:200], "answer": a, "dropped": dict(p.dropped),
                        "unsupported": p.n_unsupported})
            if len(out) >= limit:
                break
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--tokenizer", required=True, help="model or tokenizer directory")
    ap.add_argument("--no-extend", action="store_true", help="the tokenizer as it is (no vocabulary extension)")
    ap.add_argument("--extend-from", choices=("all", "train"), default="all",
                    help="the texts the vocabulary is extended for: every configured set (train, eval, test: "
                         "all a run reads) or the training sets only")
    ap.add_argument("--cut", type=int, nargs="+", help="answer lengths (tokens) for the `cut at N` columns; "
                                                       "default: the config's data.max_target_length")
    ap.add_argument("--compare", action="store_true",
                    help="also score the tokenizer extended for the training sets' texts only, and not extended")
    ap.add_argument("--markdown", help="write the table (and the command) to this file")
    ap.add_argument("--json", help="write the full report to this file")
    a = ap.parse_args(argv)

    t0 = time.time()
    cfg = load_config(a.config)
    cuts = a.cut or [cfg.data.max_target_length]
    templates = load_templates(cfg.data.templates)
    sets = {"train": load_sources(cfg.data.train, where="data.train"),
            "eval": load_sources(cfg.data.eval, where="data.eval"),
            "test": load_sources(cfg.data.test, where="data.test")}
    spec = ModelSpec(name_or_path=a.tokenizer, tokenizer=a.tokenizer, init="pretrained",
                     extend_vocab=cfg.model.extend_vocab and not a.no_extend)
    read = [src for split, sources in sets.items() for src in sources if a.extend_from == "all" or split == "train"]
    tokenizer, tok_report = load_tokenizer(spec, training_texts(read, templates))
    before, after = tok_report["unknown_rate_before"], tok_report["unknown_rate_after"]
    print(f"tokenizer {a.tokenizer}: {tok_report['base_tokenizer_len']} -> {len(tokenizer)} tokens; <unk> chars "
          f"{before['chars_unknown']} -> {after['chars_unknown']}, rewritten chars {before['chars_lossy']} -> "
          f"{after['chars_lossy']} of {before['chars_total']} in the texts of the {a.extend_from} sets", flush=True)

    records = [r for sources in sets.values() for src in sources for r in expand_tasks(src.records, cfg.data.tasks)]
    ask = dict(max_options=cfg.data.max_options, option_order=cfg.eval.option_order)
    preds, answers, _ = replay(records, tokenizer, templates, **ask)
    report = score_all(records, preds)
    others = {}
    if a.compare:
        for name, extend in (("train texts only", True), ("no extension", False)):
            other, _ = load_tokenizer(ModelSpec(name_or_path=a.tokenizer, tokenizer=a.tokenizer, init="pretrained",
                                                extend_vocab=extend), training_texts(sets["train"], templates))
            others[name] = score_all(records, replay(records, other, templates, **ask)[0])
    cut_reports, n_over = {}, {}
    for cut in cuts:
        cut_preds, _, over = replay(records, tokenizer, templates, max_target_length=cut, **ask)
        cut_reports[cut] = score_all(records, cut_preds)
        n_over[cut] = Counter()
        for i, n in over.items():
            n_over[cut][(records[i].dataset, records[i].task)] += n

    groups: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault((r.dataset, r.task), []).append(i)
    rows = []
    for s in report.scores:
        key, head = (s.dataset, s.task), HEADLINE.get(s.task, "")
        row = {"dataset": s.dataset, "task": s.task, "records": s.n_records, "score": round(ceiling(s), 4),
               "headline": head, "headline_value": round(float(s.values().get(head, float("nan"))), 4),
               "unsupported": s.n_unsupported, "dropped": dict(s.dropped),
               "cut": {c: round(ceiling(cut_reports[c].get(*key)), 4) for c in cuts},
               "answers_over_cut": {c: n_over[c][key] for c in cuts},
               "compare": {name: round(ceiling(rep.get(*key)), 4) for name, rep in others.items()}}
        if row["score"] < 1.0:
            idx = groups[key]
            row["examples"] = losses([records[i] for i in idx], [preds[i] for i in idx], [answers[i] for i in idx])
        rows.append(row)
        cut_text = "  ".join(f"cut at {c}: {row['cut'][c]:.4f} ({row['answers_over_cut'][c]} answers longer)"
                             for c in cuts)
        cut_text += "".join(f"  {name}: {v:.4f}" for name, v in row["compare"].items())
        print(f"{s.dataset:<22} {s.task:<4} {s.n_records:>6} records  score {row['score']:.4f}  {cut_text}  "
              f"unsupported {s.n_unsupported}  dropped {dict(s.dropped)}", flush=True)
    for r in rows:
        for ex in r.get("examples", []):
            print(f"  lost in {r['dataset']}/{r['task']}: {json.dumps(ex, ensure_ascii=False)}")
    elapsed = round(time.time() - t0, 1)
    out = {"config": a.config, "tokenizer": a.tokenizer, "extended": spec.extend_vocab, "extend_from": a.extend_from,
           "cuts": cuts, "tokenizer_len_before": tok_report["base_tokenizer_len"],
           "tokenizer_len_after": len(tokenizer), "unknown_rate_before": before, "unknown_rate_after": after,
           "rows": rows, "seconds": elapsed}
    if a.json:
        Path(a.json).write_text(json.dumps(out, ensure_ascii=False, indent=1), encoding="utf-8")
    if a.markdown:
        Path(a.markdown).write_text(markdown(out, cfg.data.max_target_length, ["python", "eval/tokenizer_ceiling.py",
                                                                               *sys.argv[1:]]), encoding="utf-8")
    print(f"{len(records)} records in {elapsed} s; lowest score {min(r['score'] for r in rows):.4f}")
    return 0 if all(r["score"] == 1.0 for r in rows) else 1


def _chars(cs: list[str], n: int = 60) -> str:
    shown = " ".join(repr(c)[1:-1] for c in cs[:n]).replace("`", "'")
    return f"`{shown}`" + (f" and {len(cs) - n} more" if len(cs) > n else "")


def markdown(out: dict, max_target_length: int, argv: list[str]) -> str:
    b, a = out["unknown_rate_before"], out["unknown_rate_after"]
    cuts = out["cuts"]
    compare = list(out["rows"][0]["compare"]) if out["rows"] else []
    lines = [
        "# Perfect-model ceiling through the tokenizer",
        "",
        "Each gold answer of the config's datasets (train, eval and test sets; every task the config trains),",
        "asked as evaluation asks it (one prompt per option chunk), is tokenized by the tokenizer a run trains",
        "with, filtered as generation filters a model's output ids, decoded, parsed, grounded and scored against",
        "its gold record: the score of a model that writes exactly the gold answer's tokens.",
        "`score`: the lowest of the task's F1 metrics (RC: and accuracy; NEG: and the competition score).",
        "`cut at N`: the same with every answer cut to N tokens, as training cuts answers at "
        f"`data.max_target_length` ({max_target_length} here); `longer`: answers over N tokens."
        + (" `train texts only`: the score with the vocabulary extended for the training sets' texts alone "
           "(characters first seen in a dev or test text stay unwritable); `no extension`: the checkpoint's "
           "tokenizer as it is." if compare else ""),
        "The tokenizer directory is a Flan-T5 checkpoint's or the stand-in `python tests/flan_t5_standin.py DIR` "
        "writes (T5's SentencePiece unigram model trained on English only: no byte fallback, nmt_nfkc, no CJK "
        "and none of `{ } < > ~ \\`; T5's special tokens and 100 sentinels).",
        "",
        "```",
        (f"INSTRUCTIE_DATA={os.environ['INSTRUCTIE_DATA']} " if os.environ.get("INSTRUCTIE_DATA") else "")
        + " ".join(argv),
        "```",
        "",
        f"Tokenizer: {out['tokenizer_len_before']} tokens; {out['tokenizer_len_after']} after the extension "
        + ("(for the texts of every configured set: train, eval, test). " if out["extend_from"] == "all"
           else "(for the texts of the training sets). ")
        + f"In those texts, answers and templates ({b['chars_total']} characters, white space aside): "
        f"{b['chars_unknown']} map to <unk> ({b['rate']:.2%}) and {b['chars_lossy']} are rewritten by the "
        f"normaliser ({b['lossy_rate']:.2%}) before the extension; {a['chars_unknown']} and {a['chars_lossy']} after.",
        "",
        f"Rewritten characters, kept from the normaliser: {_chars(b['lossy_chars'])}.",
        "",
        "| dataset | task | records | score | headline metric | "
        + " | ".join(f"cut at {c} | longer" for c in cuts) + "".join(f" | {n}" for n in compare) + " |",
        "|---|---|---:|---:|---|" + "---:|---:|" * len(cuts) + "---:|" * len(compare),
    ]
    for r in out["rows"]:
        lines.append(f"| {r['dataset']} | {r['task']} | {r['records']} | {r['score']:.3f} | "
                     f"{r['headline']} {r['headline_value']:.3f} | "
                     + " | ".join(f"{r['cut'][c]:.3f} | {r['answers_over_cut'][c]}" for c in cuts)
                     + "".join(f" | {r['compare'][n]:.3f}" for n in compare) + " |")
    lines += ["", f"{sum(r['records'] for r in out['rows'])} records, {out['seconds']} s on CPU.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
