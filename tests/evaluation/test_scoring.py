"""Scorers (instructie.evaluation.scoring): hand-computed P/R/F1 for every task, and seqeval agreement."""
import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from instructie.prompts.offsets import ground
from instructie.core.records import Argument, Entity, Event, Record, Relation
from instructie.evaluation.scoring import (Prediction, format_table, ner_seqeval, score_all, score_task, to_bio)
from instructie.prompts.targets import ParseResult, parse

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "scoring" / "conll2003_sample.json"


def rec(task, text="", ds="d", **kw):
    return Record(id="1", dataset=ds, task=task, text=text, **kw)


def prf(ts, metric):
    c = ts.metrics[metric]
    return (c.tp, c.fp, c.fn), (c.precision, c.recall, c.f1)


def f1(p, r):
    return 2 * p * r / (p + r)


# ---------------------------------------------------------------- NER / ES / ET
def test_ner_hand_computed_with_per_label_rows():
    text = "Paris and Rome met Bob ."
    gold = rec("NER", text, entities=[Entity("LOC", "Paris", 0, 5), Entity("LOC", "Rome", 10, 14), Entity("PER", "Bob", 19, 22)])
    pred = Prediction(entities=[Entity("LOC", "Paris", 0, 5), Entity("PER", "Rome", 10, 14),
                                Entity("PER", "Bob", 19, 22), Entity("LOC", "met", 15, 18)])
    ts = score_task([gold], [pred])
    counts, vals = prf(ts, "entity")
    assert counts == (2, 2, 1) and vals == pytest.approx((2 / 4, 2 / 3, f1(2 / 4, 2 / 3)))
    lab = ts.labels()["entity"]
    assert (lab["LOC"]["tp"], lab["LOC"]["fp"], lab["LOC"]["fn"]) == (1, 1, 1)
    assert (lab["PER"]["tp"], lab["PER"]["fp"], lab["PER"]["fn"], lab["PER"]["support"]) == (1, 1, 0, 1)
    assert ts.values()["entity_f1"] == pytest.approx(f1(0.5, 2 / 3))


def test_repeated_mentions_score_on_offsets():
    text = "Wales beat Wales A ."
    gold = rec("NER", text, entities=[Entity("LOC", "Wales", 0, 5), Entity("ORG", "Wales", 11, 16)])
    # Right strings, second one at the wrong occurrence: one hit, one miss.
    wrong = Prediction(entities=[Entity("LOC", "Wales", 0, 5), Entity("ORG", "Wales", 0, 5)])
    assert prf(score_task([gold], [wrong]), "entity")[0] == (1, 1, 1)
    # Through grounding, output order gives the second mention the second occurrence.
    g = ground(ParseResult(entities=[Entity("LOC", "Wales"), Entity("ORG", "Wales")]), text, "NER")
    assert prf(score_task([gold], [Prediction.from_grounded(g)]), "entity")[0] == (2, 0, 0)


def test_duplicates_in_predictions_are_false_positives():
    gold = rec("NER", "Bob .", entities=[Entity("PER", "Bob", 0, 3)])
    pred = Prediction(entities=[Entity("PER", "Bob", 0, 3)] * 3)
    assert prf(score_task([gold], [pred]), "entity")[0] == (1, 2, 0)
    gold_t = rec("NER", "Bob met Bob .", entities=[Entity("PER", "Bob")] * 2)  # text level: a multiset
    pred_t = Prediction(entities=[Entity("PER", "Bob")] * 3)
    assert prf(score_task([gold_t], [pred_t]), "entity")[0] == (2, 1, 0)


def test_empty_gold_and_empty_prediction_give_no_true_positive():
    ts = score_task([rec("NER", "nothing here")] * 3, [Prediction()] * 3)
    c = ts.metrics["entity"]
    assert (c.tp, c.fp, c.fn, c.support) == (0, 0, 0, 0)
    assert (c.precision, c.recall, c.f1) == (0.0, 0.0, 0.0)  # documented: 0 when undefined
    assert ts.per_label["entity"] == {}
    rc = score_task([rec("RC", relations=[])], [Prediction()])
    assert rc.metrics["label"].tp == 0 and rc.extra["accuracy"] == 0.0


