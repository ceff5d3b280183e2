"""FewRel adapter on real excerpts (tests/fixtures/fewrel, see SOURCES.md there)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from instructie.data_adapters import get_adapter
from instructie.core.io import ConfigError, InputError, SkipCounter
from instructie.prompts.targets import parse, render

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "fewrel"
DATA = FIX / "val_wiki_excerpt.json"
P2N = FIX / "pid2name_excerpt.json"
read = get_adapter("fewrel")
NAMES = {"P177": "crosses", "P26": "spouse", "P25": "mother"}


def load(path=DATA, **kw):
    stats = kw.pop("stats", Counter())
    return list(read(str(path), split="val", stats=stats, pid2name=str(P2N), **kw)), stats


def raw() -> dict:
    return json.loads(DATA.read_text(encoding="utf-8"))


def write(tmp_path, data) -> Path:
    p = tmp_path / "in.json"
    p.write_text(json.dumps(data), encoding="utf-8")
    return p


def test_records_text_and_spans():
    recs, st = load()
    data = raw()
    assert len(recs) == 15 and st["records"] == 15 and st["relation_types"] == 3
    for r in recs:
        pid, i = r.meta["pid"], r.meta["index"]
        inst = data[pid][i]
        assert (r.id, r.dataset, r.task, r.language) == (f"fewrel-val-{pid}-{i}", "fewrel", "RC", "en")
        assert r.text == " ".join(inst["tokens"])
        rel, = r.relations
        assert rel.label == NAMES[pid] and (rel.head.label, rel.tail.label) == ("head", "tail")
        for ent, key in ((rel.head, "h"), (rel.tail, "t")):
            assert r.text[ent.start:ent.end] == ent.text
            pos = inst[key][2][0]
            assert ent.text == " ".join(inst["tokens"][pos[0]:pos[-1] + 1])
        assert r.options == ["crosses", "mother", "spouse"]
    first = recs[0].relations[0]
    assert first.head.text == "Cape Girardeau Bridge"  # cased, unlike h[0] in the data
    assert recs[0].meta["head_name"] == "cape girardeau bridge"


def test_whitespace_tokens_kept_exact():
    r = [x for x in load()[0] if x.id == "fewrel-val-P177-1"][0]
    assert "   " in r.text  # the data's " " tokens, each between single-space joins
    assert r.relations[0].head.text == "Wilton Bridge" and r.relations[0].tail.text == "River Wye"


def test_extra_mentions_and_noncontiguous(tmp_path):
    recs, st = load()
    assert st["extra_mentions_ignored"] == 3
    m = [r for r in recs if r.meta["pid"] == "P25" and r.meta["index"] == 3][0]
    assert m.relations[0].head.start == m.text.index("Menkaure")  # first mention list
    data = raw()
    data["P26"][0]["h"][2] = [[2, 0]]
    recs, st = load(write(tmp_path, data))
    r = [x for x in recs if x.id == "fewrel-val-P26-0"][0]
    assert st["noncontiguous_span"] == 1
    assert r.relations[0].head.text == " ".join(data["P26"][0]["tokens"][0:3])


def test_seen_unseen_split():
    seen, _ = load(unseen_relations=1, part="seen")
    unseen, _ = load(unseen_relations=1, part="unseen")
    every, _ = load(unseen_relations=1, part="all")
    s = {r.meta["pid"] for r in seen}
    u = {r.meta["pid"] for r in unseen}
    assert len(u) == 1 and len(s) == 2 and not s & u and s | u == set(NAMES)
    assert {r.id for r in seen} | {r.id for r in unseen} == {r.id for r in every}
    assert seen[0].options == sorted(NAMES[p] for p in s)
    assert unseen[0].options == [NAMES[p] for p in u]
    # deterministic, and a function of the seed
    assert [r.id for r in load(unseen_relations=1, part="unseen")[0]] == [r.id for r in unseen]
    picks = {frozenset(r.meta["pid"] for r in load(unseen_relations=1, part="unseen", seed=k)[0]) for k in range(20)}
    assert len(picks) > 1
    # explicit list form
    only = load(unseen_relations=["P26"], part="unseen")[0]
    assert {r.meta["pid"] for r in only} == {"P26"}


def test_split_independent_of_file_order(tmp_path):
    data = raw()
    rev = write(tmp_path, dict(reversed(list(data.items()))))
    for seed in range(5):
        a = {r.meta["pid"] for r in load(unseen_relations=1, part="unseen", seed=seed)[0]}
        b = {r.meta["pid"] for r in load(rev, unseen_relations=1, part="unseen", seed=seed)[0]}
        assert a == b


def test_instance_split():
    tr, _ = load(instance_split="train")
    te, _ = load(instance_split="test", test_fraction=0.2)
    assert not {r.id for r in tr} & {r.id for r in te}
    assert len(tr) + len(te) == 15
    assert Counter(r.meta["pid"] for r in te) == {"P177": 1, "P26": 1, "P25": 1}
    assert [r.id for r in load(instance_split="test")[0]] == [r.id for r in te]
    both = load(unseen_relations=1, part="seen", instance_split="test")[0]
    assert len(both) == 2


def test_relations_filter():
    recs, _ = load(relations=["P26"])
    assert {r.meta["pid"] for r in recs} == {"P26"} and recs[0].options == ["spouse"]
    with pytest.raises(ConfigError, match="P999"):
        load(relations=["P999"])


def test_none_named_relation_uses_pid(tmp_path):
    data = raw()
    data["P0"] = data.pop("P26")
    recs, st = load(write(tmp_path, data))
    assert {r.relations[0].label for r in recs if r.meta["pid"] == "P0"} == {"P0"}
    assert st["unnamed_relation"] == 1


def test_render_parse_roundtrip():
    for r in load()[0]:
        got = parse(render(r), "RC", r.options)
        assert got.labels == [r.relations[0].label] and not got.dropped


@pytest.mark.parametrize("mutate,where,what", [
    (lambda d: d.__setitem__("P999", d["P26"]), "relation P999", "pid2name"),
    (lambda d: d["P26"][2]["h"].__setitem__(2, [[0, 999]]), "relation P26, instance 2", "outside"),
    (lambda d: d["P26"][2].__setitem__("tokens", "not a list"), "relation P26, instance 2", "tokens"),
    (lambda d: d["P26"][2].__setitem__("t", ["x", "Q1"]), "relation P26, instance 2", "'t'"),
])
def test_bad_input(tmp_path, mutate, where, what):
    data = raw()
    mutate(data)
    p = write(tmp_path, data)
    with pytest.raises(InputError) as e:
        load(p)
    assert str(p) in str(e.value) and where in str(e.value) and what in str(e.value)
    skip = SkipCounter(True)
    recs, _ = load(p, on_error=skip)
    assert skip.count == 1 and len(recs) == (15 if "P999" in where else 14)


def test_config_errors():
    with pytest.raises(ConfigError, match="pid2name"):
        list(read(str(DATA)))
    with pytest.raises(ConfigError, match="bogus"):
        load(bogus=1)
    with pytest.raises(ConfigError, match="part"):
        load(unseen_relations=1, part="weird")
    with pytest.raises(ConfigError, match="unseen_relations"):
        load(unseen_relations=4, part="seen")
    with pytest.raises(ConfigError, match="unseen_relations"):
        load(part="seen")
