"""`instructie convert` / `instructie eval` end to end, in-process through ``cli.main``.

Bad input (tests/fixtures/bad_inputs/, each derived from the real fixtures with one
defect) must end with exit code 2 and one clear line naming the file, the line/record
and the problem, without a traceback, and without writing (or touching) the output;
``--skip-invalid`` must count the bad record and keep every good one.
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from instructie.cli.main import main

from helpers import read_jsonl as rows, run_cli as run

FIX = Path(__file__).resolve().parents[1] / "fixtures"
BAD = FIX / "bad_inputs"
DUIE = ["--input", FIX / "duie/duie_train_excerpt.json", "--schema", FIX / "duie/duie_schema.json"]
FEWREL = ["--input", FIX / "fewrel/val_wiki_excerpt.json", "--pid2name", FIX / "fewrel/pid2name_excerpt.json"]
IEI = FIX / "ie_instructions"
FIN = FIX / "fin_negative"


def convert(capsys, dataset: str, out: Path, *args) -> tuple[int, str]:
    rc, _, err = run(capsys, "convert", "--dataset", dataset, *args, "-o", out)
    return rc, err


def write_jsonl(path: Path, items) -> Path:
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in items), encoding="utf-8")
    return path


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    """Files in ``folder`` other than ``keep`` (e.g. an atomic write's temporary file)."""
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# ---------------------------------------------------------------- bad input: convert
# (id, dataset, input, extra args, location in the message, problem in the message,
#  ids (or DuIE lines) of the records that must survive --skip-invalid)
DUIE_SCHEMA = ["--schema", FIX / "duie/duie_schema.json"]
FIN_IDS = [line.split(",", 1)[0] for line in
           (BAD / "fin_negative_bad_row.csv").read_text(encoding="utf-8-sig").splitlines()[1:]]
BAD_CASES = [
    ("duie-malformed-json", "duie", BAD / "duie_malformed_json.json", DUIE_SCHEMA,
     "duie_malformed_json.json:3:", "malformed JSON", {1, 2, 4, 5, 6}),
    ("duie-spo-without-predicate", "duie", BAD / "duie_missing_predicate.json", DUIE_SCHEMA,
     "duie_missing_predicate.json:4:", "lacks 'predicate'", {1, 2, 3, 5, 6}),
    ("duie-non-utf8", "duie", BAD / "duie_non_utf8.json", DUIE_SCHEMA,
     "duie_non_utf8.json:5:", "not valid UTF-8", {1, 2, 3, 4, 6}),
    ("iei-entity-without-type", "ie_instructions", BAD / "ie_instructions/NER/MissingType", [],
     "MissingType/train.json (record 1)", "missing field 'type'",
     {f"NER/MissingType/train/{i}" for i in (0, 2, 3, 4)}),
    ("iei-pos-outside-text", "ie_instructions", BAD / "ie_instructions/NER/PosOutside", [],
     "PosOutside/train.json (record 2)", "outside the sentence",
     {f"NER/PosOutside/train/{i}" for i in (0, 1, 3, 4)}),
    ("iei-unknown-label", "ie_instructions", BAD / "ie_instructions/NER/UnknownLabel", [],
     "UnknownLabel/train.json (record 3)", "unknown label 'animal'",
     {f"NER/UnknownLabel/train/{i}" for i in (0, 1, 2, 4)}),
    ("fin-negative-bad-row", "fin_negative", BAD / "fin_negative_bad_row.csv", [],
     "fin_negative_bad_row.csv:4:", "negative must be 0 or 1", set(FIN_IDS[:2] + FIN_IDS[3:])),
]
BAD_IDS = [c[0] for c in BAD_CASES]


def assert_clean_error(err: str, command: str, *needles: str) -> None:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(f"instructie {command}: error: ")]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.mark.parametrize("case", BAD_CASES, ids=BAD_IDS)
def test_bad_input_exits_2_and_writes_nothing(case, tmp_path, capsys):
    _, dataset, path, extra, where, problem, _ = case
    out = tmp_path / "out.jsonl"
    rc, err = convert(capsys, dataset, out, "--input", path, *extra)
    assert rc == 2
    assert_clean_error(err, "convert", str(path), where, problem)
    assert not out.exists()
    assert leftovers(tmp_path, set()) == []  # no temporary file left behind either


@pytest.mark.parametrize("case", BAD_CASES, ids=BAD_IDS)
def test_bad_input_leaves_previous_output_intact(case, tmp_path, capsys):
    _, dataset, path, extra, where, problem, _ = case
    out = tmp_path / "out.jsonl"
    out.write_text("previous output\n", encoding="utf-8")
    rc, err = convert(capsys, dataset, out, "--input", path, *extra)
    assert rc == 2
    assert_clean_error(err, "convert", where, problem)
    assert out.read_text(encoding="utf-8") == "previous output\n"
    assert leftovers(tmp_path, {"out.jsonl"}) == []


