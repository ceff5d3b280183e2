"""instructie: convert, eval, train, pretrain, test and extract from the command line.

Bad input ends with one clear line (file, line/record, problem) and exit code 2,
never a traceback; ``--skip-invalid`` counts bad records and goes on.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

import yaml

from ..core.io import ConfigError, InputError, TrainingError


def _kv(items: list[str]) -> dict:
    out = {}
    for it in items or []:
        if "=" not in it:
            raise ConfigError(f"--option {it!r}: expected key=value")
        k, v = it.split("=", 1)
        out[k] = yaml.safe_load(v)
    return out


def _tasks(s: str | None) -> list[str] | None:
    return [t.strip().upper() for t in s.split(",") if t.strip()] if s else None


# ---------------------------------------------------------------- convert
def cmd_convert(a) -> int:
    from instructie.data_adapters import get_adapter

    from ..prompts.instructions import expand_tasks, load_templates, template_index_problem, to_instance
    from ..core.io import SkipCounter, atomic_write

    opts = _kv(a.option)
    for flag in ("schema", "pid2name"):
        if getattr(a, flag):
            opts[flag] = getattr(a, flag)
    try:
        read = get_adapter(a.dataset)
    except KeyError as e:
        raise ConfigError(str(e.args[0])) from None
    from ..core.records import TASKS

    tasks = _tasks(a.tasks)
    bad = [t for t in tasks or [] if t not in TASKS]
    if bad:
        raise ConfigError(f"--tasks: unknown task(s) {', '.join(bad)}; known: {', '.join(TASKS)}")
    if a.template != "random" and not a.template.lstrip("-").isdigit():
        raise ConfigError(f"--template must be a template index or 'random', not {a.template!r}")
    if a.max_options is not None and a.max_options < 1:
        raise ConfigError("--max-options must be at least 1")
    if Path(a.output).resolve() in {Path(x).resolve() for x in (a.input, a.schema, a.pid2name) if x}:
        raise ConfigError(f"output {a.output} is one of the input files")
    templates = load_templates(a.templates)
    problem = template_index_problem(templates, int(a.template)) if a.template != "random" else None
    if problem:
        raise ConfigError(f"--template {a.template}: {problem}")
    errors, stats = SkipCounter(a.skip_invalid), Counter()
    template = a.template if a.template == "random" else int(a.template)
    counts, splits = Counter(), Counter()
    renamed: dict[object, str] = {}  # texts whose repeated id was made unique (to_records), by line
    with atomic_write(a.output) as f:
        recs = read(a.input, split=a.split or "", on_error=errors, stats=stats, **opts)
        for rec in expand_tasks(recs, tasks):
            inst = to_instance(rec, templates, template=template, seed=a.seed, max_options=a.max_options,
                               shuffle_options=a.shuffle_options)
            row = rec.to_dict()
            row.update(instance_id=inst.id, source=inst.source, target=inst.target)
            if inst.record.options != rec.options:  # options were sampled to fit: keep what was asked
                row["prompt_options"] = inst.record.options
            try:  # the text is encoded whole before any of it is written: a refused record leaves no half line
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            except UnicodeEncodeError as e:  # a lone surrogate the reader let through (a name from a file name)
                errors(InputError(a.input, rec.meta.get("line") or f"record {rec.id!r}",
                                  f"holds text that is not valid Unicode ({e.object[e.start:e.end]!r}, a lone "
                                  "surrogate): it cannot be written as UTF-8"))
                continue
            counts[(rec.dataset, rec.task)] += 1
            splits[rec.split] += 1
            if "repeated_id" in rec.meta:
                renamed.setdefault(rec.meta.get("line"), f"id {rec.meta['repeated_id']!r} at {rec.meta.get('line')}, "
                                                         f"first at {rec.meta.get('first_line')}")
    for (ds, task), n in sorted(counts.items()):
        print(f"{ds}\t{task}\t{n} instances", file=sys.stderr)
    if stats:
        print("adapter stats: " + ", ".join(f"{k}={v}" for k, v in sorted(stats.items())), file=sys.stderr)
    if renamed:
        shown = list(renamed.values())[:5]
        print(f"warning: {len(renamed)} text(s) reuse the id of an earlier text (joined exports?) and were kept "
              "under unique ids, their line (or task) number appended: "
              + "; ".join(shown) + ("; ..." if len(renamed) > len(shown) else ""), file=sys.stderr)
    if errors.count:
        print(errors.report(), file=sys.stderr)
    print(f"wrote {sum(counts.values())} instances to {a.output}", file=sys.stderr)
    if not a.split and len([sp for sp in splits if sp]) > 1:  # train and test in one file is rarely meant
        print("note: no --split given, so the splits were merged into one file: "
              + ", ".join(f"{sp or 'untagged'} {n}" for sp, n in sorted(splits.items()))
              + " instances (give --split train, dev or test for one)", file=sys.stderr)
    if not counts:
        print("warning: no instances (check --input, --split and --tasks)", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- eval
def cmd_eval(a) -> int:
    from ..evaluation.evaluate import evaluate_files
    from ..core.io import write_json

    if a.bootstrap < 0:
        raise ConfigError(f"--bootstrap is a number of draws (0: none), got {a.bootstrap}")
    if a.bootstrap and not a.baseline_train:
        raise ConfigError("--bootstrap compares the predictions with the no-model baselines: give --baseline-train "
                          "TRAIN_JSONL too")
    report = evaluate_files(a.gold, a.predictions, field=a.field, skip_invalid=a.skip_invalid,
                            baselines=a.baseline_train, bootstrap=a.bootstrap)
    print(report["table"])
    for group in report["scores"]:  # an unlabeled split scores 0.0000 everywhere, which reads as a result
        support = [v for k, v in group["metrics"].items() if k.endswith("_support")]
        if support and not any(support):
            print(f"note: {group['dataset']} {group['task']}: {a.gold} holds no gold item to find in its "
                  f"{group['records']} record(s) (support 0; an unlabeled split, such as a test set released "
                  f"without answers?): its scores are not a measurement", file=sys.stderr)
    if a.json:
        write_json(a.json, {k: v for k, v in report.items() if k != "table"})
        print(f"wrote {a.json}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- train / pretrain
def _clear_for_overwrite(a, output_dir: str) -> None:
    """--overwrite: drop an earlier run's checkpoints so a fresh run may use the folder."""
    import shutil

    if getattr(a, "overwrite", False) and not a.resume:
        shutil.rmtree(Path(output_dir) / "checkpoints", ignore_errors=True)


