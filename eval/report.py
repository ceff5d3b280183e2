"""Assemble eval/results.json and the generated tables of eval/RESULTS.md from the run
records under eval/runs/ and the no-model baselines (eval/baselines.json, same test
records, same scorers). Only numbers that a recorded command produced appear.

    python eval/report.py
"""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

HERE = Path(__file__).parent
RUNS = HERE / "runs"
MARK_BEGIN, MARK_END = "<!-- generated: begin -->", "<!-- generated: end -->"
DEVICE = "NVIDIA H100 80GB HBM3 (device tool, nvidia-h100-x1), torch 2.11, transformers 5.17"
INIT = "random (T5 Flan-{shape} shape, {params}; tokenizer trained on the training texts)"
TEST_COPY = ("instructie test --model runs/{run} --config configs/{config}.yaml --constrained copy "
             "--json test_copy.json")

# The runs, newest first but for runs[0], the best model. "metrics" comes from the run's metrics.json (its final
# test), or "test_file"/"test_key" where the final test ran as a separate `instructie test`, or from the
# test table in its log when the machine holding metrics.json was returned before it could be copied back.
S2 = "configs/multitask-small.yaml as of commit 1ea2383 (AdamW 6e-4, no memory hints; copy head without the " \
     "continuation bias)"
ADAMW = "--set train.optimizer=adamw --set train.lr=6e-4"
# Session-3 runs: the code of commit 01a388e; the config as committed in e648694. A review then changed how
# training hints are built (folds within each dataset; names put in by mention replacement left out).
S3 = "configs/multitask-small.yaml at commit e648694 (later commits build training hints differently: folds " \
     "within each dataset, names put in by mention replacement left out)"
S4 = "configs/multitask-small.yaml at commit abee462"
S6 = "configs/multitask-small.yaml at commit 7af000e (max_options null, max_source_length 1024, max_batch_tokens 57344)"
S6B_SETS = ("'data.train[0].options.datasets=[CoNLL2003]' 'data.train[+]={adapter: ie_instructions, path: "
            ".devdata/ie_instructions, split: train, weight: 4, options: {datasets: [DuEE]}}' 'data.train[2].weight=3' "
            "train.max_steps=2000")
S7 = ("configs/multitask-small.yaml at commit eafef21 (the session-6 config; trained with hints from the pooled "
      "memory); its last call (test, hint-bias tuning) ran with commit d2f4aa5, whose memory.json holds per-dataset "
      "tables, so every test below asked with per-dataset hints (the β = 0 test with pooled hints, in train_2.log, "
      "differs by ≤ 0.001 per dataset)")
S7B = ("configs/multitask-small.yaml at commit c604ce5 (the session-6 config; hints from each record's own dataset, "
       "in training as at test); the tuning and tests ran with commit 5848ca5 (a bias per task; </s> lowered while "
       "hint items are unwritten, before commit 295cec9 retired items the answer left and capped that)")
DEV_SETS = "'data.eval[0].options.datasets=[CoNLL2003,DuEE,CrossNER_AI,CrossNER_literature]'"


def tuned_run(run: str, train2_s: int, tuning: str, then: str = "", group: int = 7,
              sets: tuple[str, ...] = ("train.max_steps=3600",), train1_s: int = 480, env3: str = "",
              call_s: int = 590) -> dict:
    """A run of sessions 7 on: three calls of eval/gpu_run.sh, the last tuning the hint bias (session 8 on: with
    the unhinted-item floor); hint_bias.json holds its tests, copy-constrained at bias 0 among them. ``sets``: the
    KEY=VALUE overrides given to every call; ``env3``: more variables set for the last call (OPTSEED=1)."""
    kv = " ".join(shlex.quote(x) for x in sets)
    as_args = " ".join(f"--set {shlex.quote(x)}" for x in sets)
    return {"dir": f"multitask-small-{run}", "group": group, "params": "61.0M params incl. the copy head",
            "hint_file": "hint_bias.json", "constrained_file": "hint_bias.json",
            "constrained_path": ["test", "constrained_copy"],
            "calls": "three ≤10-minute calls joined by --resume, the GPU to itself",
            "command": f"TRAIN_S={train1_s} bash eval/gpu_run.sh {run} 1 {kv}; TRAIN_S={train2_s} bash "
                       f"eval/gpu_run.sh {run} 2 {kv}; CALL_S={call_s} {env3}TUNE={DEV_SETS} bash eval/gpu_run.sh "
                       f"{run} 3 {kv} (the last runs python3 eval/tune_hint_bias.py --model runs/{run} "
                       f"--config configs/multitask-small.yaml {as_args} --set {DEV_SETS} --json "
                       f"hint_bias.json, {tuning})" + then}


S8 = ("configs/multitask-small.yaml at commit 61fe733 (the session-6 config; hints from each record's own dataset, "
      "in training as at test; the decoding fixes of commits 295cec9, ed3ddeb and 563ac84; the unhinted-item floor, "
      "one (bias, floor) pair per task, RC included)")
S8B = ("configs/multitask-small.yaml at commit 7dda35f (the session-8 config and decoding, with a (bias, floor) pair "
       "per dev dataset of a task with several, and RC never given a floor); a second training of the s8 config")
S9B_SETS = "model.name_or_path=runs/s9b-pretrain model.init=pretrained train.max_steps=2900"
S9B = ("configs/pretrain-small.yaml (1,200 steps), then configs/multitask-small.yaml from it with --set "
       + S9B_SETS.replace(" ", " --set ") + ", code of commit b65b488 (epochs built in a background process; the "
       "copy head around the pretrained T5 reads one embedding table; 2,900 steps = (1,097 s of the s8b run - the "
       "pretraining's 209 s) x the s8b run's 3.28 steps/s, rounded down to 50)")
S10 = ("configs/multitask-small.yaml at commit 1878159 (the session-8 config; epochs built in a background process, "
       "the first one too; training forward without the decoder cache), 4,000 steps")
S10B_SETS = ("train.max_steps=4400", "data.train[0].options.datasets=[CoNLL2003]",
             "data.train[+]={adapter: ie_instructions, path: .devdata/ie_instructions, split: train, weight: 3, "
             "options: {datasets: [DuEE]}}")
S10B = ("configs/multitask-small.yaml at commit 8201542 (the s10 run's) with --set "
        + " --set ".join(shlex.quote(x) for x in S10B_SETS) + ": DuEE in its own entry at weight 3, 4,400 steps; the "
        "config as committed since this run holds these settings, so `bash eval/gpu_run.sh NAME 1` (2, 3) with "
        "no overrides trains it again (since session 13 its tests list each prompt's options sorted; the override "
        "eval.option_order=schema, given to all three calls, asks them in schema order as this run did)")