@pytest.mark.parametrize("case", BAD_CASES, ids=BAD_IDS)
def test_skip_invalid_counts_and_keeps_the_good_records(case, tmp_path, capsys):
    _, dataset, path, extra, where, problem, good = case
    out = tmp_path / "out.jsonl"
    out.write_text("previous output\n", encoding="utf-8")
    rc, err = convert(capsys, dataset, out, "--input", path, *extra, "--skip-invalid")
    assert rc == 0, err
    assert "Traceback" not in err
    assert "skipped 1 invalid record(s)" in err
    assert where in err and problem in err  # the report says which record and why
    got = rows(out)
    kept = {r["meta"]["line"] for r in got} if dataset == "duie" else {r["id"] for r in got}
    assert kept == good
    assert f"wrote {len(good)} instances" in err
    assert leftovers(tmp_path, {"out.jsonl"}) == []


def test_skip_invalid_over_a_whole_tree_reports_every_bad_record(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    rc, err = convert(capsys, "ie_instructions", out, "--input", BAD / "ie_instructions", "--skip-invalid")
    assert rc == 0, err
    assert "skipped 3 invalid record(s)" in err
    for name in ("MissingType", "PosOutside", "UnknownLabel"):
        assert f"{name}/train.json (record" in err
    assert Counter(r["dataset"] for r in rows(out)) == {"MissingType": 4, "PosOutside": 4, "UnknownLabel": 4}


def test_wrong_csv_header_is_fatal_even_with_skip_invalid(tmp_path, capsys):
    path = BAD / "fin_negative_bad_header.csv"
    out = tmp_path / "out.jsonl"
    out.write_text("previous output\n", encoding="utf-8")
    for extra in ([], ["--skip-invalid"]):  # no record of the file can be read: nothing to keep
        rc, err = convert(capsys, "fin_negative", out, "--input", path, *extra)
        assert rc == 2
        assert_clean_error(err, "convert", f"{path}:1:", "unexpected CSV header", "'content'")
        assert out.read_text(encoding="utf-8") == "previous output\n"
    assert leftovers(tmp_path, {"out.jsonl"}) == []


def test_non_utf8_csv_names_file_and_line(tmp_path, capsys):
    src = (FIN / "Test_Data.csv").read_bytes().splitlines(keepends=True)
    src[3] = src[3][:10] + b"\xff\xfe" + src[3][10:]
    bad = tmp_path / "Test_bad.csv"
    bad.write_bytes(b"".join(src))
    rc, err = convert(capsys, "fin_negative", tmp_path / "out.jsonl", "--input", bad)
    assert rc == 2
    assert_clean_error(err, "convert", f"{bad}:4:", "not valid UTF-8")
    assert not (tmp_path / "out.jsonl").exists()


def test_bad_input_through_the_installed_command(tmp_path):
    """The real entry point: exit status 2 and no traceback, not just in-process."""
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-m", "instructie", "convert", "--dataset", "duie",
                           "--input", str(BAD / "duie_non_utf8.json"), *map(str, DUIE_SCHEMA), "-o", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "duie_non_utf8.json:5: not valid UTF-8" in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--dataset", "nope", "--input", "x"], "unknown dataset adapter 'nope'"),
    (["--dataset", "duie", "--input", FIX / "duie/duie_train_excerpt.json"], "option 'schema'"),
    (["--dataset", "fewrel", *FEWREL, "--template", "abc"], "--template"),
    (["--dataset", "fewrel", *FEWREL, "--tasks", "RC,FOO"], "unknown task(s) FOO"),
    (["--dataset", "fewrel", *FEWREL, "--templates", "no/such/templates.yaml"], "template file not found"),
    (["--dataset", "duie", *DUIE, "--option", "colour=red"], "unknown option"),
    (["--dataset", "ie_instructions", "--input", FIX / "duie"], "not an IE INSTRUCTIONS folder"),
    (["--dataset", "ie_instructions", "--input", FIX / "no_such_folder"], "not found"),
])
def test_bad_usage_is_a_clean_error(args, message, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    rc, _, err = run(capsys, "convert", *args, "-o", out)
    assert rc == 2
    assert_clean_error(err, "convert", message)
    assert not out.exists()


def test_output_that_is_a_directory_is_refused(tmp_path, capsys):
    rc, _, err = run(capsys, "convert", "--dataset", "duie", *DUIE, "-o", tmp_path)
    assert rc == 2
    assert_clean_error(err, "convert", "directory")
    assert leftovers(tmp_path, set()) == []
    assert not list(tmp_path.parent.glob(f".{tmp_path.name}.*.tmp"))  # no temporary file beside it


def test_output_that_is_the_input_is_refused(tmp_path, capsys):
    src = tmp_path / "train.json"
    src.write_bytes((FIX / "duie/duie_train_excerpt.json").read_bytes())
    before = src.read_bytes()
    rc, _, err = run(capsys, "convert", "--dataset", "duie", "--input", src, *DUIE_SCHEMA, "-o", src)
    assert rc == 2
    assert_clean_error(err, "convert", "input")
    assert src.read_bytes() == before


# ---------------------------------------------------------------- convert: the four datasets
@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("converted")
    runs = {
        "duie": ["--dataset", "duie", *DUIE],
        "fewrel": ["--dataset", "fewrel", *FEWREL],
        "ie_instructions": ["--dataset", "ie_instructions", "--input", IEI, "--tasks", "NER,ES,ET,EE,EET,EEA"],
        "fin_negative": ["--dataset", "fin_negative", "--input", FIN],
    }
    out = {}
    for name, args in runs.items():
        out[name] = d / f"{name}.jsonl"
        assert main(["convert"] + [str(a) for a in args] + ["-o", str(out[name])]) == 0, name
    return out


def test_convert_four_datasets(converted):
    expect = {  # (dataset, task) -> instances
        "duie": {("duie", "RE"): 28},
        "fewrel": {("fewrel", "RC"): 15},
        "fin_negative": {("fin_negative", "NEG"): 40},
    }
    for name, counts in expect.items():
        got = rows(converted[name])
        assert Counter((r["dataset"], r["task"]) for r in got) == counts, name
    for path in converted.values():
        got = rows(path)
        ids = [r["instance_id"] for r in got]
        assert len(ids) == len(set(ids)), path  # every instance can be told apart by eval
        for r in got:
            assert r["source"] and isinstance(r["target"], str)
            for e in r["entities"]:
                if e["start"] is not None:
                    assert r["text"][e["start"]:e["end"]] == e["text"]


def test_tasks_option_adds_auxiliary_instances(converted, tmp_path, capsys):
    plain = tmp_path / "plain.jsonl"
    rc, err = convert(capsys, "ie_instructions", plain, "--input", IEI)
    assert rc == 0, err
    assert Counter(r["task"] for r in rows(plain)) == {"NER": 36, "EE": 30}

    aux = tmp_path / "aux.jsonl"
    rc, err = convert(capsys, "ie_instructions", aux, "--input", IEI, "--tasks", "ner, es ,ET")
    assert rc == 0, err
    got = rows(aux)
    by_task = Counter(r["task"] for r in got)
    ner = [r for r in got if r["task"] == "NER"]
    assert by_task["NER"] == by_task["ES"] == 36
    assert by_task["ET"] == sum(1 for r in ner if r["entities"])  # ET only where there are entities
    assert set(by_task) == {"NER", "ES", "ET"}  # EE records are not asked for
    assert "CoNLL2003\tES\t36 instances" in err
    # an aux instance shares the record but asks a different question
    n0, = [r for r in got if r["instance_id"] == "NER/CoNLL2003/train/0#NER"]
    e0, = [r for r in got if r["instance_id"] == "NER/CoNLL2003/train/0#ES"]
    t0, = [r for r in got if r["instance_id"] == "NER/CoNLL2003/train/0#ET"]
    assert n0["id"] == e0["id"] == t0["id"] and n0["entities"] == e0["entities"]
    assert len({n0["source"], e0["source"], t0["source"]}) == 3
    assert "|" in n0["target"] and "|" not in e0["target"]  # ES answers bare spans

    ee = Counter(r["task"] for r in rows(converted["ie_instructions"]) if r["dataset"] == "DuEE")
    n_events = sum(len(r["events"]) for r in rows(converted["ie_instructions"]) if r["task"] == "EE")
    assert ee["EE"] == ee["EET"] == 30 and ee["EEA"] == n_events > 0


@pytest.mark.parametrize("sub, extra, expect", [
    ("", [], {("CoNLL2003", "NER", "train"): 12, ("CoNLL2003", "NER", "dev"): 12, ("CoNLL2003", "NER", "test"): 12,
              ("DuEE", "EE", "train"): 10, ("DuEE", "EE", "dev"): 10, ("DuEE", "EE", "test"): 10}),
    ("", ["--split", "dev"], {("CoNLL2003", "NER", "dev"): 12, ("DuEE", "EE", "dev"): 10}),
    ("NER", [], {("CoNLL2003", "NER", s): 12 for s in ("train", "dev", "test")}),
    ("EE/DuEE", [], {("DuEE", "EE", s): 10 for s in ("train", "dev", "test")}),
    ("EE/DuEE", ["--split", "test"], {("DuEE", "EE", "test"): 10}),
    ("NER/CoNLL2003/dev.json", [], {("CoNLL2003", "NER", "dev"): 12}),
    ("", ["--option", "datasets=[DuEE]"], {("DuEE", "EE", s): 10 for s in ("train", "dev", "test")}),
], ids=["tree", "tree-dev", "task-folder", "dataset-folder", "dataset-folder-test", "split-file", "datasets-option"])
def test_ie_instructions_path_variants(sub, extra, expect, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    rc, err = convert(capsys, "ie_instructions", out, "--input", IEI / sub if sub else IEI, *extra)
    assert rc == 0, err
    got = rows(out)
    assert Counter((r["dataset"], r["task"], r["split"]) for r in got) == expect
    assert all(r["id"].startswith(f"{r['task']}/{r['dataset']}/{r['split']}/") for r in got)


def test_convert_replaces_previous_output_only_on_success(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    out.write_text("previous output\n", encoding="utf-8")
    rc, err = convert(capsys, "fewrel", out, *FEWREL)
    assert rc == 0 and "wrote 15 instances" in err
    assert len(rows(out)) == 15
    assert leftovers(tmp_path, {"out.jsonl"}) == []


# ---------------------------------------------------------------- eval
def eval_json(capsys, tmp_path, gold: Path, preds: Path, *extra) -> tuple[dict, str, str]:
    rep = tmp_path / "report.json"
    rc, out, err = run(capsys, "eval", "--gold", gold, "--predictions", preds, "--json", rep, *extra)
    assert rc == 0, err
    return json.loads(rep.read_text(encoding="utf-8")), out, err


def metrics(report: dict, dataset: str, task: str) -> dict:
    s, = [s for s in report["scores"] if s["dataset"] == dataset and s["task"] == task]
    return s["metrics"]


@pytest.mark.parametrize("name, summary_keys", [
    ("duie", {"duie/RE/triple_f1"}),
    ("fewrel", {"fewrel/RC/accuracy"}),
    ("ie_instructions", {"CoNLL2003/NER/entity_f1", "CoNLL2003/ES/span_f1", "CoNLL2003/ET/entity_f1",
                         "DuEE/EE/trigger_cls_f1", "DuEE/EE/arg_cls_f1", "DuEE/EET/trigger_cls_f1",
                         "DuEE/EEA/arg_cls_f1"}),
    ("fin_negative", {"fin_negative/NEG/competition"}),
])
def test_eval_gold_against_itself_is_perfect(name, summary_keys, converted, tmp_path, capsys):
    gold = converted[name]
    report, out, _ = eval_json(capsys, tmp_path, gold, gold, "--field", "target")
    assert report["records"] == len(rows(gold))
    assert report["missing_predictions"] == 0 and report["skipped_invalid"] == 0
    assert set(report["summary"]) == summary_keys
    assert all(v == 1.0 for v in report["summary"].values()), report["summary"]
    for s in report["scores"]:
        for k, v in s["metrics"].items():
            if k.endswith("_f1"):
                assert v == 1.0, (s["dataset"], s["task"], k)
    # the printed table: per dataset, task, metric and label
    assert out.splitlines()[0].split() == ["dataset", "task", "metric", "label", "P", "R", "F1", "support"]


def test_eval_table_has_per_label_rows(converted, tmp_path, capsys):
    gold = converted["ie_instructions"]
    report, out, _ = eval_json(capsys, tmp_path, gold, gold, "--field", "target")
    table = [line.split() for line in out.splitlines()]
    for label in ("person", "location", "organization", "miscellaneous"):
        assert ["CoNLL2003", "NER", "entity", label] == [c for c in table if c[:4] == ["CoNLL2003", "NER", "entity", label]][0][:4]
    ner = [s for s in report["scores"] if s["task"] == "NER"][0]
    assert set(ner["per_label"]["entity"]) == {"person", "location", "organization", "miscellaneous"}
    assert sum(v["support"] for v in ner["per_label"]["entity"].values()) == ner["metrics"]["entity_support"]


def test_eval_wrong_answers_score_below_one(converted, tmp_path, capsys):
    gold = rows(converted["fewrel"])
    preds = []
    for i, r in enumerate(gold):
        if i % 3 == 0:
            ans = r["target"]  # right
        elif i % 3 == 1:
            ans = next(o for o in r["options"] if o != r["target"])  # a wrong relation
        else:
            ans = "garbage !! | ??"  # not an answer at all
        preds.append({"instance_id": r["instance_id"], "prediction": ans})
    p = write_jsonl(tmp_path / "preds.jsonl", preds)
    report, out, _ = eval_json(capsys, tmp_path, converted["fewrel"], p)
    m = metrics(report, "fewrel", "RC")
    assert (m["label_tp"], m["label_fp"], m["label_fn"]) == (5, 5, 10)
    assert m["accuracy"] == pytest.approx(5 / 15)
    assert 0 < report["summary"]["fewrel/RC/accuracy"] < 1
    assert report["scores"][0]["dropped"]  # the garbage is counted, not silently ignored
    assert report["missing_predictions"] == 0


def test_eval_ner_counts(converted, tmp_path, capsys):
    gold = [r for r in rows(converted["ie_instructions"]) if r["task"] == "NER"]
    preds, tp, fp, fn = [], 0, 0, 0
    for i, r in enumerate(gold):
        ents = r["entities"]
        if i % 3 == 0 and len(ents) >= 2:  # first entity with a wrong type
            wrong = next(lab for lab in r["options"] if lab != ents[0]["label"])
            ans = "; ".join(f"{e['text']} | {wrong if j == 0 else e['label']}" for j, e in enumerate(ents))
            tp, fp, fn = tp + len(ents) - 1, fp + 1, fn + 1
        elif i % 3 == 0:
            ans = r["target"]
            tp += len(ents)
        elif i % 3 == 1:
            ans = "None"
            fn += len(ents)
        else:
            ans = "@@@ total garbage ;; | |"
            fn += len(ents)
        preds.append({"id": r["id"], "task": "NER", "prediction": ans})
    p = write_jsonl(tmp_path / "preds.jsonl", preds)
    report, _, _ = eval_json(capsys, tmp_path, converted["ie_instructions"], p)
    m = metrics(report, "CoNLL2003", "NER")
    assert (m["entity_tp"], m["entity_fp"], m["entity_fn"]) == (tp, fp, fn)
    assert 0 < m["entity_f1"] < 1
    # the ES/ET/EE... gold records got no prediction: reported, scored as empty
    assert report["missing_predictions"] == len(rows(converted["ie_instructions"])) - len(gold)


def test_eval_matches_by_id_and_task(converted, tmp_path, capsys):
    """NER, ES and ET instances share a record id: a row naming id and task must
    score its own task, not whichever task came last."""
    gold = rows(converted["ie_instructions"])
    p = write_jsonl(tmp_path / "preds.jsonl",
                    [{"id": r["id"], "task": r["task"], "prediction": r["target"]} for r in gold])
    report, _, _ = eval_json(capsys, tmp_path, converted["ie_instructions"], p)
    assert report["missing_predictions"] == 0
    assert all(v == 1.0 for v in report["summary"].values()), report["summary"]


def test_eval_structured_predictions(converted, tmp_path, capsys):
    gold = rows(converted["duie"])
    p = write_jsonl(tmp_path / "preds.jsonl",
                    [{"instance_id": r["instance_id"], "relations": r["relations"]} for r in gold])
    report, _, _ = eval_json(capsys, tmp_path, converted["duie"], p)
    assert report["summary"]["duie/RE/triple_f1"] == 1.0


@pytest.mark.parametrize("item, problem", [
    ({"entities": [{"text": "x"}]}, "entities[0]: missing field 'label'"),
    ({"entities": "Japan"}, "entities: expected a list of objects, got str"),
    ({"entities": [{"label": "x", "text": "y", "score": 0.5}]}, "entities[0]: unknown field 'score'"),
    ({"entities": [{"label": 5, "text": "y"}]}, "entities[0].label: expected a string, got int"),
    ({"relations": [{"head": "x", "label": "r", "tail": {"label": "a", "text": "b"}}]},
     "relations[0].head: expected an object, got str"),
    ({"relations": [{"head": {"label": "a", "text": "b"}, "tail": {"label": "a", "text": "b"}}]},
     "relations[0]: missing field 'label'"),
    ({"events": [{"type": "t", "trigger": {"label": "t", "text": "b"}, "arguments": [{"text": "x"}]}]},
     "events[0].arguments[0]: missing field 'role'"),
])
def test_eval_bad_structured_prediction_says_what_is_wrong_in_the_datas_terms(item, problem, converted, tmp_path,
                                                                              capsys):
    """Not Python's words ("Entity.__init__() missing 1 required positional argument", "argument after **
    must be a mapping"): the item's place in the line and what it lacks."""
    gold = rows(converted["duie"])
    p = write_jsonl(tmp_path / "preds.jsonl", [{"instance_id": r["instance_id"], "relations": r["relations"]}
                                               for r in gold[:2]] + [{"instance_id": gold[2]["instance_id"], **item}])
    rc, _, err = run(capsys, "eval", "--gold", converted["duie"], "--predictions", p)
    assert rc == 2
    assert_clean_error(err, "eval", f"{p}:3: bad prediction: {problem}")
    assert "__init__" not in err and "after **" not in err


def test_eval_bad_gold_item_says_what_is_wrong_in_the_datas_terms(tmp_path, capsys):
    gold = write_jsonl(tmp_path / "gold.jsonl", [{"id": "1", "dataset": "d", "task": "NER", "text": "abc",
                                                  "entities": [{"text": "a", "start": 0, "end": 1}]}])
    rc, _, err = run(capsys, "eval", "--gold", gold, "--predictions", gold)
    assert rc == 2
    assert_clean_error(err, "eval", f"{gold}:1: not a converted record: entities[0]: missing field 'label'")
    for extra, problem in (({"roles": ["agent"]}, "roles: expected an object of event type -> list of role names, "
                                                   "got list"),
                           ({"options": "person"}, "options: expected a list of label names, got str"),
                           ({"roles": {"Attack": "attacker"}}, "roles.Attack: expected a list of label names")):
        bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "1", "dataset": "d", "task": "NER", "text": "abc", **extra}])
        rc, _, err = run(capsys, "eval", "--gold", bad, "--predictions", bad)
        assert rc == 2 and f"{bad}:1: not a converted record: {problem}" in err and "Traceback" not in err, err