def _run_overrides(a) -> list[str]:
    """--set items plus the shorthand flags train and pretrain share."""
    overrides = list(a.set or [])
    if a.output_dir:
        overrides.append(f"train.output_dir={a.output_dir}")
    if a.max_steps is not None:
        overrides.append(f"train.max_steps={a.max_steps}")
    if a.max_time is not None:
        overrides.append(f"train.max_time_s={a.max_time}")
    return overrides


def cmd_train(a) -> int:
    from ..config import load_config
    from ..training.finetune import train

    cfg = load_config(a.config, _run_overrides(a))
    _clear_for_overwrite(a, cfg.train.output_dir)
    res = train(cfg, resume=a.resume, skip_invalid=a.skip_invalid)
    return 0 if res["status"] == "done" else 3


def cmd_pretrain(a) -> int:
    from ..config import load_pretrain_config
    from ..training.pretrain import pretrain

    cfg = load_pretrain_config(a.config, _run_overrides(a))
    _clear_for_overwrite(a, cfg.train.output_dir)
    res = pretrain(cfg, resume=a.resume, skip_invalid=a.skip_invalid)
    return 0 if res["status"] == "done" else 3


def cmd_test(a) -> int:
    """Score a trained model on the test (or eval) datasets of a config."""
    import json as _json

    from ..config import load_config, overrides_set
    from ..data.sources import load_sources
    from ..evaluation.evaluate import evaluate_sources, scored_records
    from ..inference.extractor import Extractor
    from ..core.io import write_json, write_jsonl

    if a.limit is not None and a.limit < 1:  # 0 or less would score nothing and say so with a table of zeros
        raise ConfigError(f"--limit is a number of records per dataset (at least 1), got {a.limit}")
    cfg = load_config(a.config, list(a.set or []))
    ex = Extractor.from_pretrained(a.model, device=a.device)
    dsets = cfg.data.eval if a.split == "eval" else cfg.data.test
    if not dsets:
        raise ConfigError(f"{a.config}: data.{'eval' if a.split == 'eval' else 'test'} lists no datasets")
    sources = load_sources(dsets, a.skip_invalid, f"data.{'eval' if a.split == 'eval' else 'test'}")
    cfg.data.max_options = ex.card.max_options
    if a.option_seed is not None and a.option_order == "sorted":
        raise ConfigError("--option-seed asks each record's options in a shuffled order; --option-order sorted "
                          "would sort them back: give one of the two")
    if a.option_order or not overrides_set(a.set, ["eval", "option_order"]):  # else --set said it
        cfg.eval.option_order = a.option_order or ex.option_order  # asked as the model was scored, unless told
    report = {}
    modes = {"off": [False], "on": [True], "vocab": [True], "copy": ["copy"], "both": [False, True],
             "all": [False, True, "copy"]}[a.constrained]
    if a.gold_out:
        n = write_jsonl(a.gold_out, (r.to_dict() for r in scored_records(sources, a.limit)))
        print(f"wrote {n} gold records to {a.gold_out}", file=sys.stderr)
    from ..hints.bias import bias_label
    from ..hints.plugin import Hints, HintSettings
    # Decoding as the model is used (extract, the Python API): the values given here, else those tuned into
    # its card (eval/tune_hint_bias.py --write-card), else the config's.
    tuned = ex.card.tuned() if ex.hints is not None else {}
    biases = a.hint_bias or [None]
    settings = [HintSettings.resolve(given_bias=b, given_floor=a.unhinted_floor, card=tuned, config=cfg.hints,
                                     has_memory=ex.hints is not None, names=("--hint-bias", "--unhinted-floor"))
                for b in biases]
    for k, given in (("hint_bias", a.hint_bias), ("unhinted_floor", a.unhinted_floor)):
        if given is None and k in tuned:
            print(f"{k} {bias_label(tuned[k])}: the model's tuned value ({a.model}/instructie.json)", file=sys.stderr)
    modes = [(c, s) for c in modes for s in settings]
    for constrained, s in modes:
        hints = Hints(ex.hints.memory, s, ex.hints.budget) if ex.hints is not None else None
        rep = evaluate_sources(ex.model, ex.tokenizer, sources, cfg, ex.templates, limit=a.limit,
                               option_seed=a.option_seed, constrained=constrained, hints=hints,
                               keep_predictions=bool(a.predictions))
        key = {False: "unconstrained", True: "constrained", "copy": "constrained_copy"}[constrained]
        key += (f"+hint{bias_label(s.bias)}" if s.bias else "") + (f"+floor{bias_label(s.floor)}" if s.floor else "")
        if a.predictions:  # several modes: one file each, named after the mode
            mark = re.sub(r"[^\w.=+,-]", "_", key)  # a dataset-keyed bias names "NER/CrossNER_AI"
            path = a.predictions if len(modes) == 1 else str(Path(a.predictions).with_suffix(f".{mark}.jsonl"))
            n = write_jsonl(path, rep.pop("predictions"))
            print(f"wrote {n} predictions to {path}", file=sys.stderr)
        report[key] = rep
        print(f"== {key} ({rep['records']} records, {rep['generation_s']} s, unsupported rate "
              f"{rep['unsupported_rate']:.4f})\n{rep['table']}")
    if a.json:
        write_json(a.json, {k: {kk: vv for kk, vv in v.items() if kk != "table"} for k, v in report.items()})
    print(_json.dumps({k: v["summary"] for k, v in report.items()}, ensure_ascii=False, indent=1))
    return 0


