"""Grounding parsed spans in the source text (instructie.prompts.offsets)."""
import json
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from instructie.prompts.offsets import ground, ground_for
from instructie.core.records import Argument, Entity, Event, Record, Relation
from instructie.prompts.targets import ParseResult, parse

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "scoring" / "conll2003_sample.json"


def spans(items):
    return [(x.text, x.start, x.end) for x in items]


def test_repeated_mentions_get_distinct_offsets_then_reuse_first():
    text = "Wales beat Wales A , and Wales lost ."
    res = ParseResult(entities=[Entity("LOC", "Wales")] * 3 + [Entity("ORG", "Wales")])
    g = ground(res, text, "NER")
    assert spans(g.entities) == [("Wales", 0, 5), ("Wales", 11, 16), ("Wales", 25, 30), ("Wales", 0, 5)]
    assert g.unsupported == [] and g.n_unsupported == 0


def test_prefers_occurrence_not_inside_an_assigned_span():
    text = "New York and York ."
    g = ground(ParseResult(entities=[Entity("LOC", "New York"), Entity("LOC", "York")]), text, "NER")
    assert spans(g.entities) == [("New York", 0, 8), ("York", 13, 17)]


def test_relation_pairs_closest_occurrences_when_names_repeat():
    text = "John met Mary in Paris . Later John met Anna in London ."
    res = parse("John | met | Mary; John | met | Anna; Mary | visited | Paris; Anna | visited | London", "RE")
    g = ground(res, text, "RE")
    got = [(r.head.start, r.label, r.tail.start) for r in g.relations]
    assert got == [(0, "met", 9), (31, "met", 40), (9, "visited", 17), (40, "visited", 48)]
    for r in g.relations:
        assert text[r.head.start:r.head.end] == r.head.text and text[r.tail.start:r.tail.end] == r.tail.text


def test_relation_pairing_does_not_depend_on_output_order():
    text = "Anna lives in Rome . Many years later , Anna works in Oslo ."
    g = ground(parse("Anna | works_in | Oslo; Anna | lives_in | Rome", "RE"), text, "RE")
    assert [(r.head.start, r.tail.start) for r in g.relations] == [(40, 54), (0, 14)]


def test_slot_located_near_its_pair():
    text = "乙和戊都是《剧B》里的角色，多年以后，丙在《剧A》里饰演乙，丁在《剧B》里饰演戊。"
    res = ParseResult(relations=[Relation(Entity("", "丙"), "饰演", Entity("", "乙"), (Argument("inWork", "剧A"),)),
                                 Relation(Entity("", "丁"), "饰演", Entity("", "戊"), (Argument("inWork", "剧B"),))])
    g = ground(res, text, "RE")
    r1, r2 = g.relations
    assert (r1.head.start, r1.tail.start) == (text.index("丙"), text.rindex("乙"))
    assert (r2.head.start, r2.tail.start) == (text.index("丁"), text.rindex("戊"))
    assert r2.slots[0].start == text.rindex("剧B") and r1.slots[0].start == text.index("剧A")


def test_unsupported_items_are_kept_apart_and_counted():
    text = "Alice works at Acme ."
    res = ParseResult(
        entities=[Entity("PER", "Alice"), Entity("PER", "Bob")],
        relations=[Relation(Entity("", "Alice"), "works_at", Entity("", "Initech")),
                   Relation(Entity("", "Alice"), "works_at", Entity("", "Acme"))],
        events=[Event("Work", Entity("Work", "works"), (Argument("employee", "Alice"), Argument("place", "Mars"))),
                Event("Work", Entity("Work", "toils"), ())],
        labels=["x"])
    g = ground(res, text, "NER")
    assert spans(g.entities) == [("Alice", 0, 5)]
    assert [r.tail.text for r in g.relations] == ["Acme"]
    assert g.events == [] and g.labels == ["x"]
    assert g.n_unsupported == 4
    missing = [u.missing for u in g.unsupported]
    assert missing == [("span",), ("tail",), ("argument:place",), ("trigger",)]
    rel = g.unsupported[1].item
    assert (rel.head.start, rel.tail.start) == (0, None)  # found parts still located
    ev = g.unsupported[2].item
    assert ev.trigger.start == 6 and ev.arguments[0].start == 0 and ev.arguments[1].start is None