def test_eval_reports_missing_predictions(converted, tmp_path, capsys):
    gold = rows(converted["duie"])
    drop = {gold[0]["instance_id"], gold[5]["instance_id"], gold[-1]["instance_id"]}
    p = write_jsonl(tmp_path / "preds.jsonl", [{"instance_id": r["instance_id"], "prediction": r["target"]}
                                                for r in gold if r["instance_id"] not in drop]
                    + [{"id": "no-such-record", "prediction": "None"}])
    report, out, _ = eval_json(capsys, tmp_path, converted["duie"], p)
    assert report["missing_predictions"] == 3
    assert set(report["missing_ids"]) == drop
    assert report["unmatched_predictions"] == 1
    assert "3 gold record(s) had no prediction" in out
    assert all(i in out for i in drop)
    assert "1 prediction(s) matched no gold record" in out
    m = metrics(report, "duie", "RE")
    n_missing = sum(len(r["relations"]) for r in gold if r["instance_id"] in drop)
    assert m["triple_precision"] == 1.0 and m["triple_fn"] == n_missing > 0
    assert m["triple_recall"] < 1


def test_eval_refuses_predictions_that_match_nothing_and_an_empty_gold(converted, tmp_path, capsys):
    """A predictions file that is empty or matches no gold record scored every record as empty: a
    table of zeros, exit 0. One line naming the file instead, with --skip-invalid too."""
    gold = converted["fewrel"]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    other = write_jsonl(tmp_path / "other.jsonl", [{"id": "no-such-record", "prediction": "None"}])
    for preds, problem in ((empty, f"{empty}: empty"), (other, f"{other}: no prediction matches a gold record")):
        for extra in ([], ["--skip-invalid"]):
            rc, out, err = run(capsys, "eval", "--gold", gold, "--predictions", preds, *extra)
            assert rc == 2 and out == ""
            assert_clean_error(err, "eval", problem)
    rc, _, err = run(capsys, "eval", "--gold", empty, "--predictions", gold, "--field", "target")
    assert rc == 2
    assert_clean_error(err, "eval", f"{empty}: empty")


