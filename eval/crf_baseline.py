"""A linear-chain CRF with hand features on the NER datasets: the bar a model trained from scratch should clear.

No pretraining and no gazetteers: per token and its two neighbours each side, the lower-cased form, shape
(letters and digits as X, x and d, runs cut to two: "Xxx", "dd", "X.X.") and case flags; for the token and its
next neighbours also prefixes and suffixes (2-4 characters) and digit and hyphen flags. BIO tags, trained
with L-BFGS (elastic net c1 0.1, c2 0.1, 100 iterations) on each dataset's training split as the config reads it,
one CRF per dataset. Tokens are the text's whitespace-separated words (the IE INSTRUCTIONS sentences are
tokenized so). Writes the test predictions as `instructie` writes them, so the model's and the CRF's scores come
from the same scorer, and `eval/bootstrap_vs_baseline.py --against` compares them pairwise. Needs
python-crfsuite (`pip install python-crfsuite`); CPU, minutes.

    INSTRUCTIE_DATA=.devdata python eval/crf_baseline.py --config configs/multitask-small.yaml \\
        --out eval/runs/crf/test_predictions.jsonl.gz [--json eval/runs/crf/crf.json]
"""
from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time

from instructie.config import load_config
from instructie.data.sources import load_sources
from instructie.evaluation.evaluate import scored_records

DATASETS = ("CoNLL2003", "CrossNER_AI", "CrossNER_literature")


def words(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def shape(w: str) -> str:
    s = re.sub("[A-Z]", "X", re.sub("[a-z]", "x", re.sub("[0-9]", "d", w)))
    return re.sub(r"(.)\1+", r"\1\1", s)


def token_features(ws: list[str], i: int) -> dict[str, float]:
    f: dict[str, float] = {"bias": 1.0}
    for d in (-2, -1, 0, 1, 2):
        j = i + d
        if not 0 <= j < len(ws):
            f[f"{d}:pad"] = 1.0
            continue
        w = ws[j]
        f[f"{d}:lower={w.lower()}"] = 1.0
        f[f"{d}:shape={shape(w)}"] = 1.0
        f[f"{d}:title"] = float(w.istitle())
        f[f"{d}:upper"] = float(w.isupper())
        if d in (-1, 0, 1):
            for k in (2, 3, 4):
                f[f"{d}:pre{k}={w[:k]}"] = 1.0
                f[f"{d}:suf{k}={w[-k:]}"] = 1.0
            f[f"{d}:digit"] = float(any(c.isdigit() for c in w))
            f[f"{d}:hyphen"] = float("-" in w)
    return f


def bio(rec) -> tuple[list[str], list[str]]:
    toks = words(rec.text)
    tags = ["O"] * len(toks)
    for e in rec.entities:
        if e.start is None:
            continue
        inside = [k for k, (_, s, t) in enumerate(toks) if s >= e.start and t <= e.end]
        for n, k in enumerate(inside):
            tags[k] = ("B-" if n == 0 else "I-") + e.label
    return [w for w, _, _ in toks], tags


def entities(rec, tags: list[str]) -> list[dict]:
    toks, out, cur = words(rec.text), [], None
    for (w, s, t), tag in zip(toks, tags):
        if tag.startswith("B-") or (tag.startswith("I-") and (cur is None or cur["label"] != tag[2:])):
            cur = {"label": tag[2:], "start": s, "end": t}
            out.append(cur)
        elif tag.startswith("I-"):
            cur["end"] = t
        else:
            cur = None
    return [dict(e, text=rec.text[e["start"]:e["end"]]) for e in out]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    ap.add_argument("--out", required=True, help="test predictions (.jsonl or .jsonl.gz)")
    ap.add_argument("--json", help="training time and records per dataset")
    ap.add_argument("--iterations", type=int, default=100)
    a = ap.parse_args(argv)
    try:
        import pycrfsuite
    except ImportError:
        print("crf_baseline: needs python-crfsuite (pip install python-crfsuite)", file=sys.stderr)
        return 2
    cfg = load_config(a.config, a.set)
    train = [r for s in load_sources(cfg.data.train) for r in s.records if r.task == "NER" and r.dataset in DATASETS]
    test = [r for r in scored_records(load_sources(cfg.data.test)) if r.task == "NER" and r.dataset in DATASETS]
    rows, report = [], {}
    for ds in DATASETS:
        seen, recs = set(), []
        for r in train:  # a dataset listed twice in the config (weights) is trained on once
            if r.dataset == ds and r.id not in seen:
                seen.add(r.id)
                recs.append(r)
        trainer = pycrfsuite.Trainer(verbose=False)
        for r in recs:
            ws, tags = bio(r)
            trainer.append([token_features(ws, i) for i in range(len(ws))], tags)
        trainer.set_params({"c1": 0.1, "c2": 0.1, "max_iterations": a.iterations,
                            "feature.possible_transitions": True})
        model_path = f"/tmp/crf_{ds}.crfsuite"
        started = time.time()
        trainer.train(model_path)
        report[ds] = {"train_records": len(recs), "train_s": round(time.time() - started, 1)}
        tagger = pycrfsuite.Tagger()
        tagger.open(model_path)
        n = 0
        for r in test:
            if r.dataset != ds:
                continue
            ws = [w for w, _, _ in words(r.text)]
            tags = tagger.tag([token_features(ws, i) for i in range(len(ws))]) if ws else []
            rows.append({"id": r.id, "dataset": r.dataset, "task": "NER", "entities": entities(r, tags),
                         "relations": [], "events": [], "labels": []})
            n += 1
        report[ds]["test_records"] = n
        print(f"crf_baseline: {ds}: {len(recs)} training records, {report[ds]['train_s']} s, {n} test records")
    opener = gzip.open if a.out.endswith(".gz") else open
    with opener(a.out, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump({"config": a.config, "set": a.set, "iterations": a.iterations, "datasets": report}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