def test_unlocated_spans_match_on_text_only_across_unlocated_side():
    text = "Acme hired Bob ."
    gold = rec("NER", text, entities=[Entity("ORG", "Acme", 0, 4), Entity("PER", "Zed")])  # Zed not in text
    pred = Prediction(entities=[Entity("ORG", "Acme"), Entity("PER", "Zed", 10, 13)])
    # Acme: unlocated pred vs located gold -> text; Zed: located pred vs unlocated gold -> text.
    assert prf(score_task([gold], [pred]), "entity")[0] == (2, 0, 0)
    # Located on both sides: offsets decide, equal text is not enough.
    pred2 = Prediction(entities=[Entity("ORG", "Acme", 5, 9)])
    assert prf(score_task([gold], [pred2]), "entity")[0] == (0, 1, 2)
    # String-level scoring (DuIE/DuEE style) ignores offsets.
    assert prf(score_task([gold], [pred2], spans="text"), "entity")[0] == (1, 0, 1)
    with pytest.raises(ValueError):
        score_task([gold], [pred2], spans="chars")


def test_unsupported_predictions_count_as_false_positives():
    text = "Acme hired Bob ."
    gold = rec("NER", text, entities=[Entity("ORG", "Acme", 0, 4), Entity("PER", "Bob", 11, 14)])
    res = parse("Acme | ORG; Bob | PER; Initech | ORG; Bob | PER", "NER")
    g = ground(res, text, "NER")
    pred = Prediction.from_grounded(g, res.dropped)
    ts = score_task([gold], [pred])
    # the repeated "Bob" has no second occurrence: located on the first, it is a copy of a mention
    # already predicted, kept once (gold never lists a mention twice) and counted as a duplicate
    assert prf(ts, "entity")[0] == (2, 1, 0)
    assert ts.n_unsupported == 1 and ts.dropped == {"duplicate": 1}
    # an event whose argument is not in the text is unsupported: its copies stay too
    text2 = "Obama won the election in Paris ."
    res = parse("won | win | winner=Bush; won | win | winner=Bush", "EE", options=["win"], roles={"win": ["winner"]})
    p = Prediction.from_grounded(ground(res, text2, "EE"), res.dropped)
    assert len(p.events) == 2 and p.n_unsupported == 2 and not p.dropped
    # an unsupported item repeated stays twice: each is a claim of its own
    res = parse("Initech | ORG; Initech | ORG", "NER")
    assert len(Prediction.from_grounded(ground(res, text, "NER"), res.dropped).entities) == 2
    # a located event written again with its arguments in another order is the same event
    res = parse("won | win | winner=Obama | place=Paris; won | win | place=Paris | winner=Obama", "EE",
                options=["win"], roles={"win": ["winner", "place"]})
    p = Prediction.from_grounded(ground(res, text2, "EE"), res.dropped)
    assert len(p.events) == 1 and p.dropped == {"duplicate": 1}
    # two arguments in one role, one located and one not: the event is unsupported, kept as it is
    res = parse("won | win | winner=Obama | winner=Bush; won | win | winner=Bush | winner=Obama", "EE",
                options=["win"], roles={"win": ["winner"]})
    p = Prediction.from_grounded(ground(res, text2, "EE"), res.dropped)
    assert len(p.events) == 2 and not p.dropped


def test_es_ignores_labels_and_et_uses_them():
    text = "Paris and Rome"
    ents = [Entity("LOC", "Paris", 0, 5), Entity("LOC", "Rome", 10, 14)]
    pred = Prediction(entities=[Entity("", "Paris", 0, 5), Entity("", "and", 6, 9)])
    es = score_task([rec("ES", text, entities=ents)], [pred])
    assert prf(es, "span") == ((1, 1, 1), pytest.approx((0.5, 0.5, 0.5)))
    assert es.per_label["span"] == {}
    et = score_task([rec("ET", text, entities=ents)], [Prediction(entities=[Entity("LOC", "Paris", 0, 5), Entity("PER", "Rome", 10, 14)])])
    assert prf(et, "entity")[0] == (1, 1, 1)