def _preds_with_bad_line(gold: Path, tmp_path: Path, bad: bytes, at: int = 2) -> Path:
    lines = [json.dumps({"instance_id": r["instance_id"], "prediction": r["target"]}, ensure_ascii=False).encode()
             for r in rows(gold)]
    lines.insert(at, bad)
    p = tmp_path / "preds.jsonl"
    p.write_bytes(b"\n".join(lines) + b"\n")
    return p


@pytest.mark.parametrize("bad, problem", [
    (b'{"instance_id": "fewrel-x-P177-0#RC", "prediction": ', "malformed JSON"),
    (b'{"prediction": "spouse"}', "no 'id'"),
    (b'{"instance_id": "fewrel-x-P26-1#RC", "prediction": "sp\xffouse"}', "not valid UTF-8"),
    (b'["fewrel-x-P177-0#RC", "crosses"]', "not a JSON object"),
    (b'{"instance_id": "fewrel-x-P177-0#RC", "predicton": "crosses"}', "duplicate prediction"),
])
def test_eval_malformed_predictions_exit_2_with_file_and_line(bad, problem, converted, tmp_path, capsys):
    p = _preds_with_bad_line(converted["fewrel"], tmp_path, bad)
    rep = tmp_path / "report.json"
    rc, out, err = run(capsys, "eval", "--gold", converted["fewrel"], "--predictions", p, "--json", rep)
    assert rc == 2
    assert_clean_error(err, "eval", f"{p}:3:", problem)
    assert not rep.exists()


