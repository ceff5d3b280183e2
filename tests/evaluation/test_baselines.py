"""No-model baselines (instructie.evaluation.baselines): hand-checked predictions, scores, wiring, splits."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from instructie.data_adapters.fin_negative import is_heldout
from instructie.data.dictionary import SpanDictionary
from instructie.evaluation.baselines import (answer_once, build_baselines, score_baselines, shared_splits,
                                  splits_from_config)
from instructie.cli.main import main as cli
from instructie.evaluation.evaluate import evaluate_files
from instructie.evaluation.gold import read_gold
from instructie.core.io import SkipCounter
from instructie.core.records import Argument, Entity, Event, Record, Relation

FIX = Path(__file__).resolve().parents[1] / "fixtures"
ROOT = Path(__file__).resolve().parents[2]


def ner(text, ents, ds="toy", split="train", language="en", options=("location", "organization", "person")):
    """A NER record; ``ents`` are (span text, label), located at their first free occurrence."""
    out, pos = [], 0
    for t, lab in ents:
        s = text.index(t, pos) if t in text[pos:] else text.index(t)
        out.append(Entity(lab, t, s, s + len(t)))
        pos = s + len(t)
    return Record(id=f"{split}-{len(text)}", dataset=ds, task="NER", text=text, language=language,
                  entities=out, options=list(options), split=split)


def spans(pred):
    return [(e.text, e.label, e.start, e.end) for e in pred.entities]


TRAIN = [
    ner("New York is big .", [("New York", "location")]),
    ner("New York won .", [("New York", "organization")]),
    ner("I love New York .", [("New York", "location")]),
    ner("York is old .", [("York", "person")]),
    ner("US troops .", [("US", "location")]),
    ner("Acme and Zenith .", [("Acme", "organization"), ("Zenith", "organization")]),
    ner("Acme ?", [("Acme", "person")]),  # Acme: organization 1, person 1 -> tie -> alphabetical
]


# ---------------------------------------------------------------- dictionary matching
def test_dictionary_longest_match_token_boundary_and_most_frequent_type():
    fn = build_baselines(TRAIN)["toy", "NER"]["dictionary"]
    text = "US and USA fans in New York met York and Acme ."
    got = spans(fn(ner(text, [], split="test")))
    assert got == [
        ("US", "location", 0, 2),            # not again inside "USA"
        ("New York", "location", 19, 27),    # longest match wins over "York"; 2 of 3 say location
        ("York", "person", 32, 36),          # the standalone one
        ("Acme", "organization", 41, 45),    # 1-1 tie -> alphabetically first
    ]
    for s, e in ((x[2], x[3]) for x in got):
        assert text[s:e] in ("US", "New York", "York", "Acme")


def test_word_boundaries_both_sides():
    d = SpanDictionary.from_pairs([("US", "location"), ("York", "person")])
    assert d.candidates("USA BUS US-based (US) Yorkshire NewYork York.", word_boundaries=True) == \
        [(8, 10), (18, 20), (40, 44)]  # "US-based", "(US)", "York." only


def test_chinese_matches_anywhere():
    d = SpanDictionary.from_pairs([("北京", "地点"), ("北京大学", "机构")])
    assert d.match("他在北京大学和北京市", language="zh") == [(2, 6, "机构"), (7, 9, "地点")]
    assert d.match("他在北京大学和北京市", language="en") == []  # letters on both sides: no boundary


def test_longest_first_then_leftmost_non_overlapping():
    d = SpanDictionary.from_pairs([("A B", "x"), ("B C D", "y"), ("D E", "z"), ("E", "w")])
    # "B C D" (longest) first; "A B" and "D E" overlap it; "E" is free.
    assert d.match("A B C D E") == [(2, 7, "y"), (8, 9, "w")]
    # equal lengths: the leftmost wins
    d2 = SpanDictionary.from_pairs([("a b", "x"), ("b c", "y")])
    assert d2.match("a b c") == [(0, 3, "x")]


def test_only_types_among_the_options():
    fn = build_baselines(TRAIN)["toy", "NER"]["dictionary"]
    rec = ner("New York and York", [], split="test", options=("organization", "person"))
    # location is not asked: New York falls back to its next type; York stays person
    assert spans(fn(rec)) == [("New York", "organization", 0, 8), ("York", "person", 13, 17)]
    rec = ner("New York and York", [], split="test", options=("misc",))
    assert spans(fn(rec)) == []


# ---------------------------------------------------------------- scores
def test_dictionary_f1_on_a_tiny_example():
    gold = [ner("US and New York met Bob .", [("US", "location"), ("New York", "organization"), ("Bob", "person")],
                split="test"),
            ner("Acme sued York .", [("Acme", "organization"), ("York", "person")], split="test")]
    res = score_baselines(gold, TRAIN)
    # predicted: US/location (tp), New York/location (fp; gold organization), Acme/org (tp), York/person (tp)
    # gold misses: New York/organization, Bob/person -> tp 3, fp 1, fn 2
    m = {r["dataset"]: r["metrics"] for r in res["scores"]["dictionary"]}["toy"]
    assert (m["entity_tp"], m["entity_fp"], m["entity_fn"]) == (3, 1, 2)
    assert m["entity_precision"] == pytest.approx(3 / 4) and m["entity_recall"] == pytest.approx(3 / 5)
    assert m["entity_f1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert res["summary"]["dictionary"] == {"toy/NER/entity_f1": round(2 * 0.75 * 0.6 / 1.35, 4)}
    assert "dictionary" in res["table"] and "toy" in res["table"]


def test_relation_baselines_by_hand():
    sl = (Argument("inWork", "大话西游"),)
    train = [Record("1", "duie", "RE", "周星驰饰演至尊宝", language="zh", options=["饰演", "妻子"],
                    relations=[Relation(Entity("人物", "周星驰"), "饰演", Entity("角色", "至尊宝"), sl)]),
             Record("2", "duie", "RE", "甲的妻子是乙", language="zh", options=["饰演", "妻子"],
                    relations=[Relation(Entity("人物", "甲"), "妻子", Entity("人物", "乙"))])]
    fn = build_baselines(train)["duie", "RE"]["train_triples"]
    test = Record("t", "duie", "RE", "在大话西游里至尊宝由周星驰演", language="zh", options=["饰演", "妻子"])
    p = fn(test)
    (r,) = p.relations
    assert (r.head.text, r.label, r.tail.text) == ("周星驰", "饰演", "至尊宝")
    assert test.text[r.head.start:r.head.end] == "周星驰" and test.text[r.tail.start:r.tail.end] == "至尊宝"
    assert [(a.role, a.text, test.text[a.start:a.end]) for a in r.slots] == [("inWork", "大话西游", "大话西游")]
    assert fn(dataclasses.replace(test, text="只有周星驰")).relations == []  # tail absent: nothing


def test_rc_majority_pair_and_entity_memory():
    def rc(h, lab, t, i=0):
        return Record(f"r{i}", "fr", "RC", f"{h} x {t}", options=["a", "b", "c"],
                      relations=[Relation(Entity("head", h), lab, Entity("tail", t))])
    train = [rc("H1", "a", "T1", 1), rc("H2", "a", "T2", 2), rc("H3", "b", "T3", 3), rc("H4", "c", "T1", 4),
             rc("H4", "c", "T1", 5), rc("H5", "c", "T9", 6)]
    base = build_baselines(train)["fr", "RC"]
    assert set(base) == {"majority", "pair_memory", "entity_memory"}
    # counts a 2, b 1, c 3 -> majority c
    assert base["majority"](rc("Q", "?", "R")).labels == ["c"]
    assert base["pair_memory"](rc("H3", "?", "T3")).labels == ["b"]
    assert base["pair_memory"](rc("H3", "?", "T2")).labels == ["c"]   # unseen pair -> majority
    assert base["entity_memory"](rc("H3", "?", "T2")).labels == ["a"]  # tail T2 -> a
    assert base["entity_memory"](rc("H3", "?", "T7")).labels == ["b"]  # head H3 -> b
    # T1: a once, c twice -> c; restricted to options a, b -> a
    assert base["entity_memory"](rc("Q", "?", "T1")).labels == ["c"]
    assert base["entity_memory"](dataclasses.replace(rc("Q", "?", "T1"), options=["a", "b"])).labels == ["a"]
    assert base["majority"](dataclasses.replace(rc("Q", "?", "R"), options=["b"])).labels == ["b"]


def test_trigger_dictionary():
    def ee(text, trig, typ, i):
        s = text.index(trig)
        return Record(f"e{i}", "DuEE", "EE", text, language="zh", options=["人生-死亡", "竞赛行为-夺冠", "竞赛行为-胜负"],
                      events=[Event(typ, Entity(typ, trig, s, s + len(trig)), (Argument("死者", "某人"),))])
    train = [ee("某人去世", "去世", "人生-死亡", 1), ee("甲队击败乙队", "击败", "竞赛行为-胜负", 2),
             ee("甲队击败乙队夺冠", "击败", "竞赛行为-胜负", 3), ee("击败", "击败", "竞赛行为-夺冠", 4)]
    fn = build_baselines(train)["DuEE", "EE"]["trigger_dictionary"]
    p = fn(Record("t", "DuEE", "EE", "昨天丙队击败丁队，丁某去世", language="zh", options=train[0].options))
    assert [(e.type, e.trigger.text, e.trigger.start, e.trigger.end, e.arguments) for e in p.events] == \
        [("竞赛行为-胜负", "击败", 4, 6, ()), ("人生-死亡", "去世", 11, 13, ())]


def test_neg_candidate_rules():
    train = [Record("n0", "fin", "NEG", "x", language="zh", options=["甲"], entities=[Entity("negative", "甲", 0, 1)])]
    base = build_baselines(train)["fin", "NEG"]
    rec = Record("n1", "fin", "NEG", "小资钱包和????小资钱包和乙公司", language="zh", options=["小资钱包", "????小资钱包", "乙公司"])
    assert base["all_candidates"](rec).labels == ["小资钱包", "????小资钱包", "乙公司"]
    assert base["longest_candidate"](rec).labels == ["????小资钱包"]
    assert base["non_nested_candidates"](rec).labels == ["????小资钱包", "乙公司"]
    empty = dataclasses.replace(rec, options=[])
    assert all(base[n](empty).labels == [] for n in base)
    tie = dataclasses.replace(rec, options=["甲公司", "乙公司"])
    assert base["longest_candidate"](tie).labels == ["甲公司"]  # equal length: first listed


# ---------------------------------------------------------------- no test labels
def _wiped(rec: Record) -> Record:
    """The record with every answer garbled: what a baseline may not depend on."""
    rels = [Relation(r.head, "GARBLED", r.tail) for r in rec.relations] if rec.task == "RC" else []
    return dataclasses.replace(rec, entities=[], events=[], relations=rels, meta={})


def test_baselines_never_read_test_labels():
    golds = [ner("Zorro met New York and US .", [("Zorro", "person"), ("New York", "location")], split="test")]
    res = score_baselines(golds, TRAIN)
    m = res["scores"]["dictionary"][0]["metrics"]
    assert m["entity_fn"] == 1  # "Zorro" is only in the test labels: never predicted
    fn = build_baselines(TRAIN)["toy", "NER"]["dictionary"]
    assert "Zorro" not in [e.text for e in fn(golds[0]).entities]
    # and predictions are the same whatever the test record's labels say
    splits = {
        "duie": [r for r, _ in _converted("duie", ["--input", str(FIX / "duie/duie_train_excerpt.json"),
                                                    "--schema", str(FIX / "duie/duie_schema.json")])],
    }
    for name, recs in splits.items():
        base = build_baselines(recs)
        for rec in recs:
            for bname, fn in base[rec.dataset, rec.task].items():
                a, b = fn(rec), fn(_wiped(rec))
                assert (a.entities, a.relations, a.events, a.labels) == (b.entities, b.relations, b.events, b.labels)


def test_other_tasks_are_label_blind(tmp_path):
    d = _fixture_tree(tmp_path)
    sp = shared_splits(d, fewrel_unseen=1)
    train = [r for tr, _ in sp.values() for r in tr]
    base = build_baselines(train, targets={(r.dataset, r.task) for _, te in sp.values() for r in te})
    for _, te in sp.values():
        for rec in te:
            for fn in base.get((rec.dataset, rec.task), {}).values():
                a, b = fn(rec), fn(_wiped(rec))
                assert (a.entities, a.relations, a.events, a.labels) == (b.entities, b.relations, b.events, b.labels)


# ---------------------------------------------------------------- wiring with converted files
def _converted(dataset: str, args: list[str], path: Path | None = None) -> list:
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(path or Path(tmp) / "x.jsonl")
        assert cli(["convert", "--dataset", dataset, "-o", str(out), *args]) == 0
        return read_gold(str(out), SkipCounter(False))


def _converted_ie(tmp_path: Path, tasks: str) -> dict[str, Path]:
    """The fixture's ie_instructions train and test splits through instructie convert: {split: JSONL path}."""
    conv = {}
    for split in ("train", "test"):
        conv[split] = tmp_path / f"ie_{split}.jsonl"
        assert cli(["convert", "--dataset", "ie_instructions", "--input", str(FIX / "ie_instructions"),
                    "--split", split, "-o", str(conv[split]), "--tasks", tasks]) == 0
    return conv


