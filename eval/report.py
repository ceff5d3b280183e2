"""Write the generated tables of eval/RESULTS.md from the run files under eval/runs/ and the no-model
baselines (eval/baselines.json, the same test records and scorers).

Each generated table sits between ``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->``;
the text around them is written by hand and cites the same files. Only numbers a recorded command
produced appear.

    python eval/report.py           # rewrite the generated tables in eval/RESULTS.md
    python eval/report.py --check   # exit 1 when a table differs from what the files give
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).parent
RUNS = HERE / "runs"
RESULTS = HERE / "RESULTS.md"

# The headline run: configs/multitask-small.yaml as committed, trained on one H100 (eval/gpu_run.sh); and the
# recipe before packing (4,400 unpacked steps), which the ablations below were measured against.
HEADLINE_RUN = RUNS / "multitask-small-s14p"
UNPACKED_RUN = RUNS / "multitask-small-s10b"
# The headline metric of each dataset, in the order the tables list them.
DATASETS = [("CoNLL2003", "NER", "entity_f1"), ("CrossNER_AI", "NER", "entity_f1"),
            ("CrossNER_literature", "NER", "entity_f1"), ("DuEE", "EE", "trigger_cls_f1"),
            ("DuEE", "EE", "arg_cls_f1"), ("duie", "RE", "triple_f1"), ("fewrel", "RC", "accuracy"),
            ("fewrel_unseen", "RC", "accuracy"), ("fin_negative", "NEG", "competition")]
SHORT = {"CoNLL2003": "CoNLL2003", "CrossNER_AI": "CrossNER AI", "CrossNER_literature": "CrossNER lit.",
         "DuEE": "DuEE triggers", "duie": "DuIE", "fewrel": "FewRel", "fin_negative": "financial"}

# Paired bootstraps of one run's saved test predictions against another's (eval/bootstrap_vs_baseline.py
# --against, 1,000 draws): (file, what differs from the headline run, how both were decoded).
PAIRED = [
    ("ablation/s14p_vs_s10b_free.json", "packed, 6,100 steps in 877 s (s14p, today's recipe)", "tuned"),
    ("ablation/s14p_vs_s10b_copy.json", "packed, 6,100 steps in 877 s (s14p, today's recipe)", "tuned, copy"),
    ("ablation/s14p_vs_s10b_bias0.json", "packed, 6,100 steps in 877 s (s14p, today's recipe)", "β = 0"),
    ("ablation/s11a_vs_s10b_free.json", "no auxiliary tasks (s11a)", "tuned"),
    ("ablation/s11a_vs_s10b_copy.json", "no auxiliary tasks (s11a)", "tuned, copy"),
    ("ablation/s12a_vs_s10b_free.json", "no mention replacement (s12a)", "tuned"),
    ("ablation/s12a_vs_s10b_bias0.json", "no mention replacement (s12a)", "β = 0"),
    ("ablation/s13a_vs_s10b_bias0.json", "mention replacement 0.5 (s13a)", "β = 0"),
    ("ablation/s12b_vs_s10b_free.json", "T5-base, 1,700 steps (s12b)", "tuned"),
    ("ablation/s12b_vs_s10b_copy.json", "T5-base, 1,700 steps (s12b)", "tuned, copy"),
    ("ablation/s12b_vs_s10b_bias0.json", "T5-base, 1,700 steps (s12b)", "β = 0"),
    ("option-order-s13/oo13b_seed1_vs_schema.json", "options shuffled (seed 1) vs schema order, 950 steps", "β = 0"),
    ("option-order-s13/oo13_seed1_vs_schema.json", "options shuffled (seed 1) vs schema order, 600 steps", "β = 0"),
    ("option-order-s13/oo13_seed2_vs_schema.json", "options shuffled (seed 2) vs schema order, 600 steps", "β = 0"),
]

# Training throughput (eval/bench_train.py run, one H100, one call): Flan-T5 shapes at InstructUIE's lengths, and
# the random-init recipe's T5-small.
BENCH_TRAIN = ["bench/train_flan.json", "bench/train_small.json"]
# Extraction (eval/bench_extract.py --extract, one H100, one call): Extractor.extract against the bare loop.
BENCH_EXTRACT = "bench/extract_e2e.json"
ANSWERS = {"gold": "gold (forced)", "short": "≤ 3 tokens", "long": "≤ 49 tokens"}


def load(rel: str):
    path = RUNS / rel
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return json.loads(path.read_text(encoding="utf-8"))


def table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def signed(x: float, digits: int = 3) -> str:
    x = round(x, digits)
    return f"{x:+.{digits}f}".replace("-", "−") if x else f"{0:.{digits}f}"


def margin(r: dict, digits: int = 3) -> str:
    return (f"{signed(r['difference'], digits)} ({signed(r['difference_low'], digits)} to "
            f"{signed(r['difference_high'], digits)})")


def best_baselines() -> dict[str, tuple[str, float]]:
    """{"dataset/task/metric": (baseline name, value)}: the best no-model baseline of each metric."""
    best: dict[str, tuple[str, float]] = {}
    for name, summary in load("../baselines.json")["summary"].items():
        for key, value in summary.items():
            if key not in best or value > best[key][1]:
                best[key] = (name, value)
    return best


def headline() -> str:
    run = HEADLINE_RUN.relative_to(RUNS).as_posix()
    tuned = load(f"{run}/hint_bias.json")["test"]
    free = tuned["unconstrained+hint+floor"]["summary"]
    copy = tuned["constrained_copy+hint+floor"]["summary"]
    alone = load(f"{run}/metrics.json")["test"]["summary"]
    alone_copy = tuned["constrained_copy"]["summary"]
    before = load(f"{UNPACKED_RUN.relative_to(RUNS).as_posix()}/hint_bias.json")["test"]
    before_free = before["unconstrained+hint+floor"]["summary"]
    before_copy = before["constrained_copy+hint+floor"]["summary"]
    boot = {(r["dataset"], r["metric"]): r for r in load("bootstrap/s14p_free.json")["results"]}
    boot_copy = {(r["dataset"], r["metric"]): r for r in load("bootstrap/s14p_copy.json")["results"]}
    base = best_baselines()
    rows = []
    for ds, task, metric in DATASETS:
        key = f"{ds}/{task}/{metric}"
        if key in base:
            b = f"{base[key][1]:.4f} ({base[key][0]})"
        else:
            b = "none: no training data" if ds == "fewrel_unseen" else "—"
        m = boot.get((ds, metric))
        mc = boot_copy.get((ds, metric))
        rows.append([ds, task, metric, f"**{free[key]:.4f}**", f"{copy[key]:.4f}",
                     f"{alone[key]:.4f} / {alone_copy[key]:.4f}", f"{before_free[key]:.4f} / {before_copy[key]:.4f}",
                     b, margin(m) if m else "—", margin(mc) if mc else "—"])
    return table(["dataset", "task", "metric", "model", "copy-constrained", "β = 0 (free / copy)",
                  "unpacked, 4,400 steps (free / copy)", "best no-model baseline", "margin (95% interval)",
                  "margin, copy-constrained"], rows)


def paired() -> str:
    cols = [(ds, metric) for ds, _, metric in DATASETS if ds != "fewrel_unseen" and metric != "arg_cls_f1"]
    rows = []
    for rel, change, decoding in PAIRED:
        by = {(r["dataset"], r["metric"]): r for r in load(rel)["results"]}
        rows.append([change, decoding] + [margin(by[c], 3) if c in by else "—" for c in cols] + [f"`{rel}`"])
    return table(["changed", "decoding"] + [SHORT[ds] for ds, _ in cols] + ["file (under eval/runs/)"], rows)


def bench_train() -> str:
    rows = []
    for rel in BENCH_TRAIN:
        res = [r for r in load(rel)["results"] if "examples_per_s" in r]  # the failed ones: eval/bench_train.md
        order = {v: i for i, v in enumerate(("hf", "main", "packed", "packed-bf16w", "packed-bf16w-ckpt",
                                             "main-adafactor", "packed-adafactor", "packed-hfadafactor",
                                             "packed-bf16w-adafactor", "packed-bf16w-ckpt-adafactor"))}
        for r in sorted(res, key=lambda r: (["small", "base", "large", "xl"].index(r["size"]), order[r["variant"]],
                                            r["batch"])):
            hf = max((x["examples_per_s"] for x in res if x["size"] == r["size"] and x["variant"] == "hf"),
                     default=None)
            packed = r["variant"].startswith("packed")
            rows.append([r["size"], r["variant"], str(r["batch"]) + (" rows" if packed else ""),
                         r.get("attention", "sdpa") if packed else "—",
                         f"{r['examples_per_step']:g}", f"{r['examples_per_s']:g}", f"{r['useful_tflops']:g}",
                         f"{100 * r['mfu']:.1f}%", f"{100 * r['padding']:.0f}%", f"{r['peak_mem_gib']:g}",
                         f"{r['first_step_s']:g}", f"{r['examples_per_s'] / hf:.2f}" if hf else "—", f"`{rel}`"])
    return table(["size", "variant", "batch", "attention", "examples/step", "examples/s", "useful TFLOP/s", "MFU",
                  "padding", "peak GiB", "first step s", "× Seq2SeqTrainer (best)", "file (under eval/runs/)"], rows)


def bench_extract() -> str:
    rows = []
    for s in load(BENCH_EXTRACT)["sizes"]:
        for key, (ex, bare) in s["extract"].items():
            mode, _, chunk = key.partition(" docs_per_chunk=")
            if chunk != "256":  # extract's default
                continue
            rows.append([f"{s['size']} ({s['params_m']:g}M)", ANSWERS[mode], f"{ex['prompts']:,}",
                         f"{bare['sentences_per_s']:g}", f"{ex['sentences_per_s']:g}", f"{ex['vs_bare']:.2f}",
                         f"{100 * ex['decoding_share']:.0f}%"])
    return table(["shape", "answers", "prompts", "bare loop, sentences/s", "Extractor.extract, sentences/s",
                  "× bare loop", "extract's time in decoding"], rows)


SECTIONS = {"headline": headline, "paired": paired, "bench-train": bench_train, "bench-extract": bench_extract}


def render(text: str) -> str:
    for name, make in SECTIONS.items():
        pattern = re.compile(rf"(<!-- generated: {name} -->\n)(?:.*?\n)?(<!-- end generated: {name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"report: {RESULTS}: no '<!-- generated: {name} -->' ... '<!-- end generated: {name} -->'")
        text = pattern.sub(lambda m: m.group(1) + make() + "\n" + m.group(2), text)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when RESULTS.md's tables are out of date")
    a = ap.parse_args(argv)
    old = RESULTS.read_text(encoding="utf-8")
    new = render(old)
    if a.check:
        if new != old:
            print(f"report: {RESULTS}: generated tables out of date: run python eval/report.py", file=sys.stderr)
            return 1
        return 0
    RESULTS.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