def test_eval_prediction_without_answer_is_an_error(converted, tmp_path, capsys):
    gold = rows(converted["fewrel"])
    p = write_jsonl(tmp_path / "preds.jsonl", [{"instance_id": gold[0]["instance_id"], "predicton": "crosses"}])
    rc, _, err = run(capsys, "eval", "--gold", converted["fewrel"], "--predictions", p)
    assert rc == 2
    assert_clean_error(err, "eval", f"{p}:1:", "no answer")


def test_eval_skip_invalid_predictions(converted, tmp_path, capsys):
    p = _preds_with_bad_line(converted["fewrel"], tmp_path, b"{not json")
    report, out, err = eval_json(capsys, tmp_path, converted["fewrel"], p, "--skip-invalid")
    assert report["skipped_invalid"] == 1 and report["missing_predictions"] == 0
    assert "skipped 1 invalid record(s)" in out and f"{p}:3:" in out
    assert report["summary"]["fewrel/RC/accuracy"] == 1.0


def test_eval_bad_gold_file(converted, tmp_path, capsys):
    gold = tmp_path / "gold.jsonl"
    good = converted["fewrel"].read_text(encoding="utf-8").splitlines()
    gold.write_text("\n".join(good[:4] + ['{"id": "x", "text": "no task here"}'] + good[4:]) + "\n", encoding="utf-8")
    rc, _, err = run(capsys, "eval", "--gold", gold, "--predictions", converted["fewrel"])
    assert rc == 2
    assert_clean_error(err, "eval", f"{gold}:5:", "not a converted record")
    rc, _, err = run(capsys, "eval", "--gold", tmp_path / "missing.jsonl", "--predictions", converted["fewrel"])
    assert rc == 2
    assert_clean_error(err, "eval", "missing.jsonl", "not found")


