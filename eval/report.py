"""Assemble eval/results.json and the generated tables of eval/RESULTS.md from the run
records under eval/runs/ and the no-model baselines (eval/baselines.json, same test
records, same scorers). Only numbers that a recorded command produced appear.

    python eval/report.py
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
RUN = HERE / "runs" / "multitask-small"
MARK_BEGIN, MARK_END = "<!-- generated: begin -->", "<!-- generated: end -->"
DEVICE = "NVIDIA H100 80GB HBM3 (device tool, nvidia-h100-x1), torch 2.11, transformers 5.17"
COMMAND = ("INSTRUCTIE_DATA=.devdata instructie train --config configs/multitask-small.yaml --max-time 455; "
           "then --resume --max-time 840 --set train.max_steps=5000 --set train.compile=false; then --resume "
           "(final eval); constrained: instructie test --model runs/multitask-small --config "
           "configs/multitask-small.yaml --constrained on")


def metrics_by_key(scores: list[dict]) -> dict:
    out: dict = {}
    for s in scores:
        out.setdefault(s["dataset"], {})[s["task"]] = {k: round(v, 4) for k, v in s["metrics"].items()
                                                       if not k.endswith(("_tp", "_fp", "_fn", "_support"))}
    return out


def main() -> None:
    metrics = json.loads((RUN / "metrics.json").read_text())
    constrained = json.loads((RUN / "test_constrained.json").read_text())["constrained"]
    base = json.loads((HERE / "baselines.json").read_text())
    base_metrics: dict = {}
    for name, scores in base["scores"].items():
        for s in scores:
            for k, v in s["metrics"].items():
                if k.endswith(("_f1", "accuracy", "macro_f1")) or k == "competition":
                    base_metrics.setdefault(s["dataset"], {}).setdefault(s["task"], {})[f"{name}:{k}"] = round(v, 4)
    runs = [{
        "name": "multitask-small (random init, 5,000 steps)",
        "init": "random (T5 Flan-small shape, 60.4M params; tokenizer trained on the training texts)",
        "config": "configs/multitask-small.yaml",
        "command": COMMAND,
        "device": DEVICE,
        "wall_s": round(metrics["train_time_s"], 1),
        "metrics": metrics_by_key(metrics["test"]["scores"]),
        "metrics_constrained": metrics_by_key(constrained["scores"]),
        "unsupported_rate": {"unconstrained": metrics["test"]["unsupported_rate"],
                             "constrained": constrained["unsupported_rate"]},
        "baselines": base_metrics,
    }]
    (HERE / "results.json").write_text(json.dumps({"runs": runs}, ensure_ascii=False, indent=2) + "\n")

    head = {"NER": "entity_f1", "RE": "triple_f1", "EE": "trigger_cls_f1", "RC": "accuracy", "NEG": "competition"}
    best = {}
    for ds, tasks in base_metrics.items():
        for task, vals in tasks.items():
            want = head.get(task)
            cands = {k: v for k, v in vals.items() if k.split(":")[1] == want}
            if task == "EE":
                cands = {k: v for k, v in vals.items() if k.endswith(":trigger_cls_f1")}
            if cands:
                k = max(cands, key=cands.get)
                best[(ds, task)] = (k.split(":")[0], cands[k])
    rows = ["| dataset | task | metric | model | model, constrained | best no-model baseline | beats baseline? |",
            "|---|---|---|---|---|---|---|"]
    r = runs[0]
    for ds, tasks in r["metrics"].items():
        for task, vals in tasks.items():
            metric = head.get(task)
            extra = [metric] + (["arg_cls_f1"] if task == "EE" else [])
            for m in extra:
                v = vals.get(m)
                c = r["metrics_constrained"].get(ds, {}).get(task, {}).get(m)
                b = best.get((ds, task)) if m == metric else None
                if m == "arg_cls_f1":
                    bv = base_metrics.get(ds, {}).get(task, {}).get("trigger_dictionary:arg_cls_f1")
                    b = ("trigger_dictionary", bv) if bv is not None else None
                bt = f"{b[1]:.4f} ({b[0]})" if b else "none (zero-shot: no training data)"
                verdict = "—" if not b else ("yes" if v is not None and v > b[1] else "**no**")
                rows.append(f"| {ds} | {task} | {m} | {v:.4f} | {c:.4f} | {bt} | {verdict} |")
    table = "\n".join(rows)
    brow = ["| run | size | variant | batch | examples/s | target tokens/s | peak GiB | MFU | × plain (same run) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for call, recs in (("call 2", json_lines(HERE / "runs/bench/bench_train_call2.jsonl")),
                       ("call 1", json_lines(HERE / "runs/bench/bench_train_call1.jsonl"))):
        for x in recs:
            p = next(y for y in recs if y["variant"] == "plain" and y["size"] == x["size"])
            brow.append(f"| {call} | {x['size']} | {x['variant']} | {x['batch_size']} | {x['examples_per_s']} | "
                        f"{x['target_tokens_per_s']} | {x['peak_mem_gib']} | {x['mfu'] * 100:.1f}% | "
                        f"{x['examples_per_s'] / p['examples_per_s']:.2f} |")
    gen = "\n".join([MARK_BEGIN, "", "### Test splits: model beside its no-model baselines (`python eval/report.py`)", "",
                     f"Run: {r['name']}; init: {r['init']}; config `{r['config']}`; device: {r['device']}; "
                     f"training time {r['wall_s']} s over three ≤10-minute calls.", "",
                     table, "",
                     f"Unsupported-span rate on the test splits (items whose spans are not in the text): "
                     f"{r['unsupported_rate']['unconstrained']:.4f} unconstrained, "
                     f"{r['unsupported_rate']['constrained']:.4f} constrained.", "",
                     "### Training throughput (`eval/bench_train.py`, H100)", "", "\n".join(brow), "", MARK_END])
    path = HERE / "RESULTS.md"
    text = path.read_text(encoding="utf-8") if path.exists() else MARK_BEGIN + "\n" + MARK_END + "\n"
    a, b_ = text.index(MARK_BEGIN), text.index(MARK_END) + len(MARK_END)
    path.write_text(text[:a] + gen + text[b_:], encoding="utf-8")
    print(gen)


def json_lines(p: Path) -> list[dict]:
    if not p.exists():
        return []
    return [json.loads(x) for x in p.read_text().splitlines() if x.startswith("{")]


if __name__ == "__main__":
    main()