def test_score_baselines_with_converted_jsonl(tmp_path):
    conv = _converted_ie(tmp_path, "NER,ES,EE")
    fin = tmp_path / "fin.jsonl"
    assert cli(["convert", "--dataset", "fin_negative", "--input", str(FIX / "fin_negative/Train_Data.csv"),
                "-o", str(fin)]) == 0
    golds = [r for r, _ in read_gold(str(conv["test"]), SkipCounter(False))]
    golds += [r for r, _ in read_gold(str(fin), SkipCounter(False))]
    res = score_baselines(golds, [str(conv["train"]), fin])
    assert set(res) >= {"scores", "summary", "table", "skipped"}
    assert set(res["scores"]) == {"dictionary", "trigger_dictionary", "all_candidates", "longest_candidate",
                                  "non_nested_candidates"}
    assert set(res["summary"]["dictionary"]) == {"CoNLL2003/NER/entity_f1"}
    assert set(res["summary"]["trigger_dictionary"]) == {"DuEE/EE/trigger_cls_f1", "DuEE/EE/arg_cls_f1"}
    assert "fin_negative/NEG/competition" in res["summary"]["all_candidates"]
    assert res["skipped"] == {"CoNLL2003/ES": "auxiliary task: no baseline"}
    json.dumps(res)  # serialisable as it is
    # the same numbers from Records as from the files
    train_recs = [r for p in (conv["train"], fin) for r, _ in read_gold(str(p), SkipCounter(False))]
    assert score_baselines(golds, train_recs)["scores"] == res["scores"]
    # through instructie eval --baseline-train: gold targets as predictions, baselines beside them
    out = evaluate_files(str(conv["test"]), str(conv["test"]), field="target", baselines=[str(conv["train"])])
    assert out["summary"]["CoNLL2003/NER/entity_f1"] == 1.0
    assert "dictionary" in out["baselines"]["summary"] and "Baselines" in out["table"]