def test_eval_reads_gzipped_jsonl(converted, tmp_path, capsys):
    """Runs keep their prediction files gzipped: eval reads .jsonl.gz as it reads .jsonl; a file that only
    looks gzipped is a clean error naming it."""
    import gzip
    gold = converted["fewrel"]
    packed = tmp_path / "preds.jsonl.gz"
    packed.write_bytes(gzip.compress(gold.read_bytes()))
    plain, _, _ = eval_json(capsys, tmp_path, gold, gold, "--field", "target")
    report, _, _ = eval_json(capsys, tmp_path, gold, packed, "--field", "target")
    assert report["summary"] == plain["summary"] and report["records"] == plain["records"] > 0
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(packed.read_bytes()[:40])
    for bad in (cut, write_jsonl(tmp_path / "not_gzip.jsonl.gz", [{"id": "x"}])):
        rc, _, err = run(capsys, "eval", "--gold", gold, "--predictions", bad, "--field", "target")
        assert rc == 2
        assert_clean_error(err, "eval", bad.name, "not a readable gzip file")


def test_eval_json_leaves_previous_report_on_error(converted, tmp_path, capsys):
    rep = tmp_path / "report.json"
    rep.write_text("{}\n", encoding="utf-8")
    p = _preds_with_bad_line(converted["fewrel"], tmp_path, b"{not json")
    rc, _, _ = run(capsys, "eval", "--gold", converted["fewrel"], "--predictions", p, "--json", rep)
    assert rc == 2 and rep.read_text(encoding="utf-8") == "{}\n"
    assert leftovers(tmp_path, {"report.json", "preds.jsonl"}) == []