def test_whitespace_insensitive_fallback_keeps_source_text_and_no_case_folding():
    text = "He flew to New\nYork and to Paris ."
    g = ground(ParseResult(entities=[Entity("LOC", "New York"), Entity("LOC", "paris")]), text, "NER")
    assert spans(g.entities) == [("New\nYork", 11, 19)]
    assert g.n_loose == 1
    assert [u.item.text for u in g.unsupported] == ["paris"]


def test_repeated_triggers_follow_their_arguments():
    text = "Rebels attacked the town . Police attacked the camp ."
    res = parse("attacked | Attack | attacker=Police | target=camp; attacked | Attack | attacker=Rebels", "EE")
    g = ground(res, text, "EE")
    e1, e2 = g.events
    assert e1.trigger.start == 34 and [a.start for a in e1.arguments] == [27, 47]
    assert e2.trigger.start == 7 and e2.arguments[0].start == 0


def test_repeated_trigger_without_arguments_takes_next_occurrence():
    g = ground(parse("exploded | Attack; exploded | Die", "EE"), "It exploded , then it exploded again .", "EE")
    assert [e.trigger.start for e in g.events] == [3, 22]


def test_arguments_nearest_to_trigger():
    text = "Smith resigned . Jones was hired ; Smith later resigned again ."
    g = ground(parse("hired | Hire | person=Jones; resigned | Quit | person=Smith", "EE"), text, "EE")
    hire, quit_ = g.events
    assert hire.arguments[0].start == 17
    assert quit_.trigger.start == 6 and quit_.arguments[0].start == 0


def test_eea_answer_attached_to_prompted_event():
    text = "Rebels attacked the town . Police attacked the camp ."
    given_ev = Event("Attack", Entity("Attack", "attacked", 34, 42))
    res = parse("Police | attacker; camp | target", "EEA")
    g = ground(res, text, "EEA", event=given_ev)
    (ev,) = g.events
    assert ev.type == "Attack" and ev.trigger.start == 34
    assert [(a.role, a.start) for a in ev.arguments] == [("attacker", 27), ("target", 47)]
    rec = Record(id="1", dataset="d", task="EEA", text=text, events=[given_ev])
    assert ground_for(rec, res) == g


def test_real_conll_records_offsets_recovered_from_strings():
    """Output = gold strings in gold order (no offsets): grounding must give back the
    gold offsets, including the many repeated country names in these records."""
    rows = json.loads(FIXTURE.read_text(encoding="utf-8"))
    n_repeated = 0
    for row in rows:
        gold = [Entity(e["type"], e["name"], *e["pos"]) for e in row["entities"]]
        n_repeated += len(gold) - len({e.text for e in gold})
        g = ground(ParseResult(entities=[Entity(e.label, e.text) for e in gold]), row["sentence"], "NER")
        assert g.entities == gold
    assert n_repeated >= 5


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab c", min_size=1, max_size=20), st.lists(st.text(alphabet="ab c", min_size=1, max_size=4), max_size=5))
def test_located_spans_are_exact_slices(text, needles):
    g = ground(ParseResult(entities=[Entity("X", n) for n in needles]), text, "NER")
    assert len(g.entities) + g.n_unsupported == len(needles)
    for e in g.entities:
        assert text[e.start:e.end] == e.text


# ---------------------------------------------------------------- whole words first
def test_a_whole_word_occurrence_is_preferred_to_one_inside_a_word():
    text = "Germany beat Italy , and German fans cheered ."
    g = ground(ParseResult(entities=[Entity("MISC", "German")]), text, "NER")
    assert spans(g.entities) == [("German", 25, 31)] and g.n_inside_word == 0
    # the same, in a relation and an event
    g = ground(parse("German | fan_of | Italy", "RE"), text, "RE")
    assert (g.relations[0].head.start, g.relations[0].tail.start) == (25, 13)
    g = ground(parse("cheered | Cheer | agent=German", "EE"), text, "EE")
    assert g.events[0].arguments[0].start == 25


def test_inside_a_word_only_when_the_text_has_it_nowhere_else_and_counted():
    g = ground(ParseResult(entities=[Entity("MISC", "German")]), "Germany won .", "NER")
    assert spans(g.entities) == [("German", 0, 6)] and g.n_inside_word == 1