def test_eval_cli_bootstrap_against_the_best_baseline(tmp_path, capsys):
    """instructie eval --baseline-train T --bootstrap N: gold answers against baselines built from the test split
    itself tie them in every draw (not "ahead"); against baselines built from the train split they lead."""
    conv = _converted_ie(tmp_path, "NER,EE")
    runs = {}
    for train in ("test", "train"):
        out = tmp_path / f"{train}.json"
        assert cli(["eval", "--gold", str(conv["test"]), "--predictions", str(conv["test"]), "--field", "target",
                    "--baseline-train", str(conv[train]), "--bootstrap", "20", "--json", str(out)]) == 0
        assert "paired bootstrap, 20 draws" in capsys.readouterr().out
        runs[train] = {r["dataset"]: r for r in json.loads(out.read_text(encoding="utf-8"))["bootstrap"]}
    assert set(runs["test"]) == set(runs["train"]) == {"CoNLL2003", "DuEE"}
    for r in runs["test"].values():
        assert r["model"] == r["baseline_value"] == 1.0 and r["model_ahead_share"] == 0.0
        assert r["difference_low"] == r["difference_high"] == 0.0
    for r in runs["train"].values():
        assert r["model"] == 1.0 > r["baseline_value"] and r["model_ahead_share"] == 1.0 and r["difference_low"] > 0
    # without baselines there is nothing to compare with: a clear error, no traceback
    assert cli(["eval", "--gold", str(conv["test"]), "--predictions", str(conv["test"]), "--field", "target",
                "--bootstrap", "20"]) == 2
    assert "--baseline-train" in capsys.readouterr().err


