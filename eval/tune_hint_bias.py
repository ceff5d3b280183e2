"""Pick a model's hint bias and unhinted-item floor per task on dev sets, then score the test sets with them.

A model trained with memory hints can be decoded with a bias toward the hint's items
(``src/instructie/hints/``): 0 is plain decoding, a large bias writes the hint (the
no-model baseline's answer); and its answer's items the hint did not propose can be kept only
when the model is sure of them (``unhinted_floor``, a confidence from 0 to 1; the floor filters
answers, so every floor is scored from one generation per bias). This scores the config's dev
datasets (``data.eval``) at each ``--values`` bias and ``--floors`` floor and keeps, per task,
the pair with the best mean headline score over that task's dev datasets, and each of a task's
several dev datasets its own best pair (``NER/CrossNER_AI``: its test set decodes with it); a
hinted task with no dev dataset (RE, RC here) gets the pair with the best mean over all of them
(RC no floor: its answer is one label). Dev datasets
that read the same file and split as a test dataset are left out (DuIE's public dev file is
this project's DuIE test set). Then it scores the test datasets with the chosen biases, at
floor 0 and at the chosen floors, free (with ``--option-seed N`` free again, each record's
options shuffled) and copy-constrained, and copy-constrained at bias 0 (free at 0 is the
training run's own test). ``--write-card`` stores both in the model's instructie.json, so
``Extractor`` and ``instructie extract`` decode with them by default.

    INSTRUCTIE_DATA=.devdata python eval/tune_hint_bias.py --model runs/X \\
        --config configs/multitask-small.yaml [--set KEY=VALUE ...] --json out.json \\
        [--predictions test_hint_predictions.jsonl] [--values 0 1 2 4 8 16] [--floors 0 0.5 0.9] \\
        [--dev-limit 400] [--option-seed 1]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from instructie.config import load_config, overrides_set
from instructie.data.sources import load_sources
from instructie.evaluation.evaluate import evaluate_records, in_record_order, reorder_options, scored_records
from instructie.evaluation.scoring import HEADLINE
from instructie.config import check_bias, check_floor
from instructie.hints.bias import FLOORLESS_TASKS, bias_label
from instructie.hints.plugin import Hints, HintSettings
from instructie.model.card import ModelCard
from instructie.core.io import write_json, write_jsonl
from instructie.hints.memory import HINT_TASKS


def _where(ds) -> tuple:
    return (str(Path(ds.path).resolve()), ds.split)


def tuning_sources(cfg):
    """The dev datasets that share no file and split with a test dataset (and which did)."""
    test_files = {_where(ds) for ds in cfg.data.test}
    keep = [ds for ds in cfg.data.eval if _where(ds) not in test_files]
    dropped = [ds.name or Path(str(ds.path)).name for ds in cfg.data.eval if _where(ds) in test_files]
    return keep, dropped


def mean_headline(summary: dict, datasets: set[str], task: str | None = None) -> float:
    """The mean headline metric of the dev ``datasets`` (of one ``task``, or all); ``summary``:
    evaluate.summarize."""
    vals = [v for k, v in summary.items()
            if k.split("/")[0] in datasets and k.split("/")[2] == HEADLINE.get(k.split("/")[1])
            and (task is None or k.split("/")[1] == task)]
    return sum(vals) / len(vals) if vals else 0.0


def pick(dev: dict, datasets: set[str], task: str | None = None):
    """The setting (a bias, or a (bias, floor) pair) with the best mean dev headline (of
    ``task``'s datasets, or all); ties: the smaller (less pushing from plain decoding)."""
    def smaller(k):
        return tuple(-x for x in k) if isinstance(k, tuple) else -k

    return max(sorted(dev), key=lambda k: (round(mean_headline(dev[k], datasets, task), 6), smaller(k)))


def pick_per_task(dev: dict, datasets: set[str]) -> dict:
    """A setting for every hinted task: the best mean over its own dev datasets, else over all
    of them; and for each dev dataset of a task with several, its own best where that differs
    (key ``TASK/DATASET``, read by ``hint_bias.setting_for``). RC is never given a floor
    (``hint_bias.FLOORLESS_TASKS``)."""
    seen = {(k.split("/")[0], k.split("/")[1]) for s in dev.values() for k in s if k.split("/")[0] in datasets}
    out = {}
    for t in HINT_TASKS:
        options = {k: v for k, v in dev.items()
                   if not (t in FLOORLESS_TASKS and isinstance(k, tuple) and any(k[1:]))}
        own = sorted(ds for ds, task in seen if task == t)
        out[t] = pick(options, datasets, t) if own else pick(options, datasets)
        for ds in own if len(own) > 1 else []:
            if (best := pick(options, {ds}, t)) != out[t]:
                out[f"{t}/{ds}"] = best
    return out


def _label(bias, floor) -> str:
    return f"bias {bias_label(bias)}" + (f", floor {bias_label(floor)}" if floor else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    ap.add_argument("--values", type=float, nargs="+", default=[0, 2, 4, 8, 16, 32], help="hint biases")
    ap.add_argument("--floors", type=float, nargs="+", default=[0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95],
                    help="unhinted-item floors (confidences from 0 to 1; 0 alone: tune the bias only)")
    ap.add_argument("--dev-limit", type=int, default=400, help="records per dev dataset")
    ap.add_argument("--json", required=True)
    ap.add_argument("--predictions", help="write the test predictions at the chosen bias (free decoding, floor 0); "
                    "the others go beside it, named PREDICTIONS with .copy and/or .floor before the suffix")
    ap.add_argument("--no-test", action="store_true", help="only pick the bias on dev")
    ap.add_argument("--write-card", action="store_true", help="store the chosen bias and floor in the model's "
                    "instructie.json")
    ap.add_argument("--option-seed", type=int, default=None, metavar="N",
                    help="after the tuned free test, the same with each record's options shuffled by seed N "
                         "(test key option_seed_N+hint; predictions marked .optionsN)")
    ap.add_argument("--device", default=None)
    a = ap.parse_args(argv)

    from instructie.inference.extractor import Extractor

    try:
        floors = sorted({0.0, *(check_floor(f) for f in a.floors)})
        for b in a.values:
            check_bias(b)
    except ValueError as e:
        ap.error(str(e))
    cfg = load_config(a.config, a.set)
    ex = Extractor.from_pretrained(a.model, device=a.device)
    if ex.memory is None:
        print(f"{a.model}: trained without memory hints: nothing to tune", file=sys.stderr)
        return 2
    cfg.data.max_options = ex.card.max_options
    if not overrides_set(a.set, ["eval", "option_order"]):
        cfg.eval.option_order = ex.option_order  # asked as the model's own tests asked, unless --set says
    dev_sets, left_out = tuning_sources(cfg)
    dev_records = scored_records(load_sources(dev_sets), a.dev_limit)
    names = {r.dataset for r in dev_records}
    if not names:
        print("no dev dataset to tune on (data.eval lists none that is not also a test set)", file=sys.stderr)
        return 2
    out = {"model": a.model, "config": a.config, "set": a.set, "values": a.values, "floors": floors,
           "dev_limit": a.dev_limit, "dev_datasets": sorted(names), "dev_left_out": left_out,
           "rule": "per task, the (bias, unhinted floor) pair with the best mean dev headline score of its dev "
                   "datasets, else of all; per dev dataset of a task with several, its own best pair where that "
                   "differs; RC no floor (ties: the smaller)", "dev": {}}

    def run(records, bias, constrained, run_floors, keep=False, shuffled=False):
        t0 = time.time()
        # options shuffled by --option-seed are asked in that order, not sorted back
        hints = Hints(ex.hints.memory, HintSettings(bias, 0.0), ex.hints.budget)
        reps = evaluate_records(ex.model, ex.tokenizer, records, in_record_order(cfg) if shuffled else cfg,
                                ex.templates, constrained=constrained, hints=hints, keep_predictions=keep,
                                floors=run_floors)
        print(f"[tune_hint_bias] bias {bias_label(bias)} {'copy' if constrained else 'free'}: {len(records)} records, "
              f"{len(run_floors)} floor(s), {time.time() - t0:.1f} s", file=sys.stderr)
        return reps

    dev = {}
    for b in a.values:
        reps = run(dev_records, b, False, floors)
        for f, rep in zip(floors, reps):
            dev[(b, f)] = rep["summary"]
        at0 = dev[(b, 0.0)]
        out["dev"][f"{b:g}"] = {"summary": at0, "mean_headline": round(mean_headline(at0, names), 4),
                                "floors": {f"{f:g}": {"summary": dev[(b, f)],
                                                      "mean_headline": round(mean_headline(dev[(b, f)], names), 4)}
                                           for f in floors}}
        write_json(a.json, out)  # a cut run keeps what it finished
    best = pick_per_task(dev, names)
    out["chosen"] = {t: b for t, (b, _) in best.items()}
    out["chosen_floor"] = {t: f for t, (_, f) in best.items()}
    base = (min(a.values), 0.0)
    for key in sorted(best):
        t, _, ds = key.partition("/")
        if t not in {k.split("/")[1] for k in dev[base]}:
            continue
        b, f = best[key]
        scope = {ds} if ds else names
        print(f"[tune_hint_bias] {key}: chosen bias {b:g}, unhinted floor {f:g} (dev mean headline "
              f"{mean_headline(dev[best[key]], scope, t):.4f} vs {mean_headline(dev[base], scope, t):.4f} "
              f"at bias {base[0]:g}, floor 0)", file=sys.stderr)
    write_json(a.json, out)
    bias, floor = check_bias(out["chosen"]), check_floor(out["chosen_floor"])
    if a.write_card:
        card = ModelCard.load(a.model)
        card.hint_bias, card.unhinted_floor = bias, floor
        card.extra["hint_bias_tuning"] = {k: out[k] for k in ("dev_datasets", "values", "floors", "rule")}
        card.save(a.model)
    if a.no_test:
        return 0
    test_records = scored_records(load_sources(cfg.data.test))
    out["test"] = {}
    # the tests in the order a cut call should keep them: the tuned free test, the same with the options shuffled
    # (issue 7, lever 6: does the answer depend on the order?), then copy-constrained, tuned and at bias 0
    tests = [("unconstrained+hint", bias, False, None)]
    if a.option_seed is not None:
        tests.append((f"option_seed_{a.option_seed}+hint", bias, False, a.option_seed))
    tests += [("constrained_copy+hint", bias, "copy", None), ("constrained_copy", 0.0, "copy", None)]
    for key, b, constrained, seed in tests:
        tuned = key != "constrained_copy"
        if tuned and not (b or floor):
            continue
        run_floors = [0.0, floor] if tuned and floor else [0.0]
        records = test_records if seed is None else [reorder_options(r, seed) for r in test_records]
        reps = run(records, b, constrained, run_floors, keep=bool(a.predictions) and tuned, shuffled=seed is not None)
        for f, rep in zip(run_floors, reps):
            name = key + ("+floor" if f else "")
            if "predictions" in rep:  # rescorable later (eval/rescore.py) when the model is gone
                path = Path(a.predictions)
                stem, dot, ext = path.name.partition(".")  # x.jsonl -> x.copy.floor.jsonl (x.jsonl.gz alike)
                marks = "".join(m for m, on in ((f".options{seed}", seed is not None), (".copy", constrained),
                                                (".floor", f)) if on)
                write_jsonl(path.with_name(f"{stem}{marks}{dot}{ext}") if marks else path, rep.pop("predictions"))
            print(f"== {name}, {_label(b, f)} (unsupported rate {rep['unsupported_rate']:.4f})\n{rep['table']}")
            out["test"][name] = {k: v for k, v in rep.items() if k != "table"}
            write_json(a.json, out)
    print(json.dumps({k: v["summary"] for k, v in out["test"].items()}, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