# ---------------------------------------------------------------- RE / EP / EPR
def R(h, lab, t, **slots):
    return Relation(Entity("", h), lab, Entity("", t), tuple(Argument(k, v) for k, v in slots.items()))


def test_re_triples_slots_and_per_relation():
    gold = rec("RE", relations=[R("甲", "饰演", "乙", inWork="剧"), R("甲", "国籍", "中国"), R("丙", "国籍", "中国")])
    pred = Prediction(relations=[R("甲", "饰演", "乙", inWork="别的剧"), R("甲", "国籍", "中国"),
                                 R("丙", "国籍", "日本"), R("甲", "国籍", "中国")])  # last: a duplicate
    ts = score_task([gold], [pred])
    assert prf(ts, "triple") == ((1, 3, 2), pytest.approx((1 / 4, 1 / 3, f1(1 / 4, 1 / 3))))
    assert prf(ts, "triple_no_slots")[0] == (2, 2, 1)
    lab = ts.labels()["triple"]
    assert (lab["饰演"]["tp"], lab["饰演"]["fp"], lab["饰演"]["fn"]) == (0, 1, 1)
    assert (lab["国籍"]["tp"], lab["国籍"]["fp"], lab["国籍"]["fn"]) == (1, 2, 1)


def test_re_slot_sets_compare_regardless_of_order():
    gold = rec("RE", relations=[Relation(Entity("", "a"), "r", Entity("", "b"), (Argument("x", "1"), Argument("y", "2")))])
    pred = Prediction(relations=[Relation(Entity("", "a"), "r", Entity("", "b"), (Argument("y", "2"), Argument("x", "1")))])
    assert prf(score_task([gold], [pred]), "triple")[0] == (1, 0, 0)
    missing = Prediction(relations=[Relation(Entity("", "a"), "r", Entity("", "b"), (Argument("x", "1"),))])
    assert prf(score_task([gold], [missing]), "triple")[0] == (0, 1, 1)


def test_ep_pairs_and_epr_as_re():
    gold_rels = [R("a", "r1", "b"), R("a", "r2", "c")]
    ep = score_task([rec("EP", relations=gold_rels)], [Prediction(relations=[R("a", "", "b"), R("c", "", "a")])])
    assert prf(ep, "pair")[0] == (1, 1, 1)
    epr = score_task([rec("EPR", relations=gold_rels)], [Prediction(relations=[R("a", "r1", "b"), R("a", "r1", "c")])])
    assert prf(epr, "triple")[0] == (1, 1, 1)


# ---------------------------------------------------------------- EE / EET / EEA
def EV(typ, trig, start, *args):
    return Event(typ, Entity(typ, trig, start, start + len(trig)), tuple(Argument(r, t) for r, t in args))


def test_ee_trigger_and_argument_metrics():
    text = "Rebels attacked the town and Police arrested them ."
    gold = rec("EE", text, events=[EV("Attack", "attacked", 7, ("attacker", "Rebels"), ("target", "town")),
                                   EV("Arrest", "arrested", 36, ("agent", "Police"))])
    pred = Prediction(events=[
        EV("Attack", "attacked", 7, ("attacker", "Rebels"), ("attacker", "town")),  # role wrong on town
        EV("Attack", "arrested", 36, ("agent", "Police")),                         # type wrong
    ])
    ts = score_task([gold], [pred])
    assert prf(ts, "trigger_id")[0] == (2, 0, 0)
    assert prf(ts, "trigger_cls")[0] == (1, 1, 1)
    # arg_id = (type, text): Rebels, town hit; Police predicted under Attack -> miss.
    assert prf(ts, "arg_id") == ((2, 1, 1), pytest.approx((2 / 3, 2 / 3, 2 / 3)))
    # arg_cls = (type, role, text): only Rebels.
    assert prf(ts, "arg_cls") == ((1, 2, 2), pytest.approx((1 / 3, 1 / 3, 1 / 3)))
    lab = ts.labels()
    assert set(lab["trigger_cls"]) == {"Attack", "Arrest"} and lab["trigger_id"] == {}
    assert lab["arg_cls"]["attacker"]["tp"] == 1 and lab["arg_cls"]["attacker"]["fp"] == 1