S11 = ("configs/multitask-small.yaml at commit ee6a9fa (the s10b recipe; sessions 11 and 12; options asked in schema "
       "order, the override eval.option_order=schema since session 13) with --set {}: {}")
S13 = ("configs/multitask-small.yaml at commit 4e5a302 (the s10b recipe; session 13; options asked in schema order, "
       "the override eval.option_order=schema at later commits) with --set {}: {}")
S12B_SETS = ("model.size=base", "train.max_batch_tokens=20480", "train.max_steps=1700", "train.warmup_steps=400")
PER_DATASET_TUNING = ("values 0 2 4 8 16 32, floors 0 0.2 0.3 ... 0.9 0.95, a (bias, floor) pair per task and per "
                      "dev dataset")  # eval/tune_hint_bias.py's defaults, sessions 8 (s8b) on
S11_TUNING = PER_DATASET_TUNING + ", then the copy-constrained test at bias 0 and the option-order test if the call " \
                                  "has time left"
RUN_SPECS = [
    # Session 10: DuEE weighted x3 and 4,400 steps (the config's settings since).
    {"name": "multitask-small-s10b", "config": S10B,
     "summary": "the same, DuEE weight 3, 4,400 steps (session 10)",
     **tuned_run("s10b", 525, PER_DATASET_TUNING + ", then the copy-constrained test at bias 0", group=10,
                 sets=S10B_SETS, train1_s=520)},
    # Session 11: lever ablations at the s10b recipe (issue 7, levers 3 and 5), one training each.
    {"name": "multitask-small-s11a", "config": S11.format(shlex.quote("data.tasks=[NER,RE,EE,RC,NEG]"),
                                                          "the main tasks only, no auxiliary tasks (lever 3)"),
     "summary": "the s10b recipe without the auxiliary tasks (session 11)",
     **tuned_run("s11a", 525, S11_TUNING + "; here the call's time ran out after the tuned tests: no "
                 "copy-constrained test at bias 0, no option-order test", group=11,
                 sets=("data.tasks=[NER,RE,EE,RC,NEG]",), train1_s=520, env3="OPTSEED=1 "),
     "no_constrained": True},
    # Session 12: the remaining lever ablations at the s10b recipe (levers 5 and 7), one training each.
    {"name": "multitask-small-s12a", "config": S11.format("data.mention_replacement=0",
                                                          "no mention replacement (lever 5)"),
     "summary": "the s10b recipe without mention replacement (session 12)",
     **tuned_run("s12a", 525, S11_TUNING + "; here the call's time ran out after the tuned free test: no "
                 "copy-constrained tests, no option-order test", group=12,
                 sets=("data.mention_replacement=0",), train1_s=520, env3="OPTSEED=1 "),
     "no_constrained": True},
    {"name": "multitask-small-s12b", "config": S11.format(" --set ".join(shlex.quote(x) for x in S12B_SETS),
                                                          "T5-base at T5-small's device time (lever 7)"),
     "summary": "the s10b recipe at T5-base size, 1,700 steps (session 12)",
     **tuned_run("s12b", 500, S11_TUNING.replace("values 0 2 4 8 16 32", "values 0 4 16 (TUNE_ARGS)")
                 + "; here the call's time ran out after the tuned copy-constrained test: no copy-constrained test at "
                 "bias 0, no option-order test", group=12, sets=S12B_SETS, train1_s=505,
                 env3='OPTSEED=1 TUNE_ARGS="--values 0 4 16" ', call_s=575),
     "shape": "base", "params": "224.0M params incl. the copy head", "no_constrained": True},
    # Session 13: lever 5's dose (mention replacement 0.5 against 0.3); its call ran out before the tuning.
    {"name": "multitask-small-s13a", "config": S13.format("data.mention_replacement=0.5",
                                                          "mention replacement at 0.5 against 0.3 (lever 5's dose)"),
     "summary": "the s10b recipe with mention replacement 0.5 (session 13)",
     **{k: v for k, v in tuned_run("s13a", 525, S11_TUNING + "; here the tuning did not start: training's test "
                                   "left the call 112 s, under the 120 s it needs", group=13,
                                   sets=("data.mention_replacement=0.5",), train1_s=520, env3="OPTSEED=1 ").items()
        if k not in ("hint_file", "constrained_file", "constrained_path")},
     "no_constrained": True},
    # Session 10: the s8 config for 4,000 steps at the background epoch builder's speed.
    {"name": "multitask-small-s10", "config": S10, "summary": "the s8 config, 4,000 steps (session 10)",
     **tuned_run("s10", 490, PER_DATASET_TUNING + ", then the copy-constrained test at bias 0", group=10,
                 sets=("train.max_steps=4000",))},
    # Session 8: the unhinted-item floor, tuned with the bias on dev (eval/tune_hint_bias.py).
    {"name": "multitask-small-s8b", "config": S8B,
     "summary": "the same, a (bias, floor) pair per dev dataset (session 8)",
     **tuned_run("s8b", 400, PER_DATASET_TUNING + "; the copy-constrained test at bias 0 did not fit the call", group=8),
     "no_constrained": True},
    # Session 9: span-corruption pretraining first, at about the device time of the s8b run (eval/gpu_run.sh p).
    {"name": "multitask-small-s9b", "config": S9B,
     "summary": "pretrain 1,200 steps (209 s), then the s8 config, 2,900 steps (session 9)",
     **tuned_run("s9b", 480, PER_DATASET_TUNING, group=9),
     "params": "61.1M params incl. the copy head; T5 span-corruption pretraining, 1,200 steps (209 s), first",
     "pretrain_file": "pretrain_metrics.json",
     "calls": "pretraining and fine-tuning over three ≤10-minute calls joined by --resume, the GPU to itself",
     "command": "TRAIN_S=320 PSTEPS=1200 bash eval/gpu_run.sh s9b p; then, in the same call, TRAIN_S=$((470 - "
                f"the seconds used)) bash eval/gpu_run.sh s9b 1 {S9B_SETS}; TRAIN_S=480 bash eval/gpu_run.sh s9b 2 "
                f"{S9B_SETS}; CALL_S=590 TUNE={DEV_SETS} bash eval/gpu_run.sh s9b 3 {S9B_SETS} (the last runs python3 "
                "eval/tune_hint_bias.py --model runs/s9b --config configs/multitask-small.yaml, the same --set "
                f"overrides and --set {DEV_SETS}, values 0 2 4 8 16 32, floors 0 0.2 0.3 ... 0.9 0.95, a (bias, "
                "floor) pair per task and per dev dataset, then the copy-constrained test at bias 0)"},
    {"name": "multitask-small-s8", "config": S8, "summary": "the session-7 config, current decoding (session 8)",
     **tuned_run("s8", 400, "values 0 1 2 4 8 16, floors 0 0.2 0.3 ... 0.9, a (bias, floor) pair per task", group=8)},
    {"name": "multitask-small-adafactor", "dir": "multitask-small-adafactor", "group": 3,
     "config": S3, "params": "61.0M params incl. the copy head",
     "summary": "Adafactor 5e-3 + memory hints (session 3, best)", "optseed_file": "test_optseed1.json",
     "calls": "three ≤10-minute calls joined by --resume, beside the pretraining run on the same GPU",
     "command": "INSTRUCTIE_DATA=.devdata instructie train --config configs/multitask-small.yaml --max-time 470; "
                "then --resume --max-time 500; then --resume (final test); "
                + TEST_COPY.format(run="multitask-small", config="multitask-small")
                + "; the same with --option-seed 1 instead of --constrained copy"},
    # Session 7: the session-6 config, then hint-biased decoding tuned on dev (eval/tune_hint_bias.py).
    {"name": "multitask-small-s7b", "config": S7B, "summary": "the same with per-dataset hints (session 7)",
     **tuned_run("s7b", 400, "values 0 1 2 4 8 16, a bias per task")},
    {"name": "multitask-small-s7", "config": S7, "summary": "the session-6 config again, 3,600 steps (session 7)",
     **tuned_run("s7", 520, "values 0 1 2 4 8, one bias for all tasks",
              "; then the same script with --values 8 16 32 1000 (hint_bias_wide.json)")},
    # Session 6: every label in one prompt at 1,024 source tokens (commit 7af000e), the GPU to itself.
    {"name": "multitask-small-s6", "dir": "multitask-small-s6", "group": 6,
     "config": S6 + "; train.max_steps 4000 -> 3600 from step 1,384 on (set at the first resume: 4,000 steps "
               "would not have fitted the session's device time; the cosine horizon moved with it)",
     "params": "61.0M params incl. the copy head",
     "summary": "every label in one prompt, 1,024 tokens, 3,600 steps (session 6)",
     "calls": "three ≤10-minute calls joined by --resume, the GPU to itself",
     "command": "bash eval/gpu_run.sh s6 1; TRAIN_S=500 bash eval/gpu_run.sh s6 2 train.max_steps=3600; "
                "CALL_S=590 bash eval/gpu_run.sh s6 3 train.max_steps=3600 (the last runs "
                + TEST_COPY.format(run="s6", config="multitask-small") + ")"},
    {"name": "multitask-small-s6b-mix", "dir": "multitask-small-s6b-mix", "group": 6,
     "config": S6 + " with DuEE in its own entry at weight 4 and DuIE at weight 3; 2,000 steps; run with the code of "
               "commit 91971ab (the same, plus the test predictions files)",
     "params": "61.0M params incl. the copy head",
     "summary": "the same, DuEE weight 4, DuIE 3, 2,000 steps (session 6)",
     "calls": "two ≤10-minute calls joined by --resume, the GPU to itself",
     "command": "TRAIN_S=430 bash eval/gpu_run.sh s6b 1 " + S6B_SETS + "; bash eval/gpu_run.sh s6b 3 " + S6B_SETS},
    # Session 4: the code and config of commit abee462 (review-fixed training hints), two runs side by side.
    {"name": "multitask-small-s4", "dir": "multitask-small-s4", "group": 4,
     "config": S4, "params": "61.0M params incl. the copy head",
     "summary": "Adafactor 5e-3 + review-fixed hints (session 4)",
     "calls": "three ≤10-minute calls joined by --resume, beside the chunk-sampling run on the same GPU",
     "command": "INSTRUCTIE_DATA=.devdata instructie train --config configs/multitask-small.yaml "
                "--output-dir runs/base --max-time 490; then --resume --max-time 535; then --resume (final test); "
                + TEST_COPY.format(run="base", config="multitask-small")},
    {"name": "multitask-small-s4-chunk", "dir": "multitask-small-s4-chunk", "group": 4,
     "config": S4 + " with --set data.option_chunk_sampling=0.5", "params": "61.0M params incl. the copy head",
     "summary": "the same + option_chunk_sampling 0.5 (session 4)",
     "calls": "three ≤10-minute calls joined by --resume, beside the run without chunk sampling on the same GPU",
     "command": "INSTRUCTIE_DATA=.devdata instructie train --config configs/multitask-small.yaml "
                "--set data.option_chunk_sampling=0.5 --output-dir runs/chunk --max-time 490; then --resume "
                "--max-time 535; then --resume (final test); " + TEST_COPY.format(run="chunk", config="multitask-small")},
    {"name": "multitask-small-memory-adamw", "dir": "multitask-small-memory-adamw", "group": 3,
     "config": S3, "params": "61.0M params incl. the copy head",
     "summary": "AdamW 6e-4 + memory hints (session 3)", "test_file": "test_all.json",
     "constrained_file": "test_all.json", "optseed_file": "test_optseed1.json",
     "calls": "two ≤10-minute calls joined by --resume, beside the no-memory run on the same GPU",
     "command": f"INSTRUCTIE_DATA=.devdata instructie train --config configs/multitask-small.yaml {ADAMW} "
                "--output-dir runs/mem --max-time 450; then --resume --set 'data.test=[]'; "
                "instructie test --model runs/mem --config configs/multitask-small.yaml --constrained all "
                "--json test_all.json; the same with --option-seed 1"},
    {"name": "multitask-small-nomem-adamw", "dir": "multitask-small-nomem-adamw", "group": 3,
     "config": S3, "params": "61.0M params incl. the copy head",
     "summary": "AdamW 6e-4, no memory hints (session 3)", "test_file": "test_all.json",
     "constrained_file": "test_all.json", "optseed_file": "test_optseed1.json",
     "calls": "two ≤10-minute calls joined by --resume, beside the memory run on the same GPU",
     "command": f"INSTRUCTIE_DATA=.devdata instructie train --config configs/multitask-small.yaml {ADAMW} "
                "--set data.memory_hints=false --output-dir runs/nomem --max-time 450; then --resume "
                "--set 'data.test=[]'; instructie test --model runs/nomem --config configs/multitask-small.yaml "
                "--constrained all --json test_all.json; the same with --option-seed 1"},
    {"name": "multitask-small-pretrained-adamw", "dir": "multitask-small-pretrained-adamw", "group": 3,
     "config": "configs/pretrain-small.yaml, then " + S3,
     "params": "61.0M params incl. the copy head; T5 span-corruption pretraining, 800 steps (189 s), first",
     "summary": "pretrain 800 steps, then AdamW 6e-4 + memory hints, 3,000 steps (session 3)",
     "no_constrained": True, "extra_wall_s": 188.8,
     "calls": "pretraining and fine-tuning over two ≤10-minute calls, beside the Adafactor run on the same GPU",
     "command": "INSTRUCTIE_DATA=.devdata instructie pretrain --config configs/pretrain-small.yaml "
                "--set train.max_steps=800; instructie train --config configs/multitask-small.yaml "
                f"--set model.name_or_path=runs/pretrain-small --set model.init=pretrained {ADAMW} "
                "--set train.max_steps=3000 --output-dir runs/pre --max-time 200; then --resume (final test)"},
    {"name": "multitask-small-copy", "dir": "multitask-small-copy", "config": S2, "group": 2,
     "params": "61.0M params incl. the copy head", "summary": "copy head, AdamW 6e-4, 4,000 steps (session 2)",
     "calls": "two ≤10-minute calls joined by --resume",
     "command": "INSTRUCTIE_DATA=.devdata instructie train --config configs/multitask-small.yaml --max-time 450; "
                "then --resume (final eval); " + TEST_COPY.format(run="multitask-small", config="multitask-small")},
    {"name": "multitask-small-plain-4000", "dir": "multitask-small-plain-4000", "group": 2,
     "config": S2, "params": "60.4M params", "log": "train_c.log",
     "summary": "no copy head, AdamW 6e-4, 4,000 steps (session 2)",
     "calls": "two ≤10-minute calls joined by --resume",
     "command": "INSTRUCTIE_DATA=.devdata instructie train --config configs/multitask-small.yaml "
                "--set model.copy_head=false --output-dir runs/multitask-small-plain --max-time 400; then --resume"},
    {"name": "multitask-small-zeroshot", "dir": "multitask-small-zeroshot", "group": 2,
     "config": "configs/multitask-small-zeroshot.yaml", "params": "61.0M params incl. the copy head",
     "summary": "copy head, no CrossNER training, AdamW, 4,000 steps (session 2)",
     "calls": "two ≤10-minute calls joined by --resume",
     "command": "INSTRUCTIE_DATA=.devdata instructie train --config configs/multitask-small-zeroshot.yaml "
                "--max-time 400; then --resume --max-time 470 (final eval); "
                + TEST_COPY.format(run="multitask-small-zeroshot", config="multitask-small-zeroshot")},
    {"name": "multitask-small (session 1)", "dir": "multitask-small", "group": 1,
     "config": "configs/multitask-small.yaml as of commit 37f7be4 (no copy head, AdamW 6e-4, 10,000-step cosine "
     "stopped at 5,000)",
     "params": "60.4M params", "constrained_file": "test_constrained.json", "constrained_key": "constrained",
     "summary": "no copy head, AdamW, 5,000 of 10,000 scheduled steps (session 1)",
     "calls": "three ≤10-minute calls joined by --resume",
     "command": "INSTRUCTIE_DATA=.devdata instructie train --config configs/multitask-small.yaml --max-time 455; "
                "then --resume --max-time 840 --set train.max_steps=5000 --set train.compile=false; then --resume; "
                "instructie test --model runs/multitask-small --config configs/multitask-small.yaml --constrained on"},
]
HEAD = {"NER": "entity_f1", "RE": "triple_f1", "EE": "trigger_cls_f1", "RC": "accuracy", "NEG": "competition"}
ROWS = [("CoNLL2003", "NER", "entity_f1"), ("CrossNER_AI", "NER", "entity_f1"),
        ("CrossNER_literature", "NER", "entity_f1"), ("DuEE", "EE", "trigger_cls_f1"), ("DuEE", "EE", "arg_cls_f1"),
        ("duie", "RE", "triple_f1"), ("fewrel", "RC", "accuracy"), ("fewrel_unseen", "RC", "accuracy"),
        ("fin_negative", "NEG", "competition")]