def test_answer_once_asks_each_baseline_once_per_record():
    """The eval command's bootstrap asks the baselines about the test records its baseline table asked about;
    answer_once gives the same answers without matching the text again, and tells equal records apart."""
    calls, dictionary = [], build_baselines(TRAIN)["toy", "NER"]["dictionary"]

    def counted(rec):
        calls.append(rec.text)
        return dictionary(rec)

    once = answer_once({("toy", "NER"): {"dictionary": counted}})["toy", "NER"]["dictionary"]
    a = ner("New York won .", [("New York", "organization")], split="test")
    b = dataclasses.replace(a)  # equal, but another record
    assert spans(once(a)) == spans(once(a)) == spans(dictionary(a)) == [("New York", "location", 0, 8)]
    assert calls == ["New York won ."]
    once(b)
    assert len(calls) == 2


def test_no_training_data_means_no_baseline():
    gold = [ner("New York", [("New York", "location")], ds="other", split="test")]
    res = score_baselines(gold, TRAIN)
    assert res["scores"] == {} and res["skipped"] == {"other/NER": "no training records of this dataset and task"}


def test_transfer_dictionary_for_crossner():
    conll = [dataclasses.replace(r, dataset="CoNLL2003") for r in TRAIN]
    own = [ner("Turing wrote .", [("Turing", "researcher")], ds="CrossNER_AI", options=("researcher", "person"))]
    gold = [ner("Turing met York .", [("Turing", "researcher"), ("York", "person")], ds="CrossNER_AI",
                split="test", options=("researcher", "person", "location"))]
    base = build_baselines(conll + own, targets={("CrossNER_AI", "NER")})
    assert set(base["CrossNER_AI", "NER"]) == {"dictionary", "conll_dictionary"}
    assert spans(base["CrossNER_AI", "NER"]["conll_dictionary"](gold[0])) == [("York", "person", 11, 15)]
    assert spans(base["CrossNER_AI", "NER"]["dictionary"](gold[0])) == [("Turing", "researcher", 0, 6)]
    # without CrossNER training data the transfer baseline still applies
    res = score_baselines(gold, conll)
    assert list(res["scores"]) == ["conll_dictionary"]
    assert res["summary"]["conll_dictionary"]["CrossNER_AI/NER/entity_f1"] == pytest.approx(2 / 3, abs=1e-4)
    assert "conll_dictionary" not in base["CoNLL2003", "NER"]  # never for its own source


