"""fin_negative adapter and competition score, on real CCF BDCI 2019 rows (tests/fixtures/fin_negative)."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from instructie.data_adapters import get_adapter
from instructie.data_adapters.fin_negative import compose
from instructie.evaluation.competition import competition_score, to_competition
from instructie.core.io import ConfigError, InputError, SkipCounter
from instructie.prompts.targets import parse, render

DIR = Path(__file__).resolve().parents[1] / "fixtures" / "fin_negative"
TRAIN, TEST = DIR / "Train_Data.csv", DIR / "Test_Data.csv"
read = get_adapter("fin_negative")


def rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def write(path: Path, header: list[str], body: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(body)
    return path


def test_train_records_match_csv():
    src = rows(TRAIN)
    stats = Counter()
    recs = list(read(TRAIN, stats=stats))
    assert [r.id for r in recs] == [r["id"] for r in src] and stats["records"] == len(src)
    for rec, r in zip(recs, src):
        assert rec.task == "NEG" and rec.dataset == "fin_negative" and rec.language == "zh" and rec.split == "train"
        cands = list(dict.fromkeys(c.strip() for c in r["entity"].split(";") if c.strip()))
        assert rec.options == cands
        keys = [k for k in r["key_entity"].split(";") if k]
        assert [e.text for e in rec.entities] == keys and all(e.label == "negative" for e in rec.entities)
        assert rec.meta["negative"] == int(r["negative"]) and rec.meta["labeled"] is True
        if r["negative"] == "0":
            assert rec.entities == []
        for e in rec.entities:
            if e.start is not None:
                assert rec.text[e.start:e.end] == e.text
                assert rec.text.find(e.text) == e.start  # first occurrence
    assert sum(r.meta["negative"] == 0 for r in recs) >= 10
    # "资易贷（北京）…" is written "资易贷(北京)…" in its text: no offsets, counted
    absent = [e for r in recs for e in r.entities if e.start is None]
    assert [e.text for e in absent] == ["资易贷（北京）金融信息服务有限公司"] and stats["key_not_in_text"] == 1


def test_title_composition():
    by_id = {r["id"]: r for r in rows(TRAIN)}
    recs = {r.id: r for r in read(TRAIN, max_chars=0)}
    same = [i for i, r in by_id.items() if r["title"] == r["text"]]
    assert len(same) >= 3
    for i in same:  # title == text: once only
        assert recs[i].text == compose("", by_id[i]["text"])
    kept = recs["ac40252b"]  # a real headline, not a copy of the text
    assert kept.text.startswith(by_id["ac40252b"]["title"].strip() + "\n")
    prefix = recs["1ad5be0d"]  # title is a truncated near-copy of the text: dropped
    assert "\n" not in prefix.text and prefix.text.startswith(by_id["1ad5be0d"]["text"][:20])
    assert "{IMG:" not in "".join(r.text for r in recs.values())
    assert all(not r.text.endswith("?") for r in recs.values())
    assert recs["5aabe84e"].entities[0].text == "????宜湃网" and recs["5aabe84e"].entities[0].start is not None


def test_truncation_keeps_key_entities():
    full = {r.id: r for r in read(TRAIN, max_chars=0)}
    stats = Counter()
    cut = list(read(TRAIN, stats=stats))
    long = [r for r in cut if full[r.id].meta["orig_chars"] > 400]
    assert len(long) >= 5 and stats["truncated"] == len(long)
    for r in cut:
        assert len(r.text) <= 400 and r.meta["orig_chars"] == len(full[r.id].text)
        assert r.meta["truncated"] == (r.meta["orig_chars"] > 400)
    for r in long:
        assert "…" in r.text
        for e in full[r.id].entities:
            if e.start is not None:  # in the full text -> still in the cut text, offsets re-based
                got = next(x for x in r.entities if x.text == e.text)
                assert r.text[got.start:got.end] == e.text
        for c in r.options:  # every mentioned candidate survives at the default size
            assert (c in r.text) == (c in full[r.id].text)
    head = full["9787299999999999059427328"]  # 4,931 chars; its key entities first appear at ~316
    assert head.meta["orig_chars"] > 4000


def test_test_file_unlabeled_with_bom():
    assert TEST.read_bytes()[:3] == b"\xef\xbb\xbf"
    recs = list(read(TEST))
    assert [r.id for r in recs] == [r["id"] for r in rows(TEST)]
    assert all(r.split == "test" and r.entities == [] and r.meta["negative"] is None and not r.meta["labeled"] for r in recs)
    assert all(r.options for r in recs)


def test_folder_and_split(tmp_path):
    both = list(read(DIR))
    assert Counter(r.split for r in both) == {"train": len(rows(TRAIN)), "test": len(rows(TEST))}
    assert {r.split for r in read(DIR, split="test")} == {"test"}
    unlabeled = list(read(TRAIN, labeled=False))
    assert all(r.entities == [] and r.meta["negative"] is None for r in unlabeled)
    with pytest.raises(InputError, match="labeled=true"):
        list(read(TEST, labeled=True))
    with pytest.raises(ConfigError, match="window"):
        list(read(TRAIN, window=3))
    with pytest.raises(ConfigError):
        list(read(TRAIN, max_chars=10))


def test_bad_header(tmp_path):
    f = write(tmp_path / "train.csv", ["id", "title", "content", "entity"], [["a", "", "x", "y"]])
    with pytest.raises(InputError) as ei:
        list(read(f))
    assert str(f) in str(ei.value) and "id,title,text,entity[,negative,key_entity]" in str(ei.value)


@pytest.mark.parametrize("row, problem", [
    (["", "t", "text", "A", "0", ""], "missing id"),
    (["x1", "t", "text", "A", "2", ""], "negative must be 0 or 1"),
    (["x1", "t", "text A", "A", "1", ""], "negative=1 but key_entity is empty"),
    (["x1", "t", "text A", "A", "0", "A"], "negative=0 but key_entity"),
    (["83dcefb7", "t", "text", "A", "0", ""], "duplicate id"),
    (["x1", "t", "text"], "expected 6 columns"),
])
def test_bad_rows(tmp_path, row, problem):
    src = list(csv.reader(open(TRAIN, encoding="utf-8", newline="")))
    f = write(tmp_path / "Train_Data.csv", src[0], src[1:3] + [row] + src[3:6])
    with pytest.raises(InputError) as ei:
        list(read(f))
    assert f"{f}:4: " in str(ei.value) and problem in str(ei.value)  # file and line
    skip, stats = SkipCounter(True), Counter()
    recs = list(read(f, on_error=skip, stats=stats))
    assert len(recs) == 5 and skip.count == 1 and stats["invalid"] == 1


def test_key_not_candidate_kept_as_option(tmp_path):
    f = write(tmp_path / "Train_Data.csv", ["id", "title", "text", "entity", "negative", "key_entity"],
              [["k1", "", "甲公司逾期，乙平台跑路", "甲公司; ;甲公司", "1", "乙平台"]])
    stats = Counter()
    rec = next(read(f, stats=stats))
    assert rec.options == ["甲公司", "乙平台"] and stats["key_not_candidate"] == 1
    assert rec.text[rec.entities[0].start:rec.entities[0].end] == "乙平台"


def test_render_parse_round_trip():
    for rec in read(TRAIN):
        got = parse(render(rec), "NEG", rec.options)
        assert got.labels == [e.text for e in rec.entities] and not got.dropped


def test_competition_score_hand_example():
    gold = {"a": (1, {"X", "Y"}), "b": (0, set()), "c": (1, {"Z"}), "d": (0, set())}
    pred = {"a": (1, {"X"}), "b": (1, {"W"}), "c": (0, set()), "e": (1, {"Q"})}  # d missing, e extra
    s = competition_score(gold, pred)
    # sentiment: TP a, FP b, FN c -> P = R = 1/2; entity: TP X of 2 predicted, 3 gold -> P 1/2, R 1/3
    assert s["f1_sentiment"] == pytest.approx(0.5)
    assert (s["precision_entity"], s["recall_entity"]) == (pytest.approx(0.5), pytest.approx(1 / 3))
    assert s["f1_entity"] == pytest.approx(0.4)
    assert s["score"] == pytest.approx(0.4 * 0.5 + 0.6 * 0.4) and s["extra_ids"] == 1
    assert competition_score(gold, {})["score"] == 0.0


def test_competition_score_from_records():
    recs = list(read(TRAIN))
    gold = to_competition(recs)
    assert competition_score(gold, gold)["score"] == pytest.approx(1.0)
    answers = {r.id: [e.text for e in r.entities][:1] for r in recs}  # first key entity only
    s = competition_score(gold, to_competition(recs, answers))
    assert s["f1_sentiment"] == pytest.approx(1.0) and s["precision_entity"] == pytest.approx(1.0)
    n_gold = sum(len(r.entities) for r in recs)
    n_neg = sum(bool(r.entities) for r in recs)
    assert n_neg < n_gold and s["recall_entity"] == pytest.approx(n_neg / n_gold)