def metrics_by_key(scores: list[dict]) -> dict:
    out: dict = {}
    for s in scores:
        out.setdefault(s["dataset"], {})[s["task"]] = {k: round(v, 4) for k, v in s["metrics"].items()
                                                       if not k.endswith(("_tp", "_fp", "_fn", "_support"))}
    return out


def metrics_from_log(path: Path) -> dict:
    """The '*' rows of the test table (P R F1 per dataset/task/metric) and the key=value summary lines."""
    out: dict = {}
    row = re.compile(r"^(\S+)\s+([A-Z]+)\s+(\S+)\s+\*\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+\d+\s*$")
    summary = re.compile(r"^(\S+) ([A-Z]+): records=\d+;(.*)$")
    for line in path.read_text(encoding="utf-8").replace("\r", "\n").splitlines():
        if m := row.match(line):
            ds, task, metric, p, r, f = m.groups()
            out.setdefault(ds, {}).setdefault(task, {}).update(
                {f"{metric}_precision": float(p), f"{metric}_recall": float(r), f"{metric}_f1": float(f)})
        elif m := summary.match(line):
            ds, task, rest = m.groups()
            for k, v in re.findall(r"(\w+)=([\d.]+)(?=;|$)", rest.split("; dropped")[0]):
                if k not in ("unsupported", "truncated_prompts"):
                    out.setdefault(ds, {}).setdefault(task, {})[k] = float(v)
    return out


