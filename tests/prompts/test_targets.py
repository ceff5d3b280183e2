"""The answer grammar: parse(render(x)) == x for any span text; parse never raises."""
from hypothesis import given, settings, strategies as st

from instructie.core.records import Argument, Entity, Event, Record, Relation
from instructie.prompts.targets import parse, parse_items, render

# Span texts with every delimiter the grammar uses, Chinese punctuation, quotes,
# brackets, white space at the ends and the literal word None.
ALPHABET = st.sampled_from(list("ab Z;|\\=:,()[]\"'，。；：（）“”、\n\t\u3000") + ["None", "北京", "é"])
SPAN = st.lists(ALPHABET, min_size=1, max_size=8).map("".join)
LABEL = st.sampled_from(["person", "org;x", "a|b", "人物", "in=Work", "None", " sp "])


def _rec(task, **kw):
    return Record(id="1", dataset="d", task=task, text="", **kw)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(SPAN, LABEL), max_size=6, unique=True))
def test_ner_round_trip(items):
    rec = _rec("NER", entities=[Entity(lab, text) for text, lab in items])
    got = parse(render(rec), "NER")
    assert [(e.text, e.label) for e in got.entities] == items
    assert not got.dropped


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(SPAN, LABEL, SPAN, st.lists(st.tuples(LABEL, SPAN), max_size=2)), max_size=5, unique_by=lambda t: (t[0], t[1], t[2])))
def test_re_round_trip_with_slots(items):
    rels = [Relation(Entity("", h), r, Entity("", t), tuple(Argument(k, v) for k, v in slots)) for h, r, t, slots in items]
    got = parse(render(_rec("RE", relations=rels)), "RE")
    assert got.relations == rels
    assert not got.dropped


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(SPAN, LABEL, st.lists(st.tuples(LABEL, SPAN), max_size=3).map(tuple)), max_size=4, unique=True))
def test_ee_round_trip(items):
    evs = [Event(t, Entity(t, trig), tuple(Argument(r, a) for r, a in args)) for trig, t, args in items]
    got = parse(render(_rec("EE", events=evs)), "EE")
    assert got.events == evs


@settings(max_examples=200, deadline=None)
@given(st.lists(SPAN, max_size=5, unique=True))
def test_neg_and_es_round_trip(names):
    ents = [Entity("negative", n) for n in names]
    assert parse(render(_rec("NEG", entities=ents)), "NEG").labels == names
    assert [e.text for e in parse(render(_rec("ES", entities=ents)), "ES").entities] == names


def test_empty_answers_are_none():
    assert render(_rec("NER")) == "None"
    assert render(_rec("RE")) == "None"
    for task in ("NER", "RE", "EE", "NEG", "RC", "ES", "EP", "EPR", "EET", "EEA", "ET"):
        res = parse("None", task)
        assert not (res.entities or res.relations or res.events or res.labels)
        assert not res.dropped


def test_span_named_none_is_not_the_empty_answer():
    rec = _rec("NEG", entities=[Entity("negative", "None")])
    assert render(rec) == "\\None"
    assert parse(render(rec), "NEG").labels == ["None"]


def test_broken_outputs_keep_what_is_readable():
    res = parse("Obama | person; EU | organization; Obama | person; x | spaceship; Paris | loc", "NER",
                options=["person", "organization", "location"])
    # a repeated entity item is a second mention, kept for grounding
    assert [(e.text, e.label) for e in res.entities] == [("Obama", "person"), ("EU", "organization"),
                                                         ("Obama", "person")]
    assert res.dropped == {"unknown_label": 2}
    res = parse("A | r | B; A | r | B; C | r | D", "RE")
    assert [r.key() for r in res.relations] == [("A", "r", "B"), ("C", "r", "D")]
    assert res.dropped == {"duplicate": 1}
    # Truncated mid-item: the complete items survive, the stub is counted.
    res = parse("A | 作者 | B; C | 作者", "RE")
    assert [(r.head.text, r.label, r.tail.text) for r in res.relations] == [("A", "作者", "B")]
    assert res.dropped == {"wrong_arity": 1}
    res = parse("trig | 人生-死亡 | 时间=昨天 | garbage", "EE", roles={"人生-死亡": ["时间", "地点"]})
    assert res.events[0].arguments == (Argument("时间", "昨天"),)
    assert res.dropped == {"malformed_argument": 1}


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60), st.sampled_from(["NER", "RE", "EE", "RC", "NEG", "ES", "ET", "EP", "EPR", "EET", "EEA", "??"]))
def test_parse_never_raises(garbage, task):
    res = parse(garbage, task, options=["a", "b"], roles={"a": ["r"]})
    assert isinstance(res.dropped, dict)


