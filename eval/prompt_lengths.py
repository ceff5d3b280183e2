"""How many prompts a source-length limit cuts, per dataset and task (CPU, no model).

A prompt longer than ``data.max_source_length`` is cut at its end, which holds the memory
hint and "Answer:" (and, for long texts, the text's tail): in training its answer may name
text the model never saw. This builds the tokenizer as training does (trained on the
training texts, or the config's), epoch 0's training instances and the test prompts (one
per option chunk, with memory hints when the config has them), and reports token lengths,
the share over each limit, and the share of training answers that name text their cut
prompt no longer shows.

    INSTRUCTIE_DATA=.devdata python eval/prompt_lengths.py --config configs/multitask-small.yaml \
        --limits 256 384 512 --json eval/runs/prompt_lengths.json
"""
from __future__ import annotations

import argparse
import dataclasses
from collections import defaultdict


from instructie.config import load_config
from instructie.data.sources import (collate, epoch_batches, load_sources, make_instances, tokenize,
                                     training_texts)
from instructie.hints.memory import training_memory
from instructie.hints.plugin import Hints
from instructie.inference.predict import record_prompts
from instructie.core.io import write_json
from instructie.prompts.instructions import load_templates
from instructie.model.loading import ModelSpec, load_tokenizer
from instructie.core.records import MAIN_TASKS
from instructie.training.loop import micro_batches