def test_eet_and_eea():
    text = "Rebels attacked the town ."
    gold = rec("EET", text, events=[EV("Attack", "attacked", 7)])
    eet = score_task([gold], [Prediction(events=[EV("Attack", "attacked", 7), EV("Attack", "town", 20)])])
    assert set(eet.metrics) == {"trigger_id", "trigger_cls"} and prf(eet, "trigger_cls")[0] == (1, 1, 0)
    gold_a = rec("EEA", text, events=[EV("Attack", "attacked", 7, ("attacker", "Rebels"), ("target", "town"))])
    res = parse("Rebels | attacker; town | attacker", "EEA")
    g = ground(res, text, "EEA")  # no prompted event given: type unknown, still scored
    eea = score_task([gold_a], [Prediction.from_grounded(g)])
    assert set(eea.metrics) == {"arg_id", "arg_cls"}
    assert prf(eea, "arg_id")[0] == (2, 0, 0) and prf(eea, "arg_cls")[0] == (1, 1, 1)


# ---------------------------------------------------------------- RC / NEG
def test_rc_accuracy_and_macro_f1():
    golds = [rec("RC", relations=[R("h", lab, "t")]) for lab in ["a", "a", "b", "c"]]
    preds = [Prediction(labels=[x]) for x in ["a", "b", "b"]] + [Prediction()]
    ts = score_task(golds, preds)
    assert ts.extra["accuracy"] == pytest.approx(2 / 4)
    # a: P 1 R .5 F1 2/3; b: P .5 R 1 F1 2/3; c: 0  -> macro 4/9
    assert ts.extra["macro_f1"] == pytest.approx(4 / 9)
    assert prf(ts, "label")[0] == (2, 1, 2)


def test_neg_entities_negative_flag_and_competition():
    golds = [rec("NEG", entities=[Entity("", "甲"), Entity("", "乙")]), rec("NEG"), rec("NEG", entities=[Entity("", "丙")])]
    preds = [Prediction(labels=["甲"]), Prediction(labels=["丁"]), Prediction()]
    ts = score_task(golds, preds)
    assert prf(ts, "entity")[0] == (1, 1, 2)
    assert prf(ts, "negative")[0] == (1, 1, 1)
    # BDCI 2019: 0.4 * F1(negative flag) + 0.6 * micro F1(key entities)
    # flag: P = R = 1/2 -> 0.5; entities: P = 1/2, R = 1/3 -> 0.4; score 0.2 + 0.24
    assert ts.extra["competition_f1_sentiment"] == pytest.approx(0.5)
    assert ts.extra["competition_f1_entity"] == pytest.approx(0.4)
    assert ts.extra["competition"] == pytest.approx(0.44)


# ---------------------------------------------------------------- report
def test_score_all_groups_and_reports():
    golds = [rec("NER", "Bob .", ds="A", entities=[Entity("PER", "Bob", 0, 3)]),
             rec("RE", ds="B", relations=[R("a", "r", "b")]),
             rec("NER", "Al .", ds="A", entities=[Entity("PER", "Al", 0, 2)])]
    preds = [Prediction(entities=[Entity("PER", "Bob", 0, 3)], dropped=Counter(unknown_label=2)),
             Prediction(relations=[R("a", "r", "b")], n_unsupported=1),
             Prediction()]
    rep = score_all(golds, preds)
    assert [(s.dataset, s.task, s.n_records) for s in rep.scores] == [("A", "NER", 2), ("B", "RE", 1)]
    a = rep.get("A", "NER")
    assert a.values()["entity_recall"] == 0.5 and a.dropped == Counter(unknown_label=2)
    assert rep.get("B", "RE").n_unsupported == 1
    js = json.loads(json.dumps(rep.to_json()))
    assert js[0]["per_label"]["entity"]["PER"]["support"] == 2 and js[0]["dropped"] == {"unknown_label": 2}
    table = format_table(rep)
    lines = table.splitlines()
    assert lines[0].split() == ["dataset", "task", "metric", "label", "P", "R", "F1", "support"]
    rows = [ln for ln in lines[2:] if ln and not ln.startswith(("A NER:", "B RE:"))]
    assert ["A", "NER", "entity", "PER", "1.0000", "0.5000", "0.6667", "2"] in [r.split() for r in rows]
    assert len({len(r) for r in lines[:2]}) == 1  # header and rule aligned
    assert "dropped: unknown_label=2" in table and "unsupported=1" in table
    with pytest.raises(ValueError):
        score_all(golds, preds[:2])