ANSWER_PIECE = st.sampled_from(list("ab |;=\\") + ["None", "PER", "x=y", " ; ", "人物"])


@settings(max_examples=1500, deadline=None)
@given(st.lists(ANSWER_PIECE, max_size=14).map("".join),
       st.sampled_from(["NER", "RE", "EE", "NEG", "RC", "ES", "EP", "EPR", "ET", "EET"]))
def test_parsing_item_by_item_reads_what_parsing_the_whole_answer_reads(answer, task):
    """The prediction path parses answers item by item (each item gets its own confidence): the items
    and the drop counts are those of parsing the answer whole, repeats of set-valued items included."""
    from collections import Counter

    kw = dict(options=["PER", "a", "b", "人物"] if task not in ("ES", "EP") else None,
              roles={"PER": ["x"], "a": ["x"]})
    whole, parts = parse(answer, task, **kw), parse_items(answer, task, **kw)
    assert [x for _, r in parts for x in r.entities] == whole.entities
    assert [x for _, r in parts for x in r.relations] == whole.relations
    assert [x for _, r in parts for x in r.events] == whole.events
    assert [x for _, r in parts for x in r.labels] == whole.labels
    assert sum((r.dropped for _, r in parts), Counter()) == whole.dropped
    assert all(0 <= s <= e <= len(answer) for (s, e), _ in parts)


class _CountingRoles(dict):
    """A role schema that counts how often its role lists are read."""

    reads = 0

    def values(self):
        type(self).reads += 1
        return super().values()

    def __getitem__(self, key):
        type(self).reads += 1
        return super().__getitem__(key)


def test_a_long_answer_reads_the_role_schema_once_not_per_item():
    """Reading an answer costs time linear in its length: the schema's roles (DuEE: 65 event types, 5,582
    roles) are read once per answer, not once per item of a looping answer (eval/bench_parse.py times it)."""
    roles = _CountingRoles({f"type{i}": [f"role{i}_{j}" for j in range(50)] for i in range(60)})
    n = 2000
    cases = {"EEA": "; ".join(f"arg{i} | role{i % 60}_1" for i in range(n)),
             "EE": "; ".join(f"trig{i} | type{i % 3} | role{i % 3}_0=a{i} | bad=x" for i in range(n)),
             "RE": "; ".join(f"h{i} | type{i % 3} | t{i} | role{i % 3}_2=s" for i in range(n))}
    for task, answer in cases.items():
        _CountingRoles.reads = 0
        got = parse(answer, task, roles=roles)
        assert _CountingRoles.reads <= 3, (task, _CountingRoles.reads)  # once, or once per type used
        _CountingRoles.reads = 0
        assert len(parse_items(answer, task, roles=roles)) == n  # item by item, as the prediction path reads
        assert _CountingRoles.reads <= 3, (task, _CountingRoles.reads)
        if task == "EEA":
            assert len(got.events[0].arguments) == n
        else:
            items = got.events if task == "EE" else got.relations
            assert len(items) == n and all(len(x.arguments if task == "EE" else x.slots) == 1 for x in items)
            assert got.dropped["unknown_role"] == (n if task == "EE" else 0)