def percentile(xs: list[int], q: float) -> int:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def describe(lengths: dict[str, list[int]], limits: list[int]) -> dict:
    out = {}
    for key, xs in sorted(lengths.items()):
        out[key] = {"prompts": len(xs), "p50": percentile(xs, 0.5), "p99": percentile(xs, 0.99), "max": max(xs),
                    "over": {str(n): round(sum(x > n for x in xs) / len(xs), 4) for n in limits}}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--limits", type=int, nargs="+", default=[256, 384, 512])
    ap.add_argument("--json", help="write the report here")
    ap.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override one config key")
    a = ap.parse_args(argv)
    cfg = load_config(a.config, a.set)
    templates = load_templates(cfg.data.templates)
    train = load_sources(cfg.data.train)
    test = load_sources(cfg.data.test)
    # the tokenizer `instructie train` would use: the config's, or one trained on the same texts
    tok, tok_report = load_tokenizer(ModelSpec(**dataclasses.asdict(cfg.model)), training_texts(train, templates))
    folded, memory = training_memory(train, cfg.hints)

    train_len: dict[str, list[int]] = defaultdict(list)
    # per limit, dataset/task -> training answers naming a span the cut prompt no longer shows
    unseen: dict[int, dict[str, int]] = {n: defaultdict(int) for n in a.limits}
    insts = make_instances(train, cfg.data, templates, 0, 0, memory=folded)
    for inst, ids in zip(insts, tok([i.source for i in insts])["input_ids"]):
        key = f"{inst.dataset}/{inst.task}"
        train_len[key].append(len(ids))
        for n in a.limits:
            if len(ids) > n:
                kept = tok.decode(ids[: n - 1], skip_special_tokens=True)
                shown = kept[kept.index("Text: "):] if "Text: " in kept else ""
                shown = shown.split("\nMemory: ")[0]  # a name only in the hint is not in the text
                unseen[n][key] += any(x.text not in shown for x in inst.record.spans())
    test_len: dict[str, list[int]] = defaultdict(list)
    for src in test:
        recs = [r for r in src.records if r.task in MAIN_TASKS]
        hints = Hints(memory) if memory is not None else None
        prompts = [(r, p.source) for r in recs
                   for p in record_prompts(r, templates, cfg.data.max_options, cfg.eval.option_order, hints)]
        for (r, _), ids in zip(prompts, tok([p for _, p in prompts])["input_ids"]):
            test_len[f"{r.dataset}/{r.task}"].append(len(ids))
    # epoch 0's batches exactly as `instructie train` makes and pads them, and how many of them
    # train.max_batch_tokens runs in parts (train.micro_batches)
    t = cfg.train
    tk = tokenize(insts, tok, cfg.data.max_source_length, cfg.data.max_target_length)
    widths, n_split = [], 0
    for b in epoch_batches(tk, t.batch_size, t.seed, 0, t.length_grouping):
        batch = collate(b, tk, tok.pad_token_id, t.pad_to_multiple)
        widths.append(batch["input_ids"].numel())
        n_split += len(micro_batches(batch, t.max_batch_tokens, t.pad_to_multiple)) > 1
    split = {"max_batch_tokens": t.max_batch_tokens, "batches": len(widths), "split": n_split,
             "padded_source_tokens": sum(widths), "widest_batch": max(widths)}
    # what a dataset's whole label list costs in a prompt (max_options null puts all of it in every prompt)
    option_tokens = {}
    for src in test:
        for ds in sorted({r.dataset for r in src.records}):
            opts = list(dict.fromkeys(o for r in src.records if r.dataset == ds for o in r.options))
            if ds not in option_tokens and opts and all(r.task != "NEG" for r in src.records if r.dataset == ds):
                option_tokens[ds] = {"labels": len(opts),
                                     "tokens": len(tok(", ".join(opts), add_special_tokens=False)["input_ids"])}
    every = [x for xs in train_len.values() for x in xs]
    report = {
        "command": "python eval/prompt_lengths.py --config " + a.config + "".join(f" --set {x}" for x in a.set)
                   + " --limits " + " ".join(map(str, a.limits)),
        "tokenizer": tok_report["tokenizer"],
        "max_options": cfg.data.max_options, "memory_hints": cfg.data.memory_hints,
        "train_epoch0": describe(train_len, a.limits),
        "train_answers_naming_cut_text": {str(n): {k: round(v / len(train_len[k]), 4) for k, v in sorted(d.items())
                                                   if v} for n, d in unseen.items()},
        "test": describe(test_len, a.limits),
        "train_source_tokens_at_limit": {str(n): sum(min(x, n) for x in every) for n in a.limits},
        "train_epoch0_batches": split,
        "label_list_tokens": option_tokens,
    }
    cols = " ".join(f"{'>' + str(n):>7}" for n in a.limits)
    for part in ("train_epoch0", "test"):
        print(f"\n{part}: {'dataset/task':<28} {'prompts':>7} {'p50':>5} {'p99':>5} {'max':>5} {cols}")
        for key, d in report[part].items():
            over = " ".join(f"{d['over'][str(n)]:>7.1%}" for n in a.limits)
            print(f"{'':>{len(part) + 1}} {key:<28} {d['prompts']:>7} {d['p50']:>5} {d['p99']:>5} {d['max']:>5} {over}")
    print("\ntraining answers that name text their cut prompt no longer shows (share of the dataset/task):")
    for n, d in report["train_answers_naming_cut_text"].items():
        print(f"  limit {n}: " + (", ".join(f"{k} {v:.1%}" for k, v in d.items()) or "none"))
    base = report["train_source_tokens_at_limit"][str(a.limits[0])]
    print("\ntraining source tokens per epoch at each limit: " + ", ".join(
        f"{n}: {v} ({v / base:.3f}x)" for n, v in report["train_source_tokens_at_limit"].items()))
    print("\nwhole label list, tokens: " + ", ".join(f"{k} {v['labels']} labels {v['tokens']}"
                                                  for k, v in option_tokens.items()))
    print(f"\nepoch 0 at the configured limit: {split['batches']} batches of {t.batch_size}, widest "
          f"{split['widest_batch']} padded source tokens, {split['padded_source_tokens']} in all; "
          f"train.max_batch_tokens={split['max_batch_tokens']} runs {split['split']} of them in parts")
    if a.json:
        write_json(a.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