# ---------------------------------------------------------------- shared splits and the script
def _fixture_tree(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    shutil.copytree(FIX / "ie_instructions", d / "ie_instructions")
    (d / "duie").mkdir(parents=True)
    shutil.copy(FIX / "duie/duie_train_excerpt.json", d / "duie/duie_train.json")
    shutil.copy(FIX / "duie/duie_train_excerpt.json", d / "duie/duie_dev.json")
    shutil.copy(FIX / "duie/duie_schema.json", d / "duie/duie_schema.json")
    (d / "fewrel").mkdir()
    shutil.copy(FIX / "fewrel/val_wiki_excerpt.json", d / "fewrel/val_wiki.json")
    shutil.copy(FIX / "fewrel/pid2name_excerpt.json", d / "fewrel/pid2name.json")
    (d / "fin_negative").mkdir()
    shutil.copy(FIX / "fin_negative/Train_Data.csv", d / "fin_negative/Train_Data.csv")
    return d


def test_shared_splits(tmp_path):
    sp = shared_splits(_fixture_tree(tmp_path), fewrel_unseen=1)
    assert set(sp) == {"CoNLL2003", "DuEE", "duie", "fewrel", "fin_negative"}
    for name, (tr, te) in sp.items():
        assert tr and te, name
        assert {r.dataset for r in tr + te} == {name}
        if name != "duie":  # the fixture tree uses one DuIE file for both
            assert not {r.id for r in tr} & {r.id for r in te}, name
    assert {r.split for r in sp["CoNLL2003"][0]} == {"train"} and {r.split for r in sp["CoNLL2003"][1]} == {"test"}
    assert len({r.meta["pid"] for r in sp["fewrel"][1]}) == 2  # 3 relations, 1 unseen
    tr, te = sp["fin_negative"]  # the adapter's holdout: by a hash of the row id
    assert all(is_heldout(r.id, 0.2) for r in te) and not any(is_heldout(r.id, 0.2) for r in tr)
    assert len(tr) + len(te) == 30 and len(te) == 6
    again = shared_splits(_fixture_tree(tmp_path / "again"), fewrel_unseen=1)
    assert {k: ([r.id for r in a], [r.id for r in b]) for k, (a, b) in sp.items()} == \
        {k: ([r.id for r in a], [r.id for r in b]) for k, (a, b) in again.items()}  # deterministic


def _fixture_config(tmp_path: Path) -> tuple[Path, Path]:
    """The fixture tree and a training config over it (its train and test splits as shared_splits reads them)."""
    d = _fixture_tree(tmp_path)
    fr = f"{{pid2name: {d}/fewrel/pid2name.json, unseen_relations: 1, part: seen"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
model: {{init: random}}
data:
  train:
    - {{adapter: ie_instructions, path: {d}/ie_instructions, split: train}}
    - {{adapter: duie, path: {d}/duie/duie_train.json, options: {{schema: {d}/duie/duie_schema.json}}}}
    - {{adapter: fewrel, path: {d}/fewrel/val_wiki.json, options: {fr}, instance_split: train}}}}
    - {{adapter: fin_negative, path: {d}/fin_negative/Train_Data.csv, options: {{holdout: 0.2, part: train, max_chars: 200}}}}
  test:
    - {{adapter: ie_instructions, path: {d}/ie_instructions, split: test}}
    - {{adapter: duie, path: {d}/duie/duie_dev.json, options: {{schema: {d}/duie/duie_schema.json}}}}
    - {{adapter: fewrel, path: {d}/fewrel/val_wiki.json, options: {fr}, instance_split: test}}}}
    - {{adapter: fin_negative, path: {d}/fin_negative/Train_Data.csv, options: {{holdout: 0.2, part: heldout, max_chars: 200}}}}
