"""DuIE adapter on real excerpts (tests/fixtures/duie, see SOURCES.md there)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from instructie.data_adapters import get_adapter
from instructie.core.io import ConfigError, InputError, SkipCounter
from instructie.prompts.targets import parse, render

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "duie"
DATA = FIX / "duie_train_excerpt.json"
SCHEMA = FIX / "duie_schema.json"
read = get_adapter("duie")


def load(path=DATA, **kw):
    stats = kw.pop("stats", Counter())
    return list(read(str(path), split="train", stats=stats, schema=str(SCHEMA), **kw)), stats


def by_line(recs):
    return {r.meta["line"]: r for r in recs}


def lines():
    return DATA.read_text(encoding="utf-8").splitlines()


def write(tmp_path, rows: list[str]) -> Path:
    p = tmp_path / "in.json"
    p.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return p


def test_records_fields_and_schema():
    recs, _ = load()
    assert len(recs) == 28
    r = recs[0]
    assert (r.id, r.dataset, r.task, r.language, r.split) == ("duie-train-1", "duie", "RE", "zh", "train")
    schema = [json.loads(x) for x in SCHEMA.read_text(encoding="utf-8").splitlines() if x.strip()]
    assert r.options == [s["predicate"] for s in schema] and len(r.options) == 48
    assert r.roles["饰演"] == ["inWork"] and r.roles["作者"] == []
    assert r.roles["获奖"] == ["inWork", "onDate", "period"]  # schema order
    assert len({x.id for x in recs}) == len(recs)
    assert r.relations[0].head.label == "图书作品" and r.relations[0].tail.label == "人物"


def test_offsets_match_text():
    recs, _ = load()
    n = 0
    for r in recs:
        for rel in r.relations:
            for s in (rel.head, rel.tail, *rel.slots):
                assert s.start is not None  # every span of the excerpt occurs in its text
                assert r.text[s.start:s.end] == s.text
                n += 1
    assert n > 90


def test_complex_objects_kept_with_slots_in_schema_order():
    recs = by_line(load()[0])
    rel = [x for x in recs[4].relations if x.label == "饰演"][0]
    assert (rel.head.text, rel.tail.text) == ("张智尧", "楚留香")
    assert [(a.role, a.text, a.start) for a in rel.slots] == [("inWork", "楚留香新传", 50)]
    award = [x for x in recs[22].relations if x.label == "获奖"][0]
    # the raw object lists onDate before inWork; slots follow the schema
    assert [(a.role, a.text) for a in award.slots] == [("inWork", "我想有个家"), ("onDate", "1992年")]
    area = [x for x in recs[25].relations if x.label == "上映时间"][0]
    assert [(a.role, a.text) for a in area.slots] == [("inArea", "中国")]


def test_ambiguous_spans_resolved():
    recs = by_line(load()[0])
    text = recs[4].text
    rel = [x for x in recs[4].relations if x.label == "饰演"][0]
    # 楚留香 occurs 3 times: in quotes (15), inside 《楚留香新传》 (50), after 饰演 (59)
    assert [i for i in range(len(text)) if text.startswith("楚留香", i)] == [15, 50, 59]
    assert rel.tail.start == 59
    # 张秋生 appears inside the book title and alone: the nested one is skipped
    r = recs[28]
    author = r.relations[0]
    assert author.tail.text == "张秋生" and author.tail.start == r.text.rindex("张秋生") != r.text.index("张秋生")


def test_stats_on_excerpt():
    _, st = load()
    assert st["records"] == 28
    assert st["relations"] == 45
    assert st["complex_objects"] == 9
    assert st["duplicate_spo"] == 2
    assert st["span_not_found"] == 0
    assert st["span_resolved_nested"] == 1
    assert st["span_ambiguous"] == st["span_resolved_nested"] + st["span_resolved_distance"] == 23


def test_duplicates_dropped():
    recs = load()[0]
    for r in recs:
        keys = [(x.head, x.label, x.tail, x.slots) for x in r.relations]
        assert len(keys) == len(set(keys))


def test_not_found_and_tie_rules(tmp_path):
    row = {"text": "李四，张三，李四", "spo_list": [
        {"predicate": "妻子", "subject_type": "人物", "subject": "张三",
         "object_type": {"@value": "人物"}, "object": {"@value": "李四"}},
        {"predicate": "丈夫", "subject_type": "人物", "subject": "张三",
         "object_type": {"@value": "人物"}, "object": {"@value": "王五"}}]}
    recs, st = load(write(tmp_path, [json.dumps(row, ensure_ascii=False)]))
    a, b = recs[0].relations
    assert (a.head.start, a.tail.start) == (3, 0)  # both 李四 are 1 char away: earliest wins
    assert b.head.start == 3 and (b.tail.start, b.tail.end) == (None, None)
    assert st["span_not_found"] == 1 and st["span_ambiguous"] == 1


def test_overlapping_occurrence_avoided(tmp_path):
    # subject text equals object text: the two must not take the same occurrence
    row = {"text": "周杰伦演唱会上周杰伦唱歌", "spo_list": [
        {"predicate": "主演", "subject_type": "影视作品", "subject": "周杰伦演唱会",
         "object_type": {"@value": "人物"}, "object": {"@value": "周杰伦"}}]}
    rel = load(write(tmp_path, [json.dumps(row, ensure_ascii=False)]))[0][0].relations[0]
    assert (rel.head.start, rel.tail.start) == (0, 7)
    row = {"text": "张三说张三", "spo_list": [
        {"predicate": "丈夫", "subject_type": "人物", "subject": "张三",
         "object_type": {"@value": "人物"}, "object": {"@value": "张三"}}]}
    rel = load(write(tmp_path, [json.dumps(row, ensure_ascii=False)]))[0][0].relations[0]
    assert (rel.head.start, rel.tail.start) == (0, 3)


def test_render_parse_roundtrip():
    for r in load()[0]:
        got = parse(render(r), "RE", r.options, r.roles)
        assert not got.dropped, (r.id, got.dropped)
        key = lambda rs: {(x.head.text, x.label, x.tail.text, tuple((a.role, a.text) for a in x.slots)) for x in rs}
        assert key(got.relations) == key(r.relations)


BAD = [
    ("{not json", "malformed JSON"),
    ('{"spo_list": []}', "'text'"),
    ('{"text": "张三"}', "spo_list"),
    ('{"text": "张三", "spo_list": [{"subject": "张三", "object": {"@value": "李四"}}]}', "predicate"),
    ('{"text": "张三", "spo_list": [{"predicate": "妻子", "object": {"@value": "李四"}}]}', "subject"),
    ('{"text": "张三", "spo_list": [{"predicate": "妻子", "subject": "张三"}]}', "object"),
    ('{"text": "张三", "spo_list": [{"predicate": "不存在", "subject": "张三", "object": {"@value": "李四"}}]}', "not in the schema"),
    ('{"text": "张三", "spo_list": [{"predicate": "妻子", "subject": "张三", "object": {"@value": "李四", "inWork": "x"}}]}', "inWork"),
]


@pytest.mark.parametrize("bad,what", BAD)
def test_bad_line_raises_with_file_and_line(tmp_path, bad, what):
    good = lines()[:3]
    p = write(tmp_path, good[:2] + [bad] + good[2:])
    with pytest.raises(InputError) as e:
        load(p)
    assert f"{p}:3:" in str(e.value) and what in str(e.value)
    skip = SkipCounter(True)
    recs, _ = load(p, on_error=skip)
    assert skip.count == 1 and [r.meta["line"] for r in recs] == [1, 2, 4]


def test_unlabeled_records_need_option(tmp_path):
    p = write(tmp_path, ['{"text": "张三是李四的丈夫"}'])
    with pytest.raises(InputError):
        load(p)
    recs, _ = load(p, labeled=False)
    assert len(recs) == 1 and recs[0].relations == []


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="schema"):
        list(read(str(DATA)))
    with pytest.raises(ConfigError, match="bogus"):
        list(read(str(DATA), schema=str(SCHEMA), bogus=1))
    bad_schema = tmp_path / "schema.json"
    rows = SCHEMA.read_text(encoding="utf-8").splitlines()
    bad_schema.write_text("\n".join(rows[:5] + ['{"predicate": "x", "subject_type": "人物"}'] + rows[5:]), encoding="utf-8")
    with pytest.raises(InputError) as e:
        list(read(str(DATA), schema=str(bad_schema)))
    assert f"{bad_schema}:6:" in str(e.value) and "object_type" in str(e.value)