def test_crossner_ai_mentions_are_the_standalone_ones():
    # CrossNER AI dev records 6 and 8: the gold "p", "r" and "word sense" are the standalone mentions, not the
    # letters of "compute" and "score" or the start of "word senses".
    text = ("It considers both the precision p and the recall r of the test to compute the score : p is the number "
            "of correct positive results divided by the number of all positive results returned by the classifier "
            ", and r is the number of correct positive results divided by the number of all relevant samples .")
    g = ground(parse("precision | metrics; p | metrics; recall | metrics; r | metrics; p | metrics; r | metrics",
                     "NER"), text, "NER")
    got = [(e.text, e.start) for e in g.entities]
    assert got == [("precision", 22), ("p", 32), ("recall", 42), ("r", 49), ("p", 86), ("r", 209)]
    assert g.n_inside_word == 0
    text = ("an unsupervised disambiguation system uses the similarity between word senses in a fixed context window "
            "to select the most suitable word sense using a pre-trained word embedding model and WordNet .")
    g = ground(parse("word sense | miscellaneous; word embedding | miscellaneous; WordNet | product", "NER"), text, "NER")
    assert [(e.text, e.start) for e in g.entities] == [
        ("word sense", text.index("word sense using")), ("word embedding", text.index("word embedding")),
        ("WordNet", text.index("WordNet"))]
    assert text.index("word sense") < text.index("word sense using")


def test_punctuation_ranks_between_whole_words_and_inside_a_word():
    text = "U.N. officials saw KDP-controlled areas and raised KDP flags in Paris. The U.S.-led and U.S. forces ."
    g = ground(parse("KDP | organization; Paris | location; U.S. | location", "NER"), text, "NER")
    assert [(e.text, e.start) for e in g.entities] == [("KDP", 51), ("Paris", 64), ("U.S.", 88)]
    g = ground(parse("KDP | organization", "NER"), "KDP-controlled areas .", "NER")
    assert spans(g.entities) == [("KDP", 0, 3)] and g.n_inside_word == 0  # joined, not inside a word


def test_scripts_without_spaces_have_no_word_edges():
    text = "北京大学位于北京。"
    g = ground(parse("北京 | 地点; 北京 | 地点", "NER"), text, "NER")
    assert [e.start for e in g.entities] == [0, 6] and g.n_inside_word == 0


def test_grounded_spans_are_whole_spacy_tokens():
    """The Extractor's offsets and the spaCy component's (which expands a span to whole tokens) agree."""
    spacy = pytest.importorskip("spacy")
    nlp = spacy.blank("en")
    text = "Germany beat Italy , and German fans cheered in Germany ."
    doc = nlp(text)
    g = ground(parse("German | miscellaneous; Germany | location; Germany | location", "NER"), text, "NER")
    for e in g.entities:
        strict = doc.char_span(e.start, e.end, alignment_mode="strict")
        assert strict is not None and strict.text == e.text
        assert doc.char_span(e.start, e.end, alignment_mode="expand").text == e.text


SHARED = Path("/work/shared/data/ie_instructions")


@pytest.mark.skipif(not SHARED.exists(), reason="needs the shared data")
def test_eval_of_the_shared_dev_sets_gold_answers_against_their_gold_is_exactly_one(tmp_path, capsys):
    from instructie.cli.main import main

    out = tmp_path / "dev.jsonl"
    assert main(["convert", "--dataset", "ie_instructions", "--input", str(SHARED), "--split", "dev",
                 "-o", str(out)]) == 0
    rep = tmp_path / "report.json"
    assert main(["eval", "--gold", str(out), "--predictions", str(out), "--field", "target", "--json", str(rep)]) == 0
    capsys.readouterr()
    scores = json.loads(rep.read_text(encoding="utf-8"))["scores"]
    assert {s["dataset"] for s in scores} >= {"CrossNER_AI", "CrossNER_literature", "CoNLL2003", "DuEE"}
    for s in scores:
        for k, v in s["metrics"].items():
            if k.endswith("_f1"):
                assert v == 1.0, (s["dataset"], s["task"], k, v)
