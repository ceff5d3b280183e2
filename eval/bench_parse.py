"""Time reading one very long answer, for every task: parse, ground and score (CPU, no model).

A model that loops until ``max_new_tokens`` (or a predictions file from elsewhere) can hand
``instructie eval`` answers of a megabyte per record. Each must cost time linear in its length:
this builds, for each task, an answer of about ``--mb`` MB from a record of the test fixtures and
times the three steps ``instructie eval`` runs on it (``targets.parse`` with the record's options
and roles, ``offsets.ground_for``, ``scoring.score_all``), at a tenth of the size as well. A step
linear in the length takes about ten times as long at the full size; a quadratic one a hundred
times. Two answer shapes per task:

* ``loop``: the gold answer's items over and over (what a looping model writes);
* ``varied``: every item different (each span with a number appended, so found nowhere in the text).

    python eval/bench_parse.py [--mb 1] [--tasks NER,EE] [--limit-s 60]

Prints one row per task and shape; exits 1 when a step of a full-size answer takes longer than
``--limit-s`` seconds (a generous bound: linear steps take well under a second per megabyte).
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from instructie.core.records import TASKS, Record
from instructie.evaluation.scoring import Prediction, score_all
from instructie.prompts.instructions import expand_tasks
from instructie.prompts.offsets import ground_for
from instructie.prompts.targets import ITEM_SEP, parse, render

FIX = ROOT / "tests" / "fixtures"


def fixture_records() -> list[Record]:
    """Records of every task, from the test fixtures' datasets (auxiliary tasks derived as convert does)."""
    from instructie.data_adapters import get_adapter

    iei = list(get_adapter("ie_instructions")(FIX / "ie_instructions", split="test"))
    duie = list(get_adapter("duie")(FIX / "duie" / "duie_train_excerpt.json",
                                    schema=FIX / "duie" / "duie_schema.json"))
    fewrel = list(get_adapter("fewrel")(FIX / "fewrel" / "val_wiki_excerpt.json",
                                        pid2name=FIX / "fewrel" / "pid2name_excerpt.json"))
    fin = list(get_adapter("fin_negative")(FIX / "fin_negative"))
    return list(expand_tasks(iei + duie + fewrel + fin, list(TASKS)))


def pick(records: list[Record], task: str) -> Record:
    """The record of ``task`` with the most items (a richer answer to repeat)."""
    cands = [r for r in records if r.task == task and render(r) != "None"]
    if not cands:
        raise SystemExit(f"no fixture record of task {task}")
    return max(cands, key=lambda r: (len(render(r).split(ITEM_SEP)), r.id))


def answer(record: Record, size: int, shape: str) -> str:
    items = render(record).split(ITEM_SEP)  # an escaped ';' never splits: render escapes it inside fields
    out, n, i = [], 0, 0
    while n < size:
        item = items[i % len(items)]
        if shape == "varied":  # the first field made unique: a span (or RC/NEG label) found nowhere
            head, sep, rest = item.partition(" | ")
            item = f"{head}{i}{sep}{rest}"
        out.append(item)
        n += len(item) + len(ITEM_SEP)
        i += 1
    return ITEM_SEP.join(out)


def timed(record: Record, text: str) -> tuple[float, float, float, int]:
    t0 = time.perf_counter()
    res = parse(text, record.task, options=record.options or None, roles=record.roles or None)
    t1 = time.perf_counter()
    grounded = ground_for(record, res)
    t2 = time.perf_counter()
    score_all([record], [Prediction.from_grounded(grounded, res.dropped)])
    t3 = time.perf_counter()
    items = len(res.entities) + len(res.relations) + len(res.events) + len(res.labels) + sum(res.dropped.values())
    return t1 - t0, t2 - t1, t3 - t2, items


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=1.0, help="answer size in MB (default 1)")
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated (default: every task)")
    ap.add_argument("--limit-s", type=float, default=60.0, help="a full-size step slower than this fails the run")
    a = ap.parse_args(argv)
    records = fixture_records()
    size = int(a.mb * 1_000_000)
    print(f"python {platform.python_version()} on {platform.machine()} ({platform.processor() or 'cpu'}); "
          f"answers of {size:,} characters and a tenth of that")
    print(f"{'task':5} {'shape':6} {'items':>8} {'parse s':>8} {'ground s':>9} {'score s':>8} "
          f"{'total s':>8} {'x vs 1/10':>9}  record")
    slow = []
    for task in [t.strip().upper() for t in a.tasks.split(",") if t.strip()]:
        rec = pick(records, task)
        for shape in ("loop", "varied"):
            small = sum(timed(rec, answer(rec, size // 10, shape))[:3])
            p, g, s, items = timed(rec, answer(rec, size, shape))
            total = p + g + s
            print(f"{task:5} {shape:6} {items:8d} {p:8.2f} {g:9.2f} {s:8.2f} {total:8.2f} "
                  f"{total / max(small, 1e-9):9.1f}  {rec.dataset}/{rec.id}")
            if max(p, g, s) > a.limit_s:
                slow.append(f"{task}/{shape}")
    if slow:
        print(f"slower than {a.limit_s:g} s per step: {', '.join(slow)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
