"""ie_instructions adapter on real CoNLL2003 / DuEE excerpts (tests/fixtures/ie_instructions)."""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from instructie.data_adapters import get_adapter
from instructie.core.io import ConfigError, InputError, SkipCounter
from instructie.prompts.targets import parse, render

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "ie_instructions"
read = get_adapter("ie_instructions")


def raw(ds: str, split: str) -> list[dict]:
    return json.loads((ROOT / ds / f"{split}.json").read_text(encoding="utf-8"))


def copy_tree(tmp_path: Path) -> Path:
    dst = tmp_path / "tree"
    shutil.copytree(ROOT, dst)
    return dst


def test_tree_task_dataset_and_file_paths():
    n_ner = sum(len(raw("NER/CoNLL2003", s)) for s in ("train", "dev", "test"))
    n_ee = sum(len(raw("EE/DuEE", s)) for s in ("train", "dev", "test"))
    tree = list(read(ROOT))
    assert len(tree) == n_ner + n_ee
    assert [r.task for r in tree] == ["NER"] * n_ner + ["EE"] * n_ee
    assert [r.id for r in read(ROOT / "NER")] == [r.id for r in tree[:n_ner]]
    assert [r.id for r in read(ROOT / "EE" / "DuEE")] == [r.id for r in tree[n_ner:]]
    one = list(read(ROOT / "NER" / "CoNLL2003" / "dev.json"))
    assert len(one) == len(raw("NER/CoNLL2003", "dev")) and {r.split for r in one} == {"dev"}
    assert len({r.id for r in tree}) == len(tree)


def test_ner_records_match_source():
    recs = list(read(ROOT / "NER" / "CoNLL2003", split="train"))
    src = raw("NER/CoNLL2003", "train")
    assert len(recs) == len(src)
    labels = json.loads((ROOT / "NER/CoNLL2003/labels.json").read_text())
    for rec, r in zip(recs, src):
        assert rec.text == r["sentence"] and rec.dataset == "CoNLL2003" and rec.split == "train"
        assert rec.language == "en" and rec.options == labels
        assert [(e.text, e.label, e.start, e.end) for e in rec.entities] == \
            [(e["name"], e["type"], *e["pos"]) for e in r["entities"]]
        for e in rec.entities:
            assert rec.text[e.start:e.end] == e.text
    assert recs[0].id == "NER/CoNLL2003/train/0"


def test_split_and_dataset_filters():
    assert {r.split for r in read(ROOT, split="test")} == {"test"}
    assert {r.dataset for r in read(ROOT, datasets=["DuEE"])} == {"DuEE"}
    assert list(read(ROOT, datasets=["nope"])) == []
    assert list(read(ROOT / "NER/CoNLL2003/dev.json", split="train")) == []
    with pytest.raises(ConfigError, match="bogus"):
        list(read(ROOT, bogus=1))
    with pytest.raises(ConfigError):
        list(read(ROOT, split="validation"))


def test_ee_events_offsets_and_roles():
    recs = list(read(ROOT / "EE" / "DuEE"))
    types, flat_roles = json.loads((ROOT / "EE/DuEE/labels.json").read_text(encoding="utf-8"))
    seen: dict[str, set] = {}
    for s in ("train", "dev", "test"):
        for r in raw("EE/DuEE", s):
            for ev in r["events"]:
                seen.setdefault(ev["type"], set()).update(a["role"] for a in ev["arguments"])
    rec = recs[0]
    assert rec.language == "zh" and rec.options == types
    assert set(rec.roles) == set(types)
    for t in types:  # roles seen with the type in the data, in labels order; else all roles
        want = [x for x in flat_roles if x in seen[t]] if t in seen else flat_roles
        assert rec.roles[t] == want
    assert all(r.roles == rec.roles for r in recs)  # one schema for every split
    n_args = 0
    for r in recs:
        for ev in r.events:
            assert ev.trigger.label == ev.type and r.text[ev.trigger.start:ev.trigger.end] == ev.trigger.text
            for a in ev.arguments:
                assert r.text[a.start:a.end] == a.text and a.role in r.roles[ev.type]
                n_args += 1
    assert n_args > 20


def test_roles_do_not_depend_on_split_filter():
    assert next(read(ROOT / "EE/DuEE", split="test")).roles == next(read(ROOT / "EE/DuEE")).roles


def test_missing_pos_located_and_repaired(tmp_path):
    tree = copy_tree(tmp_path)
    f = tree / "NER/CoNLL2003/train.json"
    data = json.loads(f.read_text())
    data.insert(0, {"sentence": "Paris and Paris again , Paris", "entities": [
        {"name": "Paris", "type": "location", "pos": []},
        {"name": "Paris", "type": "location"},
        {"name": "Paris", "type": "location", "pos": [23, 29]},  # off by one: repaired to 24..29
    ]})
    f.write_text(json.dumps(data))
    stats = Counter()
    rec = next(read(tree / "NER/CoNLL2003/train.json", stats=stats))
    assert [(e.start, e.end) for e in rec.entities] == [(0, 5), (10, 15), (24, 29)]
    assert all(rec.text[e.start:e.end] == "Paris" for e in rec.entities)
    assert stats["span_located"] == 2 and stats["span_repaired"] == 1 and stats["span_ambiguous"] == 2