def test_table_aligns_cjk_labels():
    gold = rec("RE", ds="DuIE", relations=[R("甲", "国籍", "中国"), R("甲", "x", "y")])
    table = format_table(score_all([gold], [Prediction(relations=[R("甲", "国籍", "中国")])]))
    rows = [ln for ln in table.splitlines()[:6]]
    ends = {len(ln) + sum(1 for ch in ln if "\u4e00" <= ch <= "\u9fff") for ln in rows}
    assert len(ends) == 1, table  # same display width: the support column lines up


# ---------------------------------------------------------------- seqeval agreement
def conll_records():
    rows = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return [Record(id=str(i), dataset="CoNLL2003", task="NER", text=r["sentence"],
                   entities=[Entity(e["type"], e["name"], *e["pos"]) for e in r["entities"]])
            for i, r in enumerate(rows)]


def perturb(rec_: Record, rng: random.Random) -> Prediction:
    """Drop, relabel, shift (by a token, staying token-aligned and non-overlapping), add."""
    toks = [(m.start(), m.end()) for m in re.finditer(r"\S+", rec_.text)]
    labels = ["location", "miscellaneous", "organization", "person"]
    out = []
    for e in rec_.entities:
        x = rng.random()
        if x < 0.15:
            continue
        if x < 0.3:
            e = Entity(rng.choice([lab for lab in labels if lab != e.label]), e.text, e.start, e.end)
        elif x < 0.45:
            i = next(k for k, t in enumerate(toks) if t[0] == e.start)
            j = next(k for k, t in enumerate(toks) if t[1] == e.end)
            if j + 1 < len(toks):
                e = Entity(e.label, rec_.text[toks[i][0]:toks[j + 1][1]], toks[i][0], toks[j + 1][1])
        out.append(e)
    if toks and rng.random() < 0.3:
        t = rng.choice(toks)
        out.append(Entity("miscellaneous", rec_.text[t[0]:t[1]], *t))
    # Keep what BIO can represent: token-aligned, non-overlapping.
    kept = []
    for e in out:
        if all(e.end <= k.start or k.end <= e.start for k in kept):
            kept.append(e)
    return Prediction(entities=kept)


def test_seqeval_and_span_scorer_agree_on_real_conll():
    golds = conll_records()
    assert len(golds) == 40 and sum(len(g.entities) for g in golds) > 100
    for seed in range(5):
        rng = random.Random(seed)
        preds = [perturb(g, rng) for g in golds]
        ours = score_task(golds, preds)
        sq = ner_seqeval(golds, preds)
        c = ours.metrics["entity"]
        assert 0.3 < c.f1 < 0.95  # the perturbation really perturbs
        assert sq["untaggable_gold"] == sq["untaggable_pred"] == 0
        assert abs(c.f1 - sq["f1"]) < 1e-9
        assert abs(c.precision - sq["precision"]) < 1e-9 and abs(c.recall - sq["recall"]) < 1e-9
        for lab, row in sq["per_label"].items():
            mine = ours.per_label["entity"][lab]
            assert abs(mine.f1 - row["f1-score"]) < 1e-9 and mine.support == row["support"]
    perfect = ner_seqeval(golds, [Prediction(entities=list(g.entities)) for g in golds])
    assert perfect["f1"] == 1.0