""", encoding="utf-8")
    return d, cfg


def test_shared_splits_agree_with_a_config(tmp_path):
    d, cfg = _fixture_config(tmp_path)
    a, b = shared_splits(d, fewrel_unseen=1), splits_from_config(cfg)
    assert set(a) == set(b)
    for k in a:
        assert [[r.to_dict() for r in x] for x in a[k]] == [[r.to_dict() for r in x] for x in b[k]], k


def test_eval_script_on_fixtures(tmp_path):
    spec = importlib.util.spec_from_file_location("eval_baselines", ROOT / "eval" / "baselines.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    d = _fixture_tree(tmp_path)
    shutil.rmtree(d / "fewrel")  # the excerpt has 3 relations; the script holds 5 out
    out = tmp_path / "out"
    assert mod.main(["--data", str(d), "--out", str(out)]) == 0
    md = (out / "BASELINES.md").read_text(encoding="utf-8")
    assert md.splitlines()[3].startswith("python eval/baselines.py --data ")
    assert "### CoNLL2003 (NER)" in md and "### fin_negative (NEG)" in md
    js = json.loads((out / "baselines.json").read_text(encoding="utf-8"))
    assert js["splits"]["duie"]["test_texts_in_train"] == js["splits"]["duie"]["test"]  # same file twice here
    assert "CoNLL2003/NER/entity_f1" in js["summary"]["dictionary"]


def test_bootstrap_script_counts_ties_wins_and_losses(tmp_path):
    """eval/bootstrap_vs_baseline.py: gold answers tie a baseline that knows the test split (difference 0 in
    every draw: a tie is not "ahead") and beat one that knows nothing in every draw; no answers are behind the
    knowing baseline in every draw."""
    spec = importlib.util.spec_from_file_location("bootstrap_vs_baseline", ROOT / "eval" / "bootstrap_vs_baseline.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ie = (FIX / "ie_instructions").resolve()
    knows = tmp_path / "knows.yaml"  # trained on the test split itself: its dictionaries are right on every record
    knows.write_text(f"""
model: {{init: random}}
data:
  train: [{{adapter: ie_instructions, path: {ie}, split: test}}]
  test: [{{adapter: ie_instructions, path: {ie}, split: test}}]
""", encoding="utf-8")
    blind = tmp_path / "blind.yaml"  # the fixture's train split shares no name or trigger with its test split
    blind.write_text(knows.read_text(encoding="utf-8").replace("split: test}]\n  test", "split: train}]\n  test"),
                     encoding="utf-8")
    tests = [r for _, te in splits_from_config(knows).values() for r in te]
    assert {r.dataset for r in tests} == {"CoNLL2003", "DuEE"}
    perfect, empty = tmp_path / "perfect.jsonl", tmp_path / "empty.jsonl"
    perfect.write_text("".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in tests), encoding="utf-8")
    empty.write_text("".join(json.dumps({"id": r.id, "task": r.task, "entities": [], "events": []}) + "\n"
                             for r in tests), encoding="utf-8")

    def run(cfg, preds):
        out = tmp_path / "out.json"
        assert mod.main(["--config", str(cfg), "--predictions", str(preds), "--resamples", "25",
                         "--json", str(out)]) == 0
        rows = json.loads(out.read_text(encoding="utf-8"))["results"]
        assert {r["dataset"] for r in rows} == {"CoNLL2003", "DuEE"}
        return rows

    for r in run(knows, perfect):
        assert r["model"] == r["baseline_value"] == 1.0
        assert r["difference_low"] == r["difference_high"] == 0.0 and r["model_ahead_share"] == 0.0
    for r in run(knows, empty):
        assert r["model"] == 0.0 and r["difference_high"] < 0 and r["model_ahead_share"] == 0.0
    for r in run(blind, perfect):
        assert r["baseline"] in ("dictionary", "trigger_dictionary") and r["baseline_value"] < 1.0
        assert r["difference_low"] > 0 and r["model_ahead_share"] == 1.0

    # --against: one run's predictions against another's (an ablation), no baselines read; the other run is
    # named after its folder
    other_dir = tmp_path / "run-b"
    other_dir.mkdir()
    shutil.copy(empty, other_dir / "preds.jsonl")
    out = tmp_path / "ab.json"
    assert mod.main(["--config", str(blind), "--predictions", str(perfect), "--against", str(other_dir / "preds.jsonl"),
                     "--resamples", "25", "--json", str(out)]) == 0
    rows = json.loads(out.read_text(encoding="utf-8"))["results"]
    assert {r["dataset"] for r in rows} == {"CoNLL2003", "DuEE"}
    for r in rows:
        assert r["baseline"] == "run-b" and r["model"] == 1.0 and r["baseline_value"] == 0.0
        assert r["difference_low"] == pytest.approx(1.0) and r["model_ahead_share"] == 1.0
    assert mod.main(["--config", str(blind), "--predictions", str(perfect), "--against", str(perfect),
                     "--resamples", "25", "--json", str(out)]) == 0
    for r in json.loads(out.read_text(encoding="utf-8"))["results"]:  # a run against itself: a tie in every draw
        assert r["difference_low"] == r["difference_high"] == 0.0 and r["model_ahead_share"] == 0.0
    # a file that lacks some test records would score them as empty on its side alone: refused, unless asked
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(perfect.read_text(encoding="utf-8").splitlines(keepends=True)[1:]), encoding="utf-8")
    assert mod.main(["--config", str(blind), "--predictions", str(perfect), "--against", str(cut),
                     "--resamples", "25", "--json", str(out)]) == 2
    assert mod.main(["--config", str(blind), "--predictions", str(perfect), "--against", str(cut),
                     "--allow-missing", "--resamples", "25", "--json", str(out)]) == 0
    js = json.loads(out.read_text(encoding="utf-8"))
    assert js["missing"] == {str(perfect): 0, str(cut): 1}
    assert any(r["difference"] > 0 for r in js["results"])


def test_seen_unseen_splits_mentions_by_the_training_names(tmp_path, capsys):
    """eval/experiments/seen_unseen.py: a mention is "seen" when its text is an entity of the dataset's training split;
    recall and precision per part, per named predictions file."""
    spec = importlib.util.spec_from_file_location("seen_unseen", ROOT / "eval" / "experiments" / "seen_unseen.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ie = (FIX / "ie_instructions").resolve()
    cfgs = {}
    for split in ("train", "test"):  # the fixture's train split shares no name with its test split
        cfgs[split] = tmp_path / f"{split}.yaml"
        cfgs[split].write_text(f"""