def test_eval_rejects_gold_with_unknown_task_or_bad_offsets(tmp_path, capsys):
    """One clear line naming file:line, exit 2, no traceback."""
    import json as _json

    from instructie.cli.main import main as _main

    cases = {
        "task": {"id": "1", "dataset": "d", "task": "ner", "text": "abc"},
        "outside": {"id": "1", "dataset": "d", "task": "NER", "text": "abc",
                    "entities": [{"label": "x", "text": "zz", "start": 50, "end": 52}]},
        "mismatch": {"id": "1", "dataset": "d", "task": "NER", "text": "abc",
                     "entities": [{"label": "x", "text": "zz", "start": 0, "end": 2}]},
    }
    for name, row in cases.items():
        gold = tmp_path / f"{name}.jsonl"
        gold.write_text(_json.dumps(row) + "\n")
        assert _main(["eval", "--gold", str(gold), "--predictions", str(gold), "--field", "text"]) == 2
        err = capsys.readouterr().err
        assert f"{gold}:1" in err and "Traceback" not in err, err


# ---------------------------------------------------------------- prediction rows round-trip
def test_prediction_rows_rescore_to_the_same_report(tmp_path, capsys):
    """`instructie test --predictions` rows hold the scored items: `instructie eval` on them gives
    the report scored in memory, for right, wrong and unsupported (not-in-text) answers alike."""
    from instructie.evaluation.evaluate import evaluate_files, prediction_rows
    from instructie.evaluation.gold import read_gold
    from instructie.core.io import SkipCounter
    from instructie.prompts.offsets import ground_for
    from instructie.evaluation.scoring import Prediction, score_all
    from instructie.prompts.targets import parse

    gold = tmp_path / "gold.jsonl"
    parts = []
    for i, (dataset, args) in enumerate((("ie_instructions", ["--input", IEI, "--split", "test"]), ("duie", DUIE),
                                         ("fewrel", FEWREL), ("fin_negative", ["--input", FIN / "Train_Data.csv"]))):
        parts.append(tmp_path / f"{i}.jsonl")
        assert convert(capsys, dataset, parts[-1], *args)[0] == 0
    gold.write_text("".join(p.read_text(encoding="utf-8") for p in parts), encoding="utf-8")
    pairs = read_gold(str(gold), SkipCounter(False))
    records = [r for r, _ in pairs]
    # every third record answered with its neighbour's target: wrong and unsupported items
    answers = [row["target"] if k % 3 else pairs[(k + 1) % len(pairs)][1]["target"] for k, (_, row) in enumerate(pairs)]
    preds = []
    for r, a in zip(records, answers):
        res = parse(a, r.task, options=r.options or None, roles=r.roles or None)
        preds.append(Prediction.from_grounded(ground_for(r, res), res.dropped))
    assert sum(p.n_unsupported for p in preds) > 0 and {r.task for r in records} >= {"NER", "RE", "EE", "RC", "NEG"}
    pred_path = tmp_path / "pred.jsonl"
    pred_path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n"
                                 for x in prediction_rows(records, preds, answers)), encoding="utf-8")
    want = score_all(records, preds)
    got = evaluate_files(str(gold), str(pred_path))
    assert got["missing_predictions"] == 0 and got["unmatched_predictions"] == 0
    assert got["scores"] == want.to_json()
    assert 0 < got["summary"]["CoNLL2003/NER/entity_f1"] < 1