def test_to_bio_counts_what_it_cannot_tag():
    tags, bad = to_bio("New York Times", [Entity("ORG", "New York Times", 0, 14), Entity("LOC", "New York", 0, 8),
                                          Entity("LOC", "Yor", 4, 7), Entity("LOC", "X")])
    assert tags == ["B-ORG", "I-ORG", "I-ORG"] and bad == 3


def test_option_order_evaluation_permutes_options_but_keeps_the_set():
    """`instructie test --option-seed`: the same records asked with options in another order."""
    from instructie.evaluation.evaluate import reorder_options
    from instructie.inference.predict import record_prompts
    from instructie.prompts.instructions import load_templates

    r = rec("NER", "Acme hired Bob .", entities=[Entity("ORG", "Acme", 0, 4)])
    r.options = ["ORG", "PER", "LOC", "MISC", "DATE", "TIME"]
    a, b = reorder_options(r, 1), reorder_options(r, 2)
    assert sorted(a.options) == sorted(b.options) == sorted(r.options)
    assert a.options != r.options or b.options != r.options
    assert reorder_options(r, 1).options == a.options  # deterministic per seed
    src = record_prompts(a, load_templates(), None)[0].source
    assert "Option: " + ", ".join(a.options) in src


def test_answers_of_option_chunks_are_grounded_chunk_by_chunk(monkeypatch):
    """Labels asked in several prompts: each answer is placed in the text on its own, so
    "Tim" answered after "Paris" in another prompt still lands on the first Tim."""
    from instructie.decoding import generation
    from instructie.evaluation.evaluate import predict
    from instructie.decoding.generation import Generated
    from instructie.inference.predict import Decoding
    from instructie.prompts.instructions import load_templates

    text = "Tim met Bob in Paris. Tim left."
    gold = rec("NER", text, entities=[Entity("person", "Tim", 0, 3), Entity("person", "Bob", 8, 11),
                                      Entity("location", "Paris", 15, 20)])
    gold.options = ["location", "person"]

    def scripted(model, tok, sources, **kw):
        return [Generated("Paris | location" if "Option: location" in s else "Tim | person; Bob | person", [], [])
                for s in sources]

    monkeypatch.setattr(generation, "generate", scripted)

    class _Cfg:
        vocab_size = 10

    class _Model:
        config = _Cfg()

    [(preds, _)] = predict(_Model(), None, [gold], load_templates(), Decoding(max_source_length=64, max_new_tokens=16),
                           max_options=1)
    assert sorted((e.start, e.end, e.label) for e in preds[0].entities) == [(0, 3, "person"), (8, 11, "person"),
                                                                           (15, 20, "location")]
    assert prf(score_task([gold], preds), "entity")[0] == (3, 0, 0)


def test_evaluation_reports_prompts_cut_to_the_source_limit(tiny_model_dir):
    """A test prompt longer than max_source_length reaches the model without its end (memory hint,
    'Answer:'): the score table says how many, per dataset, instead of hiding it."""
    from instructie.evaluation.evaluate import predict
    from instructie.inference.predict import Decoding
    from instructie.prompts.instructions import load_templates
    from instructie.model.loading import load_trained
    from instructie.evaluation.scoring import score_all

    model, tok = load_trained(tiny_model_dir, device="cpu")
    short = rec("NER", "Obama visited Paris .", entities=[Entity("person", "Obama", 0, 5)])
    long_ = rec("NER", "Obama visited Paris . " * 30, entities=[Entity("person", "Obama", 0, 5)])
    for r in (short, long_):
        r.options = ["person", "location"]
    [(preds, _)] = predict(model, tok, [short, long_], load_templates(),
                           Decoding(max_source_length=64, max_new_tokens=4), max_options=1)
    assert [p.n_truncated for p in preds] == [0, 2]  # two option chunks, both cut
    rep = score_all([short, long_], preds)
    assert rep.scores[0].n_truncated == 2 and rep.scores[0].to_json()["truncated_prompts"] == 2
    assert "truncated_prompts=2" in format_table(rep)
    [(preds, _)] = predict(model, tok, [long_], load_templates(), Decoding(max_source_length=512, max_new_tokens=4),
                           max_options=None)
    assert preds[0].n_truncated == 0
