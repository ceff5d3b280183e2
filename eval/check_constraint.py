"""Which gold answers the copy constraint forbids (CPU, no model).

Every test record of a config is asked as evaluation asks it (option chunks, memory hints
when the config has them); its gold answer is driven token by token through the
``--constrained copy`` logits processor (``constrained.first_blocked``). A forbidden gold
answer is one the constrained model can only get wrong, so the share per dataset is a
ceiling on what the constraint costs. The tokenizer is the one training would build.

    INSTRUCTIE_DATA=.devdata python eval/check_constraint.py --config configs/multitask-small.yaml \
        --per-dataset 200 --json eval/runs/constraint_gold.json
"""
from __future__ import annotations

import argparse
import dataclasses
import random
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from instructie.config import load_config  # noqa: E402
from instructie.decoding.constraints import copy_factory, first_blocked  # noqa: E402
from instructie.data.sources import load_sources, training_texts  # noqa: E402
from instructie.hints.memory import training_memory  # noqa: E402
from instructie.hints.plugin import Hints  # noqa: E402
from instructie.inference.predict import record_prompts  # noqa: E402
from instructie.core.io import write_json  # noqa: E402
from instructie.prompts.instructions import load_templates, restrict  # noqa: E402
from instructie.model.loading import ModelSpec, load_tokenizer  # noqa: E402
from instructie.core.records import MAIN_TASKS  # noqa: E402
from instructie.prompts.targets import render  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--per-dataset", type=int, default=200, help="records sampled per test dataset (seed 0)")
    ap.add_argument("--json", help="write the report here")
    a = ap.parse_args(argv)
    cfg = load_config(a.config)
    templates = load_templates(cfg.data.templates)
    train, test = load_sources(cfg.data.train), load_sources(cfg.data.test)
    tok, _ = load_tokenizer(ModelSpec(**dataclasses.asdict(cfg.model)), training_texts(train, templates))
    _, memory = training_memory(train, cfg.hints)
    records = [r for s in test for r in s.records if r.task in MAIN_TASKS]
    roles = sorted({x for r in records for rs in (r.roles or {}).values() for x in rs})
    factory = copy_factory(tok, len(tok), roles=roles, templates=templates)
    by_ds: dict[str, list] = defaultdict(list)
    for r in records:
        by_ds[r.dataset].append(r)
    rng = random.Random(0)
    report: dict = {"command": f"python eval/check_constraint.py --config {a.config} --per-dataset {a.per_dataset}",
                    "datasets": {}}
    for ds, recs in by_ds.items():
        sample = rng.sample(recs, min(a.per_dataset, len(recs)))
        n = blocked = 0
        examples = []
        for r in sample:
            for p in record_prompts(r, templates, cfg.data.max_options, cfg.eval.option_order,
                                    Hints(memory) if memory is not None else None):
                opts, source = list(p.options), p.source
                answer = render(restrict(r, opts))
                k = first_blocked(factory, tok, source, answer, cfg.data.max_source_length)
                n += 1
                if k is not None:
                    blocked += 1
                    if len(examples) < 3:
                        examples.append({"id": r.id, "answer": answer,
                                         "blocked_token": tok.convert_ids_to_tokens(tok(answer)["input_ids"])[k]})
        report["datasets"][ds] = {"records": len(sample), "prompts": n, "gold_blocked": blocked,
                                  "share": round(blocked / n, 4) if n else 0.0, "examples": examples}
        print(f"{ds:<22} records {len(sample):>5}  prompts {n:>5}  gold answers blocked {blocked:>5} "
              f"({blocked / max(1, n):.1%})")
    if a.json:
        write_json(a.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