model: {{init: random}}
data:
  train: [{{adapter: ie_instructions, path: {ie}, split: {split}}}]
  test: [{{adapter: ie_instructions, path: {ie}, split: test}}]
""", encoding="utf-8")
    tests = [r for _, te in splits_from_config(cfgs["test"]).values() for r in te if r.task == "NER"]
    gold_mentions = sum(len({e.key() for e in r.entities}) for r in tests)
    perfect, half = tmp_path / "perfect.jsonl", tmp_path / "half.jsonl"
    perfect.write_text("".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in tests), encoding="utf-8")
    half.write_text("".join(json.dumps({**r.to_dict(), "entities": [] if k % 2 else r.to_dict()["entities"]},
                                       ensure_ascii=False) + "\n" for k, r in enumerate(tests)), encoding="utf-8")
    out = tmp_path / "out.json"
    assert mod.main(["--config", str(cfgs["train"]), "--predictions", f"all={perfect}", f"half={half}",
                     "--json", str(out)]) == 0
    res = json.loads(out.read_text(encoding="utf-8"))["results"]
    ds = res["all"]["CoNLL2003"]
    assert ds["seen"]["gold"] == 0 and ds["unseen"]["gold"] == gold_mentions > 0  # no test name in training
    assert ds["unseen"]["recall"] == ds["unseen"]["precision"] == 1.0
    kept = sum(len({e.key() for e in r.entities}) for k, r in enumerate(tests) if not k % 2)
    h = res["half"]["CoNLL2003"]["unseen"]
    assert h["recalled"] == kept < gold_mentions and h["precision"] == 1.0
    assert "| CoNLL2003 | unseen in training |" in capsys.readouterr().out
    assert mod.main(["--config", str(cfgs["test"]), "--predictions", f"all={perfect}", "--json", str(out)]) == 0
    ds = json.loads(out.read_text(encoding="utf-8"))["results"]["all"]["CoNLL2003"]
    assert ds["unseen"]["gold"] == 0 and ds["seen"]["recall"] == 1.0  # trained on the test split: all seen
    with pytest.raises(SystemExit):
        mod.main(["--config", str(cfgs["test"]), "--predictions", str(perfect)])  # no NAME=


def _ner_preds(n_records: int, wrong: set[int]):
    """``n_records`` one-entity NER records, and predictions right on all but the ``wrong`` ones (empty there)."""
    from instructie.evaluation.scoring import Prediction
    golds = [ner(f"Paris{i} is big .", [(f"Paris{i}", "location")], split="test") for i in range(n_records)]
    preds = [Prediction() if i in wrong else Prediction(entities=list(g.entities)) for i, g in enumerate(golds)]
    return golds, preds


def test_paired_bootstrap_uses_one_draw_for_both_sides():
    from instructie.evaluation.significance import paired_bootstrap
    golds, a = _ner_preds(30, {7})
    _, b = _ner_preds(30, {7, 12, 20})  # wrong wherever a is, and on two records more
    # paired: on every draw a scores at least b (a tie when 12 and 20 are not drawn); draws of different
    # records for the two sides would put b ahead now and then
    low, high, ahead = paired_bootstrap(golds, a, b, "NER", resamples=200)
    assert low == 0.0 and high > 0 and 0.5 < ahead < 1
    low, high, ahead = paired_bootstrap(golds, b, a, "NER", resamples=200)
    assert low < 0 and high == 0.0 and ahead == 0.0


def test_against_other_run_needs_the_same_records():
    from instructie.evaluation.significance import against_other_run
    golds, a = _ner_preds(10, {1})
    with pytest.raises(ValueError, match="not the same test records"):
        against_other_run(golds, a, a[:9], "other", resamples=5)
    [row] = against_other_run(golds, a, _ner_preds(10, {1, 2})[1], "other", resamples=50)
    assert row.baseline == "other" and row.difference > 0 and row.records == 10


def test_paired_bootstrap_interval_is_symmetric_in_its_cut():
    """Swapping the sides mirrors the interval for any number of draws (as many draws cut at each end)."""
    import random as _random
    from instructie.evaluation.significance import paired_bootstrap
    rng = _random.Random(1)
    golds, a = _ner_preds(200, {i for i in range(200) if rng.random() < 0.2})
    _, b = _ner_preds(200, {i for i in range(200) if rng.random() < 0.3})
    for draws in (25, 100, 101):
        lo, hi, _ = paired_bootstrap(golds, a, b, "NER", resamples=draws, seed=3)
        lo2, hi2, _ = paired_bootstrap(golds, b, a, "NER", resamples=draws, seed=3)
        assert (lo, hi) == pytest.approx((-hi2, -lo2)) and lo < hi
    with pytest.raises(ValueError):
        paired_bootstrap(golds, a, b, "NER", resamples=0)


def test_paired_bootstrap_adds_record_counts_as_scoring_the_draw_would(tmp_path):
    """The bootstrap sums each record's counts per draw; scoring the drawn records gives the same differences,
    for every task's headline metric (F1 over offsets or text, RC accuracy, the financial competition score)."""
    import random as _random
    from instructie.evaluation.significance import headline, paired_bootstrap
    from instructie.evaluation.scoring import Prediction
    sp = shared_splits(_fixture_tree(tmp_path), fewrel_unseen=1)
    base = build_baselines([r for tr, _ in sp.values() for r in tr])
    checked = set()
    for name, (_, test) in sp.items():
        for task in sorted({r.task for r in test}):
            golds = [r for r in test if r.task == task]
            fns = base.get((name, task))
            if not fns:
                continue
            a = [next(iter(fns.values()))(g) for g in golds]
            # the other side: gold items, every third record emptied, triggers a character off (right on text:
            # EE scores on text, so offsets must not count there)
            b = [Prediction() if k % 3 == 1 else Prediction(
                entities=list(g.entities), relations=list(g.relations), events=[_shifted(e) for e in g.events],
                labels=[e.text for e in g.entities] if task == "NEG" else [x.label for x in g.relations]
                if task == "RC" else []) for k, g in enumerate(golds)]
            rng, n, slow = _random.Random(5), len(golds), []
            for _ in range(40):  # the draws paired_bootstrap makes with seed 5
                idx = [rng.randrange(n) for _ in range(n)]
                gs = [golds[i] for i in idx]
                slow.append(headline(gs, [a[i] for i in idx], task, name) - headline(gs, [b[i] for i in idx], task, name))
            slow.sort()
            low, high, ahead = paired_bootstrap(golds, a, b, task, name, resamples=40, seed=5)
            assert (low, high, ahead) == (slow[1], slow[38], sum(d > 0 for d in slow) / 40), (name, task)  # exactly
            assert len(set(slow)) > 1, (name, task)  # the draws differ: the check has something to see
            checked.add(task)
    assert checked >= {"NER", "RE", "EE", "RC", "NEG"}


def _shifted(event):
    t = event.trigger
    return event if t.start is None else dataclasses.replace(event, trigger=dataclasses.replace(
        t, start=t.start + 1, end=t.end + 1))