@pytest.mark.parametrize("bad, problem", [
    ({"sentence": "EU rejects", "entities": [{"name": "EU", "type": "company", "pos": [0, 2]}]}, "unknown label 'company'"),
    ({"sentence": "EU rejects", "entities": [{"name": "EU", "type": "organization", "pos": [5, 40]}]}, "outside the sentence"),
    ({"sentence": "EU rejects", "entities": [{"name": "UK", "type": "organization", "pos": [0, 2]}]}, "no occurrence nearby"),
    ({"sentence": "EU rejects"}, "missing field 'entities'"),
    ({"entities": []}, "missing field 'sentence'"),
    ({"sentence": "EU", "entities": [{"type": "organization", "pos": [0, 2]}]}, "missing field 'name'"),
])
def test_bad_records_name_file_and_record(tmp_path, bad, problem):
    tree = copy_tree(tmp_path)
    f = tree / "NER/CoNLL2003/dev.json"
    data = json.loads(f.read_text())
    data.insert(3, bad)
    f.write_text(json.dumps(data))
    with pytest.raises(InputError) as ei:
        list(read(tree / "NER/CoNLL2003/dev.json"))
    msg = str(ei.value)
    assert str(f) in msg and "record 3" in msg and problem in msg
    skip, stats = SkipCounter(True), Counter()
    recs = list(read(tree / "NER/CoNLL2003", split="dev", on_error=skip, stats=stats))
    assert skip.count == 1 and stats["invalid"] == 1 and len(recs) == len(data) - 1
    assert "record 3" in skip.examples[0]


def test_bad_ee_role_and_bad_files(tmp_path):
    tree = copy_tree(tmp_path)
    f = tree / "EE/DuEE/train.json"
    data = json.loads(f.read_text())
    data[1]["events"][0]["arguments"][0]["role"] = "不存在的角色"
    f.write_text(json.dumps(data, ensure_ascii=False))
    with pytest.raises(InputError, match=r"record 1\): unknown role"):
        list(read(tree / "EE/DuEE"))
    (tree / "NER/CoNLL2003/test.json").write_text("[{")
    (tree / "NER/CoNLL2003/labels.json").unlink()
    skip = SkipCounter(True)
    recs = list(read(tree, on_error=skip))
    assert {r.dataset for r in recs} == {"DuEE"}  # NER skipped: no labels.json
    assert any("labels.json missing" in e for e in skip.examples)
    with pytest.raises(InputError, match="not an IE INSTRUCTIONS folder"):
        list(read(tmp_path))


def test_re_format(tmp_path):
    d = tmp_path / "RE" / "toy"
    d.mkdir(parents=True)
    (d / "labels.json").write_text(json.dumps(["work for", "live in"]))
    (d / "test.json").write_text(json.dumps([{
        "sentence": "John Smith works for Acme in Boston .",
        "relations": [
            {"head": {"name": "John Smith", "type": "person", "pos": [0, 10]}, "type": "work for",
             "tail": {"name": "Acme", "type": "organization", "pos": []}},
            {"head": {"name": "John Smith", "type": "person", "pos": []}, "type": "live in",
             "tail": {"name": "Boston", "type": "location", "pos": [29, 35]}}],
        "entities": [{"name": "Boston", "type": "location", "pos": [29, 35]}]}]))
    rec = next(read(tmp_path))
    assert rec.task == "RE" and rec.options == ["work for", "live in"]
    assert [(r.head.text, r.label, r.tail.text, r.tail.label) for r in rec.relations] == \
        [("John Smith", "work for", "Acme", "organization"), ("John Smith", "live in", "Boston", "location")]
    for r in rec.relations:
        for e in (r.head, r.tail):
            assert rec.text[e.start:e.end] == e.text
    assert rec.entities[0].start == 29


def test_render_parse_round_trip():
    for rec in read(ROOT):
        got = parse(render(rec), rec.task, rec.options, rec.roles)
        assert set(got.dropped) <= {"duplicate"}  # a sentence may name the same entity twice
        if rec.task == "NER":
            assert sorted(e.key() for e in got.entities) == sorted(set(e.key() for e in rec.entities))
        else:
            want = sorted((e.type, e.trigger.text, tuple((a.role, a.text) for a in e.arguments)) for e in rec.events)
            have = sorted((e.type, e.trigger.text, tuple((a.role, a.text) for a in e.arguments)) for e in got.events)
            assert have == want