def load_run(spec: dict, base_metrics: dict) -> dict:
    d = RUNS / spec["dir"]
    constrained, c_unsupported, option_order, order_against = {}, None, {}, None
    if "log" in spec:
        metrics, unsupported = metrics_from_log(d / spec["log"]), None
        m = re.findall(r"saved model to \S+ \(step (\d+), (\d+) s of training\)", (d / spec["log"]).read_text())
        if not m:
            raise SystemExit(f"{d / spec['log']}: no 'saved model ... (step N, S s of training)' line")
        steps, wall = int(m[-1][0]), float(m[-1][1])
    else:
        mj = json.loads((d / "metrics.json").read_text())
        test = json.loads((d / spec["test_file"]).read_text())["unconstrained"] if "test_file" in spec else mj["test"]
        metrics, wall, steps = metrics_by_key(test["scores"]), round(mj["train_time_s"], 1), mj["step"]
        unsupported = test["unsupported_rate"]
        if not spec.get("no_constrained"):
            c = json.loads((d / spec.get("constrained_file", "test_copy.json")).read_text())
            for k in spec.get("constrained_path", [spec.get("constrained_key", "constrained_copy")]):
                c = c[k]
            constrained, c_unsupported = metrics_by_key(c["scores"]), c["unsupported_rate"]
        if "optseed_file" in spec:
            o = json.loads((d / spec["optseed_file"]).read_text())["unconstrained"]
            option_order = metrics_by_key(o["scores"])
    hint: dict = {}
    if "hint_file" in spec:  # hint-biased decoding (eval/tune_hint_bias.py): the bias chosen on dev, its tests
        hj = json.loads((d / spec["hint_file"]).read_text())
        tests = hj.get("test", {})
        def test(prefix: str, floor: bool):
            return next((v for k, v in tests.items() if k.startswith(prefix) and k.endswith("+floor") == floor), None)

        free, copy = test("unconstrained+hint", False), test("constrained_copy+hint", False)
        free_f, copy_f = test("unconstrained+hint", True), test("constrained_copy+hint", True)
        # session 12 on: the option-order test is the tuning's (--option-seed 1), decoded as its free test
        if order := test("option_seed_1+hint", bool(free_f)):
            option_order = metrics_by_key(order["scores"])
            # compared with the test decoded alike: with the floor, the run's metrics; without (all floors 0), the
            # tuned free test, not the run's bias-0 test
            order_against = None if free_f else metrics_by_key(free["scores"])
        hint = {"chosen": hj["chosen"], "dev_datasets": hj["dev_datasets"], "rule": hj["rule"],
                "dev": {b: v["summary"] for b, v in hj["dev"].items()},
                "metrics": metrics_by_key(free["scores"]) if free else {},
                "metrics_constrained": metrics_by_key(copy["scores"]) if copy else {},
                "unsupported_rate": {"unconstrained": free and free["unsupported_rate"],
                                     "constrained": copy and copy["unsupported_rate"]}}
        if "chosen_floor" in hj:  # the unhinted-item floor, chosen with the bias (session 8 on)
            hint |= {"chosen_floor": hj["chosen_floor"], "floors": hj["floors"],
                     "dev_floors": {b: {f: x["summary"] for f, x in v["floors"].items()} for b, v in hj["dev"].items()},
                     "metrics_floor": metrics_by_key(free_f["scores"]) if free_f else {},
                     "metrics_floor_constrained": metrics_by_key(copy_f["scores"]) if copy_f else {},
                     "unsupported_rate_floor": {"unconstrained": free_f and free_f["unsupported_rate"],
                                                "constrained": copy_f and copy_f["unsupported_rate"]}}
    extra_wall = spec.get("extra_wall_s", 0.0)  # pretraining first: its training time counts too
    if "pretrain_file" in spec:
        extra_wall = json.loads((d / spec["pretrain_file"]).read_text())["train_time_s"]
    report = d / "model_report.json"
    copy_head = json.loads(report.read_text()).get("copy_head", False) if report.exists() else "copy head" in spec["params"]
    plain_rate = {"unconstrained": unsupported, "constrained": c_unsupported}
    tuned = bool(hint.get("metrics_floor"))  # session 8 on: the run's answer is its dev-tuned decoding
    return {
        "name": spec["name"], "summary": spec["summary"],
        "init": INIT.format(shape=spec.get("shape", "small"), params=spec["params"]),
        "config": spec["config"], "command": spec["command"], "device": DEVICE,
        "wall_s": round(wall + extra_wall, 1), "steps": steps, "calls": spec["calls"],
        "copy_head": copy_head,
        "decoding": ("greedy with the hint bias and unhinted-item floor chosen on dev (hint_bias.chosen, "
                     "hint_bias.chosen_floor); metrics_plain: greedy, bias 0") if tuned else "greedy",
        "metrics": hint["metrics_floor"] if tuned else metrics,
        "metrics_constrained": hint["metrics_floor_constrained"] if tuned else constrained,
        "metrics_plain": metrics,
        "metrics_plain_constrained": constrained,
        "metrics_option_seed_1": option_order,
        **({"metrics_option_seed_1_against": order_against} if order_against else {}),
        "constrained_mode": "vocab" if spec.get("constrained_key") == "constrained" else "copy",
        "unsupported_rate": hint["unsupported_rate_floor"] if tuned else plain_rate,
        "unsupported_rate_plain": plain_rate,
        "baselines": base_metrics,
        "session": spec["group"],
        "hint_bias": hint,
    }