# ---------------------------------------------------------------- export
def cmd_export(a) -> int:
    """Records (convert output, test --gold-out) or extraction output (--with-text) -> an annotation
    tool's import file: doccano JSONL, or a Label Studio JSON task list (model output as predictions)."""
    from ..core.annotation_formats import from_rows, grouped, not_a_record, to_doccano, to_label_studio
    from ..core.io import InputError, SkipCounter, iter_jsonl, write_json, write_jsonl

    if Path(a.output).resolve() == Path(a.input).resolve():
        raise ConfigError(f"output {a.output} is the input file")
    if a.to == "doccano" and a.as_ != "auto":
        raise ConfigError("--as is for --to label-studio (doccano keeps no predictions)")
    errors = SkipCounter(a.skip_invalid)
    rows = []
    for no, row in iter_jsonl(a.input, errors):
        if not isinstance(row, dict):
            errors(InputError(a.input, no, f"expected a JSON object, got {type(row).__name__}"))
        elif problem := not_a_record(row):  # a tool's raw export: read as records, its spans are lost
            errors(InputError(a.input, no, problem))
        else:
            rows.append((no, row))
    extracted = bool(rows) and all("sentences" in r for _, r in rows)  # extraction output: one task per document
    docs = []
    for no, group in grouped(rows, extracted):
        try:
            docs.append(from_rows(group))
        except ValueError as e:
            errors(InputError(a.input, no, str(e)))
    as_predictions = extracted if a.as_ == "auto" else a.as_ == "predictions"
    with_relations = any(d.relations for d in docs)
    out = [to_doccano(d, with_relations) if a.to == "doccano" else to_label_studio(d, as_predictions) for d in docs]
    (write_jsonl if a.to == "doccano" else write_json)(a.output, out)
    unplaced = sum(d.unplaced for d in docs)
    print(f"wrote {len(out)} {'rows' if a.to == 'doccano' else 'tasks'} to {a.output}"
          + (f"; {unplaced} item(s) without offsets in the text left out" if unplaced else "")
          + (f"; {errors.count} bad row(s) skipped" if errors.count else ""), file=sys.stderr)
    if errors.count:
        print(errors.report(), file=sys.stderr)
    return 0