def test_a_file_of_another_format_is_named_not_read_as_empty(tmp_path, capsys):
    """A DuIE file given to the doccano adapter is refused (each line would be a text without spans), and a
    JSON array where JSON lines belong is said to be one, at its first line."""
    duie = FIX / "duie" / "duie_train_excerpt.json"
    rc, _, err = run(capsys, "convert", "--dataset", "doccano", "--input", duie, "-o", tmp_path / "d.jsonl")
    assert rc == 2 and "is the file a doccano export?" in err and "spo_list" in err, err
    array = tmp_path / "gold.json"
    array.write_text(json.dumps([{"id": "1", "text": "x"}], indent=1), encoding="utf-8")
    rc, _, err = run(capsys, "eval", "--gold", array, "--predictions", array)
    assert rc == 2 and "gold.json:1: a JSON array, not JSON lines" in err and "Traceback" not in err, err


def test_convert_names_a_template_index_or_split_it_has_not(tmp_path, capsys):
    duie = FIX / "duie" / "duie_train_excerpt.json"
    rc, _, err = run(capsys, "convert", "--dataset", "duie", "--input", duie, "-o", tmp_path / "d.jsonl",
                     "--template", "99")
    assert rc == 2 and "--template 99: the templates are numbered 0 to" in err, err
    with pytest.raises(SystemExit):  # argparse: an unknown split is a usage error
        main(["convert", "--dataset", "duie", "--input", str(duie), "-o", str(tmp_path / "d.jsonl"), "--split", "foo"])
    assert "invalid choice: 'foo'" in capsys.readouterr().err