def bias_name(b) -> str:
    if isinstance(b, dict):
        return ", ".join(f"{t} {v:g}" for t, v in sorted(b.items()))
    return f"{b:g}"


def get(m: dict, ds: str, task: str, metric: str):
    return m.get(ds, {}).get(task, {}).get(metric)


def fmt(v) -> str:
    return "—" if v is None else f"{v:.4f}"


def main() -> None:
    base = json.loads((HERE / "baselines.json").read_text())
    base_metrics: dict = {}
    for name, scores in base["scores"].items():
        for s in scores:
            for k, v in s["metrics"].items():
                if k.endswith(("_f1", "accuracy", "macro_f1")) or k == "competition":
                    base_metrics.setdefault(s["dataset"], {}).setdefault(s["task"], {})[f"{name}:{k}"] = round(v, 4)
    runs = [load_run(spec, base_metrics) for spec in RUN_SPECS]
    (HERE / "results.json").write_text(json.dumps({"runs": runs}, ensure_ascii=False, indent=2) + "\n")

    best: dict = {}
    for (ds, task, metric) in ROWS:
        vals = base_metrics.get(ds, {}).get(task, {})
        cands = {k: v for k, v in vals.items() if k.split(":")[1] == metric}
        if cands:
            k = max(cands, key=cands.get)
            best[(ds, task, metric)] = (k.split(":")[0], cands[k])

    r = runs[0]
    s3best = next(x for x in runs if x["name"] == "multitask-small-adafactor")  # the reference of sessions 4 and 6
    h = r["hint_bias"]
    tuned = bool(h.get("metrics_floor"))  # the best run decodes with its dev-tuned hint bias and floor
    top_free, top_copy = r["metrics"], r["metrics_constrained"]
    rows = ["| dataset | task | metric | model | model, copy-constrained | best no-model baseline | "
            "beats baseline? (free / constrained) |", "|---|---|---|---|---|---|---|"]
    for ds, task, metric in ROWS:
        v, c = get(top_free, ds, task, metric), get(top_copy, ds, task, metric)
        b = best.get((ds, task, metric))
        bt = f"{b[1]:.4f} ({b[0]})" if b else "none (zero-shot: no training data)"
        verdict = "—" if not b else " / ".join("yes" if x is not None and x > b[1] else "**no**" for x in (v, c))
        rows.append(f"| {ds} | {task} | {metric} | {fmt(v)} | {fmt(c)} | {bt} | {verdict} |")

    def ablation(group: list[dict]) -> str:
        abl = ["| dataset | metric | " + " | ".join(x["summary"] for x in group) + " | best baseline |",
               "|---|---|" + "---|" * (len(group) + 1)]
        for ds, task, metric in ROWS:
            cells = []
            for x in group:
                v, c = get(x["metrics"], ds, task, metric), get(x["metrics_constrained"], ds, task, metric)
                cells.append(fmt(v) + (f" ({fmt(c)})" if c is not None else ""))
            b = best.get((ds, task, metric))
            abl.append(f"| {ds} | {metric} | " + " | ".join(cells) + f" | {fmt(b[1]) if b else '—'} |")
        abl.append("| *unsupported-span rate* | | " + " | ".join(
            (fmt(x["unsupported_rate"]["unconstrained"]) + (f" ({fmt(x['unsupported_rate']['constrained'])})"
                                                             if x["unsupported_rate"]["constrained"] is not None
                                                             else "")) for x in group) + " | |")
        abl.append("| *training time (s) / steps* | | " + " | ".join(
            f"{x['wall_s']:.0f} / {x['steps']}" for x in group) + " | |")
        return "\n".join(abl)

    def hinted(group: list[dict]) -> str:
        """Plain and hint-biased decoding of each run (copy-constrained in parentheses) beside the baseline."""
        head = "| dataset | metric | " + " | ".join(
            f"{x['summary']}: β = 0 | the same, hint bias {bias_name(x['hint_bias']['chosen'])}" for x in group)
        out = [head + " | best baseline | beats it with the hint bias? (either run; free / copy) |",
               "|---|---|" + "---|" * (2 * len(group) + 2)]
        for ds, task, metric in ROWS:
            cells = []
            for x in group:
                for m, c in ((x["metrics"], x["metrics_constrained"]),
                             (x["hint_bias"]["metrics"], x["hint_bias"]["metrics_constrained"])):
                    v, cv = get(m, ds, task, metric), get(c, ds, task, metric)
                    cells.append(fmt(v) + (f" ({fmt(cv)})" if cv is not None else ""))
            b = best.get((ds, task, metric))
            verdict = "—" if not b else " / ".join(
                "yes" if any((v := get(x["hint_bias"][key], ds, task, metric)) is not None and v > b[1]
                             for x in group) else "**no**"
                for key in ("metrics", "metrics_constrained"))
            out.append(f"| {ds} | {metric} | " + " | ".join(cells) + f" | {fmt(b[1]) if b else '—'} | {verdict} |")
        out.append("| *unsupported-span rate* | | " + " | ".join(
            f"{fmt(u['unconstrained'])} ({fmt(u['constrained'])})"
            for x in group for u in (x["unsupported_rate"], x["hint_bias"]["unsupported_rate"])) + " | | |")
        return "\n".join(out)

    def floored(group: list[dict]) -> str:
        """Each run at bias 0, with its tuned hint bias (floor 0), and with the bias and the unhinted-item floor
        (copy-constrained in parentheses), beside the baseline."""
        cols = [("β = 0", "metrics_plain", "metrics_plain_constrained", None),
                ("tuned bias", "metrics", "metrics_constrained", "h"),
                ("tuned bias + floor", "metrics_floor", "metrics_floor_constrained", "h")]
        head = "| dataset | metric | " + " | ".join(f"{x['name']}: {c[0]}" for x in group for c in cols)
        out = [head + " | best baseline | beats it with bias + floor? (each run: free / copy) |",
               "|---|---|" + "---|" * (len(cols) * len(group) + 2)]
        for ds, task, metric in ROWS:
            cells = []
            for x in group:
                for _, fk, ck, src in cols:
                    m = x["hint_bias"] if src else x
                    v, cv = get(m[fk], ds, task, metric), get(m[ck], ds, task, metric)
                    cells.append(fmt(v) + (f" ({fmt(cv)})" if cv is not None else ""))
            b = best.get((ds, task, metric))
            verdict = "—" if not b else "; ".join(" / ".join(
                "yes" if (v := get(x["hint_bias"][key], ds, task, metric)) is not None and v > b[1] else "**no**"
                for key in ("metrics_floor", "metrics_floor_constrained")) for x in group)
            out.append(f"| {ds} | {metric} | " + " | ".join(cells) + f" | {fmt(b[1]) if b else '—'} | {verdict} |")
        out.append("| *unsupported-span rate* | | " + " | ".join(
            f"{fmt(u['unconstrained'])} ({fmt(u['constrained'])})" for x in group
            for u in (x["unsupported_rate_plain"], x["hint_bias"]["unsupported_rate"],
                      x["hint_bias"]["unsupported_rate_floor"]))
            + " | | |")
        out.append("| *chosen on dev: bias; floor* | | " + " | ".join(
            f"— | {bias_name(x['hint_bias']['chosen'])} | {bias_name(x['hint_bias']['chosen'])}; "
            f"{bias_name(x['hint_bias']['chosen_floor'])}" for x in group) + " | | |")
        return "\n".join(out)

    def tuned_side_by_side(group: list[dict], time_label: str = "device time (s): pretraining + fine-tuning") -> str:
        """Runs side by side: bias 0 and the dev-tuned bias + floor (copy-constrained in parentheses), their
        steps and device time, beside the baseline."""
        out = ["| dataset | metric | " + " | ".join(f"{x['name']}: β = 0 | {x['name']}: tuned bias + floor"
                                                   for x in group) + " | best baseline |",
               "|---|---|" + "---|" * (2 * len(group) + 1)]
        for ds, task, metric in ROWS:
            cells = []
            for x in group:
                tuned = bool(x["hint_bias"].get("metrics_floor"))  # else its tuned column is empty, not bias 0 again
                for fk, ck in (("metrics_plain", "metrics_plain_constrained"), ("metrics", "metrics_constrained")):
                    m, cm = (x[fk], x[ck]) if tuned or fk == "metrics_plain" else ({}, {})
                    v, cv = get(m, ds, task, metric), get(cm, ds, task, metric)
                    cells.append(fmt(v) + (f" ({fmt(cv)})" if cv is not None else ""))
            b = best.get((ds, task, metric))
            out.append(f"| {ds} | {metric} | " + " | ".join(cells) + f" | {fmt(b[1]) if b else '—'} |")
        out.append(f"| *{time_label}* | | " + " | ".join(
            f"{x['wall_s']:.0f} | {x['steps']:,} fine-tuning steps" for x in group) + " | |")
        return "\n".join(out)

    def floor_sweep(x: dict) -> str:
        h = x["hint_bias"]
        keys = sorted({k for s in h["dev"].values() for k in s if k.split("/")[2] == HEAD.get(k.split("/")[1])})
        shown = [f for f in sorted(next(iter(h["dev_floors"].values())), key=float) if float(f) in (0, 0.5, 0.8, 0.9, 0.95)]
        out = ["| hint bias | floor | " + " | ".join(f"{k.split('/')[0]} {k.split('/')[2]}" for k in keys) + " |",
               "|---|---|" + "---|" * len(keys)]
        for b in sorted(h["dev_floors"], key=float):
            for f in shown:
                out.append(f"| {b} | {f} | " + " | ".join(fmt(h["dev_floors"][b][f].get(k)) for k in keys) + " |")
        return "\n".join(out)

    def tuned_sweeps(session: int) -> list[str]:
        """The dev sweep (bias x floor) of each run of a session, with the rule and the chosen pair."""
        return [s for x in runs if x["session"] == session for s in (
            f"Dev sweep of {x['name']} (first 400 records of each dev split; some of the floors scored; "
            f"{x['hint_bias']['rule']}; chosen: bias {bias_name(x['hint_bias']['chosen'])}; floor "
            f"{bias_name(x['hint_bias']['chosen_floor'])}):", "", floor_sweep(x), "")]

    def rescored() -> str:
        """Saved test predictions scored again with duplicates of a located mention kept once
        (eval/rescore.py -> runs/rescore_duplicates.json), beside the baseline."""
        rj = json.loads((RUNS / "rescore_duplicates.json").read_text())
        label = {"test_predictions.jsonl.gz": "β = 0", "test_hint_predictions.jsonl.gz": "tuned hint bias"}
        cols = [(f"{Path(k).parent.name}, {label.get(Path(k).name, Path(k).name)}", v["summary"]) for k, v in rj.items()]
        out = ["| dataset | metric | " + " | ".join(c for c, _ in cols) + " | best baseline | beaten by a session-7 "
               "run with its tuned hint bias? |", "|---|---|" + "---|" * (len(cols) + 2)]
        for ds, task, metric in ROWS:
            vals = [s.get(f"{ds}/{task}/{metric}") for _, s in cols]
            b = best.get((ds, task, metric))
            hinted_vals = [v for (c, _), v in zip(cols, vals) if "s7" in c and "hint" in c and v is not None]
            verdict = "—" if not b else ("yes" if any(v > b[1] for v in hinted_vals) else "**no**")
            out.append(f"| {ds} | {metric} | " + " | ".join(fmt(v) for v in vals) + f" | {fmt(b[1]) if b else '—'} | "
                       f"{verdict} |")
        return "\n".join(out)

    def dev_sweep(x: dict) -> str:
        h = x["hint_bias"]
        keys = sorted({k for s in h["dev"].values() for k in s if k.split("/")[2] == HEAD.get(k.split("/")[1])})
        out = ["| hint bias | " + " | ".join(f"{k.split('/')[0]} {k.split('/')[2]}" for k in keys) + " |",
               "|---|" + "---|" * len(keys)]
        for b in sorted(h["dev"], key=float):
            out.append(f"| {b} | " + " | ".join(fmt(h["dev"][b].get(k)) for k in keys) + " |")
        return "\n".join(out)

    def ablation_margins() -> list[str]:
        """Each ablation's saved test predictions against the s10b run's, paired bootstrap
        (eval/bootstrap_vs_baseline.py --against -> runs/ablation/A_vs_B_{free,copy,bias0}.json): the dev-tuned
        decoding free and copy-constrained, and greedy at bias 0, as far as the run has them."""
        kinds = (("free", "free", "tuned, free"), ("copy", ".copy.floor", "tuned, copy-constrained"),
                 ("bias0", "test_predictions", "greedy, bias 0"))
        out = []
        pairs = sorted({f.name.rsplit("_", 1)[0] for k, _, _ in kinds for f in (RUNS / "ablation").glob(f"*_vs_*_{k}.json")},
                       reverse=True)
        for pair in pairs:  # a run without a tuned test (s13a) has the bias-0 comparison only
            got = {k: json.loads(g.read_text()) for k, _, _ in kinds
                   if (g := RUNS / "ablation" / f"{pair}_{k}.json").exists()}
            shown = [(k, what, label) for k, what, label in kinds if k in got]
            first = got[shown[0][0]]  # the command shown: the first comparison the pair has
            a, b = pair.split("_vs_")
            out += [f"{a} against {b}: paired bootstrap of the saved test predictions ({first['resamples']:,} draws; "
                    f"`INSTRUCTIE_DATA=.devdata python eval/bootstrap_vs_baseline.py --config "
                    f"configs/multitask-small.yaml --predictions {first['predictions']} --name {a} --against "
                    f"{first['against']} --against-name {b}`; "
                    + "; ".join(("tuned: each run with its dev-tuned bias and floor" if k == "free" else
                                 f"{label}: the `{what}` files") for k, what, label in shown) + "):", "",
                    "| dataset | metric | " + " | ".join(f"difference, {label} (95% interval) | ahead in"
                                                         for _, _, label in shown) + " |",
                    "|---|---|" + "---|---|" * len(shown)]
            by = {k: {(r["dataset"], r["task"]): r for r in got[k]["results"]} for k, _, _ in shown}
            for r in first["results"]:
                cells = [f"{x['difference']:+.4f} ({x['difference_low']:+.4f} to {x['difference_high']:+.4f}) | "
                         f"{x['model_ahead_share']:.1%}" if x else "— | —"
                         for x in (by[k].get((r["dataset"], r["task"])) for k, _, _ in shown)]
                out.append(f"| {r['dataset']} | {r['metric']} | " + " | ".join(cells) + " |")
            out.append("")
        return out

    order = ["| run | dataset | metric | schema order | shuffled (seed 1) | difference |", "|---|---|---|---|---|---|"]
    for x in runs:
        if not x["metrics_option_seed_1"]:
            continue
        for ds, task, metric in ROWS:
            v = get(x.get("metrics_option_seed_1_against", x["metrics"]), ds, task, metric)
            o = get(x["metrics_option_seed_1"], ds, task, metric)
            if v is not None and o is not None:
                order.append(f"| {x['name']} | {ds} | {metric} | {fmt(v)} | {fmt(o)} | {abs(v - o):.4f} |")

    # session 13 (eval/option_order.sh): short trainings of the s10b recipe, each test split asked in schema order
    # by training's own test and again shuffled; the paired bootstrap of the two (bootstrap_vs_baseline.py --against)
    oo_dir = RUNS / "option-order-s13"
    order13 = ["| run (steps) | options shuffled by | dataset | metric | schema order | shuffled | difference (95% "
               "interval) |", "|---|---|---|---|---|---|---|"]
    for f in sorted(oo_dir.glob("*_vs_schema.json")):
        run, seed = f.name.removesuffix("_vs_schema.json").rsplit("_seed", 1)
        steps = json.loads((oo_dir / f"{run}_metrics.json").read_text())["step"]
        for x in json.loads(f.read_text())["results"]:
            order13.append(f"| {run} ({steps:,}) | seed {seed} | {x['dataset']} | {x['metric']} | "
                           f"{x['baseline_value']:.4f} | {x['model']:.4f} | {x['difference']:+.4f} "
                           f"({x['difference_low']:+.4f} to {x['difference_high']:+.4f}) |")
    brow = ["| run | size | variant | batch | examples/s | target tokens/s | peak GiB | MFU | × plain (same run) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for call, recs in (("call 2", json_lines(RUNS / "bench/bench_train_call2.jsonl")),
                       ("call 1", json_lines(RUNS / "bench/bench_train_call1.jsonl"))):
        for x in recs:
            p = next(y for y in recs if y["variant"] == "plain" and y["size"] == x["size"])
            brow.append(f"| {call} | {x['size']} | {x['variant']} | {x['batch_size']} | {x['examples_per_s']} | "
                        f"{x['target_tokens_per_s']} | {x['peak_mem_gib']} | {x['mfu'] * 100:.1f}% | "
                        f"{x['examples_per_s'] / p['examples_per_s']:.2f} |")
    gen = "\n".join([
        MARK_BEGIN, "",
        "### Test splits: the best model beside its no-model baselines (`python eval/report.py`)", "",
        f"Run: {r['name']} ({r['summary']}); init: {r['init']}; config `{r['config']}`; device: {r['device']}; "
        f"training time {r['wall_s']} s over {r['calls']}."
        + (f" Decoded with the hint bias and unhinted-item floor chosen on the dev sets by `eval/tune_hint_bias.py` "
           f"(bias {bias_name(h['chosen'])}; floor {bias_name(h['chosen_floor'])}); command: `{r['command']}`."
           if tuned else ""), "",
        "\n".join(rows), "",
        f"Unsupported-span rate on the test splits (items whose spans are not in the text): "
        f"{r['unsupported_rate']['unconstrained']:.4f} free, {r['unsupported_rate']['constrained']:.4f} "
        f"copy-constrained.",
        "",
        "### Sessions 11–13: lever ablations at the s10b recipe, one training each (test splits; copy-constrained "
        "in parentheses; each run's bias and floor chosen on its own dev sweep)", "",
        tuned_side_by_side([x for x in runs if x["name"] == "multitask-small-s10b"]
                           + [x for x in runs if x["session"] in (11, 12, 13)], "training device time (s)"), "",
        *ablation_margins(),
        *tuned_sweeps(12),
        *tuned_sweeps(11),
        "### Session 10: more steps a second (epochs built in a background process), and a mix "
        "weighted to DuEE (test splits; copy-constrained in parentheses; each run's bias and floor chosen on its own "
        "dev sweep)", "",
        tuned_side_by_side(sorted((x for x in runs if x["name"] == "multitask-small-s8b" or x["session"] == 10),
                                  key=lambda x: (x["session"], x["name"])), "training device time (s)"),
        "",
        *tuned_sweeps(10),
        "### Session 9: span-corruption pretraining first (`instructie pretrain`, configs/pretrain-small.yaml), "
        "at about the device time of the session-8 runs (test splits; copy-constrained in parentheses; each run's "
        "bias and floor chosen on its own dev sweep)", "",
        tuned_side_by_side(sorted((x for x in runs if x["session"] in (8, 9)), key=lambda x: (x["session"], x["name"]))),
        "",
        *tuned_sweeps(9),
        "### Session 8: the unhinted-item floor (`hint_bias.drop_unhinted`: an item the memory hint did not propose "
        "is kept only when the model's own confidence in it reaches the floor), chosen with the hint bias on the dev "
        "sets by `eval/tune_hint_bias.py` (test splits, copy-constrained in parentheses; a mention repeated by a "
        "generation loop is scored once, as in the rescored table of session 7)", "",
        floored([x for x in runs if x["session"] == 8][::-1]), "",
        *[s for x in runs if x["session"] == 8 for s in (
            f"Dev sweep of {x['name']} (first 400 records of each dev split; some of the floors scored; "
            f"{x['hint_bias']['rule']}):", "", floor_sweep(x), "")],
        "### Session 7: hint-biased decoding (`src/instructie/hint_bias.py`; the bias chosen on dev sets by "
        "`eval/tune_hint_bias.py`; test splits, copy-constrained in parentheses)", "",
        hinted([x for x in runs if x["session"] == 7][::-1]), "",
        "Free decoding, rescored with a located mention kept once (`python eval/rescore.py --config "
        "configs/multitask-small.yaml --predictions <the runs' test prediction files> --json "
        "eval/runs/rescore_duplicates.json`; the tables above count each repeat of a mention as a false positive):",
        "", rescored(), "",
        *[s for x in runs if x["session"] == 7 for s in (
            f"Dev sweep of {x['name']} (first 400 records of each dev split; {x['hint_bias']['rule']}):", "",
            dev_sweep(x), "")],
        "### Session 6: every label in one prompt (1,024 source tokens), and a mix weighted to DuEE and DuIE "
        "(test splits; copy-constrained in parentheses; the session-3 best and the session-4 run for reference)", "",
        ablation([s3best] + [x for x in runs if x["name"] == "multitask-small-s4"]
                 + [x for x in runs if x["session"] == 6]), "",
        "### Session 4: review-fixed training hints, and option-chunk sampling (test splits; copy-constrained in "
        "parentheses; the session-3 best run, commit e648694, for reference)", "",
        ablation([s3best] + [x for x in runs if x["session"] == 4]), "",
        "### Ablation, session 3: optimizer, memory hints, pretraining (test splits; copy-constrained in "
        "parentheses; same mix, seed and copy head)", "",
        ablation([x for x in runs if x["session"] == 3]), "",
        "### Ablation, sessions 1–2: the copy head (test splits; copy-/vocab-constrained in parentheses)", "",
        ablation([x for x in runs if x["session"] < 3]), "",
        "### Option order: each test set asked with its options in schema order and shuffled (free decoding; runs "
        "with a tuned bias and floor: decoded with them)", "",
        "\n".join(order), "",
        "Session 13, the s10b recipe trained for a short schedule in one call (`CALL_S=580 bash eval/option_order.sh "
        "oo13`, 600 steps; `CALL_S=590 STEPS=950 bash eval/option_order.sh oo13b`, 950 steps; one H100, greedy, no "
        "hint bias), each test split asked in schema order and with each record's options shuffled; paired "
        "bootstrap of the two prediction files, 1,000 draws (`eval/bootstrap_vs_baseline.py --against`, files in "
        "`eval/runs/option-order-s13/`):", "",
        "\n".join(order13), "",
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