# ---------------------------------------------------------------- extract
def cmd_extract(a) -> int:
    from .extract import run_extract
    return run_extract(a)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="instructie", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("convert", help="dataset -> instruction JSONL (records + source + target)")
    c.add_argument("--dataset", required=True, help="adapter: duie, fewrel, ie_instructions, fin_negative, doccano, label_studio")
    c.add_argument("--input", required=True, help="data file or folder")
    c.add_argument("-o", "--output", required=True, help="the instruction JSONL to write (replaced when it exists)")
    c.add_argument("--split", default=None, choices=["train", "dev", "test"],
                   help="the split to read where the adapter has splits, else the records' tag (default: every "
                   "split, merged into one file)")
    c.add_argument("--schema", help="DuIE schema file")
    c.add_argument("--pid2name", help="FewRel pid2name.json")
    c.add_argument("--option", action="append", metavar="KEY=VALUE", help="other adapter options")
    c.add_argument("--tasks", help="main and auxiliary tasks, e.g. NER,ES,ET (default: the main task)")
    c.add_argument("--templates", help="template YAML (default: the packaged prompts/templates.yaml)")
    c.add_argument("--template", default="0", help="template index or 'random'")
    c.add_argument("--seed", type=int, default=0, help="seed of the random template and option choices "
                   "(default 0: the same file every run)")
    c.add_argument("--max-options", type=int, default=None, help="sample at most N options per instance")
    c.add_argument("--shuffle-options", action="store_true", help="list each instance's options in a "
                   "random order (by --seed) instead of the data's")
    c.add_argument("--skip-invalid", action="store_true", help="count bad records and go on")
    c.set_defaults(fn=cmd_convert)

    xp = sub.add_parser("export", help="records or extraction output -> doccano JSONL / Label Studio JSON")
    xp.add_argument("input", help="JSONL: `convert` output, `test --gold-out`, or `extract --with-text` output")
    xp.add_argument("--to", required=True, choices=["doccano", "label-studio"], help="the annotation tool's "
                    "import format: doccano JSONL or a Label Studio JSON task list")
    xp.add_argument("-o", "--output", required=True, help="the import file to write")
    xp.add_argument("--as", dest="as_", choices=["auto", "predictions", "annotations"], default="auto",
                    help="Label Studio: items as predictions (pre-annotations, with scores) or annotations "
                    "(default: predictions for extraction output)")
    xp.add_argument("--skip-invalid", action="store_true", help="count bad rows and go on")
    xp.set_defaults(fn=cmd_export)

    e = sub.add_parser("eval", help="score predictions against converted gold JSONL")
    e.add_argument("--gold", required=True, help="gold JSONL: `instructie convert` output or `instructie test "
                   "--gold-out`")
    e.add_argument("--predictions", required=True, help="JSONL: id, task and a 'prediction' answer text "
                   "or entities/relations/events/labels")
    e.add_argument("--field", default=None, help="the field holding answer text (default: prediction, "
                   "then target)")
    e.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    e.add_argument("--baseline-train", nargs="*", default=None, metavar="TRAIN_JSONL",
                   help="converted training files: score no-model baselines built from them beside the predictions")
    e.add_argument("--bootstrap", type=int, default=0, metavar="DRAWS",
                   help="with --baseline-train: a paired bootstrap of the predictions against the best baseline of "
                        "each dataset and task (95%% interval of the difference, share of draws the predictions are "
                        "strictly ahead in; 1000 is usual)")
    e.add_argument("--skip-invalid", action="store_true", help="count bad lines of either file and go on")
    e.set_defaults(fn=cmd_eval)

    for name, fn, helptext in (("train", cmd_train, "fine-tune a seq2seq model from a config"),
                               ("pretrain", cmd_pretrain, "T5 span-corruption pretraining on unlabeled text")):
        t = sub.add_parser(name, help=helptext)
        t.add_argument("--config", required=True, help="the run's YAML config (configs/quickstart.yaml is the "
                       "smallest)")
        t.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
        t.add_argument("--overwrite", action="store_true", help="start over in an output folder that holds "
                       "an earlier run's checkpoints (they are deleted)")
        t.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", help="override one config key "
                       "(repeatable)")
        t.add_argument("--output-dir", help="where the model and checkpoints go (train.output_dir)")
        t.add_argument("--max-steps", type=int, help="stop after N optimizer steps (train.max_steps)")
        t.add_argument("--max-time", type=float, help="seconds of training in this call, then checkpoint and stop (exit 3)")
        t.add_argument("--skip-invalid", action="store_true", help="count bad records of the data and go on")
        t.set_defaults(fn=fn)

    ts = sub.add_parser("test", help="score a trained model on a config's test datasets")
    ts.add_argument("--model", required=True, help="a trained model directory (or a hub id of one)")
    ts.add_argument("--config", required=True, help="the config whose data.test (or data.eval) datasets are scored")
    ts.add_argument("--split", choices=["test", "eval"], default="test", help="score data.test (default) or "
                    "data.eval")
    ts.add_argument("--constrained", choices=["off", "on", "vocab", "copy", "both", "all"], default="off",
                    help="on/vocab: only tokens of the prompt; copy: every field a contiguous copy of the text or "
                    "an option label; both: off + on; all: off + on + copy")
    ts.add_argument("--hint-bias", type=float, nargs="+", metavar="B", help="lean decoding toward the memory "
                    "hint's items by B (log-probability; several values: one report each; default: the model's "
                    "tuned value, else hints.bias)")
    ts.add_argument("--unhinted-floor", type=float, default=None, metavar="C", help="keep an item the memory hint "
                    "did not propose only with confidence >= C (default: the model's tuned value, else "
                    "hints.unhinted_floor)")
    ts.add_argument("--limit", type=int, default=None, help="at most N records per dataset")
    ts.add_argument("--option-seed", type=int, default=None,
                    help="ask each record's options in an order shuffled with this seed (default: the model's order, "
                    "--option-order)")
    ts.add_argument("--option-order", choices=["sorted", "schema"], default=None, help="the options' order in a "
                    "prompt (default: the model's, eval.option_order when it was trained; schema for models saved "
                    "before that)")
    ts.add_argument("--device", default=None, help="cuda, cpu (default: cuda when available)")
    ts.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", help="override one config key "
                    "(repeatable)")
    ts.add_argument("--json", metavar="FILE", help="also write the reports as JSON to FILE")
    ts.add_argument("--predictions", metavar="JSONL", help="write each record's answer and scored items (with "
                    "offsets); `instructie eval --gold` on the --gold-out file scores them the same")
    ts.add_argument("--gold-out", metavar="JSONL", help="write the scored records (converted format)")
    ts.add_argument("--skip-invalid", action="store_true", help="count bad records of the data and go on")
    ts.set_defaults(fn=cmd_test)

    x = sub.add_parser("extract", help="extract entities/relations/events from text files")
    x.add_argument("input", help=".txt (one document per file, or per line with --per-line), .jsonl, or - for stdin")
    x.add_argument("--model", required=True, help="a trained model directory (or a hub id of one)")
    x.add_argument("-o", "--output", help="JSONL output, one line per document, written as each is done "
                   "(default stdout)")
    x.add_argument("--tasks", help="ner,re,ee,... (default: the model's tasks)")
    x.add_argument("--labels", help="entity types / event types, comma-separated (zero-shot)")
    x.add_argument("--relations", help="relation types, comma-separated")
    x.add_argument("--schema", help="YAML/JSON schema file: {ner: [...], re: [...], ee: {type: [roles]}}")
    x.add_argument("--per-line", action="store_true", help=".txt: one document per line")
    x.add_argument("--text-field", default="text", help=".jsonl: the field with the text")
    x.add_argument("--jsonl", action="store_true", help="read the input as JSON lines whatever its name (stdin, "
                   "a .txt that holds JSONL); a .jsonl or .json file is read so anyway")
    x.add_argument("--language", choices=["zh", "en"], help="zh or en (default: detected)")
    x.add_argument("--device", default=None, help="cuda, cpu (default: cuda when available)")
    x.add_argument("--batch-size", type=int, default=64, help="prompts generated together (default 64)")
    x.add_argument("--chunk-size", type=int, default=None, metavar="N", help="documents planned and generated "
                   "together; their lines are written when the chunk is done, so an interruption loses at most "
                   "one chunk (default: 8 on a CPU, where each prompt is slow; 256 on a GPU, where big chunks "
                   "keep batches full)")
    x.add_argument("--num-beams", type=int, default=1, help="beam search width (default 1: greedy)")
    x.add_argument("--max-new-tokens", type=int, default=None, help="default: the model's max_target_length")
    x.add_argument("--min-confidence", type=float, default=0.0, help="drop items whose confidence (0 to 1) is "
                   "below this (default 0: keep all)")
    x.add_argument("--keep-unsupported", action="store_true", help="keep spans not found in the text, marked")
    x.add_argument("--constrained", nargs="?", const="vocab", choices=["vocab", "copy"], default=None,
                   help="decode only tokens of the input and the options (vocab, the default of a bare "
                   "--constrained) or only contiguous copies of the text and whole option labels (copy)")
    x.add_argument("--hint-bias", type=float, default=None, metavar="B", help="lean decoding toward the memory "
                   "hint's items by B (default: the model's tuned value, else 0)")
    x.add_argument("--unhinted-floor", type=float, default=None, metavar="C", help="keep an item the memory hint "
                   "did not propose only with confidence >= C (default: the model's tuned value, else 0)")
    x.add_argument("--option-order", choices=["sorted", "schema"], default=None, help="the labels' order in a "
                   "prompt: sorted (answers do not depend on the order you list them in) or as listed (default: "
                   "the model's, eval.option_order when it was trained; schema for models saved before that)")
    x.add_argument("--memory", nargs="+", metavar="JSONL", help="labeled records (`instructie convert` output) "
                   "added to the memory hints of a model trained with hints.memory (your gazetteer)")
    x.add_argument("--with-text", action="store_true", help="put each document's text in its row (for "
                   "`instructie export` to an annotation tool)")
    x.add_argument("--html", help="also write a displaCy page")
    x.add_argument("--resume", action="store_true", help="continue an interrupted run's -o file: documents "
                   "already in it (by id and input line) are not done again")
    x.add_argument("--skip-invalid", action="store_true", help="skip bad input lines, and texts with lone "
                   "surrogates or control characters (default: those are repaired), counting them")
    x.add_argument("--debug-stats", action="store_true", help="put each document's internal counters (prompts "
                   "cut, answer parts dropped, ...) in its row; their totals are always printed at the end")
    x.set_defaults(fn=cmd_extract)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (InputError, ConfigError) as e:
        print(f"instructie {args.command}: error: {e}", file=sys.stderr)
        return 2
    except TrainingError as e:  # the run started and cannot go on; its checkpoints are kept
        print(f"instructie {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"instructie {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
