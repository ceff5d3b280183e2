"""Hint-biased decoding: the processor adds its bias to the tokens that start or continue a
memory-hint item, and to nothing else; driven step by step with scripted tokens, then
through ``generate`` with a random tiny model."""
from pathlib import Path

from dataclasses import replace

import pytest
import torch

from instructie.config import check_bias
from instructie.core.records import Entity, Record, Relation
from instructie.decoding.constraints import chain_factories, make_factory
from instructie.hints.bias import HintBiasProcessor
from instructie.hints.memory import Memory
from instructie.hints.plugin import Hints, HintSettings, proposed_items
from instructie.inference.predict import Decoding, Prompt, read_answer
from instructie.prompts.instructions import build_source, load_templates

TEXT = "Barack Obama visited Paris on Monday . Obama met Emmanuel Macron in Paris ."
OPTIONS = ["person", "location"]
BIAS = 5.0


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def ner_prompt(hint_items_=(("Obama", "person"), ("Paris", "location")), dataset=""):
    """An NER prompt whose memory line proposes ``hint_items_``, with that metadata."""
    from instructie.prompts.targets import render_items
    rec = Record("", dataset, "NER", TEXT, options=OPTIONS)
    line = "Memory: " + render_items(list(hint_items_))
    return Prompt(build_source(rec, load_templates()["NER"][0], OPTIONS, line), "NER", tuple(OPTIONS), TEXT,
                  dataset, hint=proposed_items(line, "NER"))


def rc_prompt():
    rec = Record("", "", "RC", "Mary is the mother of John .", options=["mother", "child", "spouse"],
                 relations=[Relation(Entity("", "Mary"), "mother", Entity("", "John"))])
    line = "Memory: pair | mother; tail | child"
    return Prompt(build_source(rec, load_templates()["RC"][0], rec.options, line), "RC", tuple(rec.options),
                  rec.text, hint=proposed_items(line, "RC"))


def plain_prompt():
    rec = Record("", "", "NER", TEXT, options=OPTIONS)
    return Prompt(build_source(rec, load_templates()["NER"][0], OPTIONS), "NER", tuple(OPTIONS), TEXT)


def plugin(bias=0.0, floor=0.0, memory=None):
    return Hints(memory or Memory(), HintSettings(check_bias(bias), floor))


def test_a_hint_line_proposes_its_items():
    assert proposed_items("Memory: Obama | person; Paris | location", "NER") == (("Obama", "person"),
                                                                               ("Paris", "location"))
    assert proposed_items("Memory: None", "NER") == ()
    # RC: the answer is one relation; the hint's evidence levels are not answer items
    assert proposed_items("Memory: pair | mother; tail | child; head | mother", "RC") == (("mother",), ("child",))
    assert ner_prompt().hint == (("Obama", "person"), ("Paris", "location"))


def test_the_hint_items_are_what_the_memory_proposes():
    train = [Record("t1", "d", "NER", "Obama visited Paris .", options=OPTIONS,
                    entities=[Entity("person", "Obama", 0, 5), Entity("location", "Paris", 14, 19)])]
    mem = Memory.from_records(train)
    rec = Record("x", "d", "NER", TEXT, options=OPTIONS)
    line, items = Hints(mem).line(rec)
    assert line == mem.hint(rec) and list(items) == mem.items(rec)
    # a token budget cuts the line to whole items
    short, items = Hints(mem, budget=4).line(rec, length=lambda s: len(s.split()))
    assert len(items) < len(mem.items(rec)) and short == "Memory: " + " | ".join(items[0]) if items else True


class Driver:
    def __init__(self, tok, prompts, bias=BIAS, beams=1, factory=None):
        enc = tok([p.source for p in prompts], return_tensors="pt", padding=True)
        factory = factory or plugin(bias).logits_factory(tok, len(tok))
        self.proc = factory(enc["input_ids"], enc["attention_mask"], list(prompts))
        self.tok = tok
        self.ids = torch.zeros(len(prompts) * beams, 1, dtype=torch.long)
        self.out = self._call()

    def _call(self):
        return self.proc(self.ids, torch.zeros(self.ids.shape[0], len(self.tok) + 3))

    def write(self, text, row=None):
        for t in self.tok(text, add_special_tokens=False)["input_ids"]:
            col = torch.full((self.ids.shape[0], 1), t) if row is None else self.ids[:, -1:].clone()
            if row is not None:
                col[row] = t
            self.ids = torch.cat([self.ids, col], dim=1)
            self.out = self._call()

    def biased(self, row=0):
        """The tokens raised."""
        return {self.tok.decode([i]) for i in (self.out[row] > 0).nonzero().flatten().tolist()}

    def eos(self, row=0):
        """What was added to </s>: -bias while hint items are left unwritten."""
        return float(self.out[row, self.tok.eos_token_id])


def separators(tok):
    """The item separator's tokens (";" with or without white space)."""
    return {tok.decode([i]) for i in range(len(tok)) if tok.decode([i]).strip() == ";"}


def first_token(tok, s):
    return tok.decode(tok(s, add_special_tokens=False)["input_ids"][:1])


def test_bias_starts_continues_and_retires_hint_items(tok):
    d = Driver(tok, [ner_prompt()])
    assert isinstance(d.proc, HintBiasProcessor)
    # at the answer's start: the first token of each hint item, by exactly the bias
    assert d.biased() == {first_token(tok, "Obama"), first_token(tok, "Paris")}
    assert set(d.out[0][d.out[0] != 0].tolist()) == {BIAS, -BIAS}
    assert d.eos() == -BIAS  # the answer may not end while hint items are left
    # inside an item: only its next token
    ids = tok("Obama | person", add_special_tokens=False)["input_ids"]
    d.write(tok.decode(ids[:1]))
    if len(ids) > 1:
        assert d.biased() == {tok.decode(ids[1:2])}
    d.write(tok.decode(ids[1:]))
    # item complete, another left: on to the next item (";" raised, "</s>" lowered), not to more fields
    assert d.biased() == separators(tok) and d.eos() == -BIAS
    # after the item separator: the items not yet written; Obama is retired
    d.write(";")
    assert d.biased() == {first_token(tok, " Paris")}
    assert d.eos() == -BIAS  # one item held, the hint has two
    # the model leaves the hint: no bias until the next item starts; the answer now holds as many
    # items as the hint, so it may end
    d.write(" Monday")
    assert d.biased() == set() and d.eos() == 0
    d.write(" | location;")
    assert d.biased() == {first_token(tok, " Paris")} and d.eos() == 0  # Paris still offered
    d.write(" Paris | location")
    assert d.biased() == set() and d.eos() == 0


def test_an_item_started_and_left_is_retired_but_one_sharing_its_start_is_not(tok):
    d = Driver(tok, [ner_prompt()])
    d.write("Obama | location;")  # the model changed the hint's label: that item is spent
    assert d.biased() == {first_token(tok, " Paris")} and d.eos() == -BIAS
    d = Driver(tok, [ner_prompt((("Paris", "location"), ("Paris Hilton", "person")))])
    d.write("Paris Hilton | person;")  # both items start alike; the one not taken stays open
    assert d.biased() == {first_token(tok, " Paris")}
    d.write(" Paris | location")
    assert d.biased() == set() and d.eos() == 0


def test_an_rc_answer_is_one_relation_so_the_first_hint_label_written_ends_the_hint(tok):
    d = Driver(tok, [rc_prompt()])
    assert d.biased() == {first_token(tok, "mother"), first_token(tok, "child")} and d.eos() == -BIAS
    d.write("mother")
    assert d.biased() == set() and d.eos() == 0  # "mother; child" would score as wrong
    d = Driver(tok, [rc_prompt()])
    d.write("spouse")  # a relation the hint lacks is a whole answer too
    assert d.eos() == 0 and separators(tok).isdisjoint(d.biased())


def test_an_escaped_separator_does_not_start_an_item(tok):
    d = Driver(tok, [ner_prompt()])
    d.write("A\\;")
    assert d.biased() == set()
    d.write(" B | person;")
    assert d.biased() == {first_token(tok, " Obama"), first_token(tok, " Paris")}


def test_a_repeated_hint_item_is_offered_again_for_its_second_mention(tok):
    d = Driver(tok, [ner_prompt((("Obama", "person"), ("Obama", "person")))])
    d.write("Obama | person;")
    assert d.biased() == {first_token(tok, " Obama")}
    d.write(" Obama | person;")
    assert d.biased() == set()


def test_rows_are_independent_and_a_prompt_without_hint_is_untouched(tok):
    d = Driver(tok, [plain_prompt(), ner_prompt(), rc_prompt()])
    assert d.biased(0) == set() and d.eos(0) == 0
    assert d.biased(1) == {first_token(tok, "Obama"), first_token(tok, "Paris")}
    assert d.biased(2) == {first_token(tok, "mother"), first_token(tok, "child")}


def test_a_bias_per_task_and_dataset_comes_from_each_rows_metadata(tok):
    d = Driver(tok, [ner_prompt(), rc_prompt()], factory=plugin({"RC": 3.0}).logits_factory(tok, len(tok)))
    assert d.biased(0) == set() and d.eos(0) == 0  # NER: no bias given
    assert d.biased(1) == {first_token(tok, "mother"), first_token(tok, "child")} and d.eos(1) == -3.0
    # a dataset's own entry overrides its task's, in one batch
    d = Driver(tok, [ner_prompt(dataset="a"), ner_prompt(dataset="b")],
               factory=plugin({"NER": 4, "NER/b": 16}).logits_factory(tok, len(tok)))
    assert (d.eos(0), d.eos(1)) == (-4.0, -16.0)
    assert plugin({"NER": 0.0}).logits_factory(tok, len(tok)) is None


def test_an_item_holding_an_escape_is_not_pushed(tok):
    """The copy constraint never writes escapes, so such an item could never be finished."""
    d = Driver(tok, [ner_prompt((("A; B", "person"), ("Paris", "location")))])
    assert d.biased() == {first_token(tok, "Paris")}


def test_zero_bias_makes_no_processor_and_bias_composes_with_the_copy_constraint(tok):
    assert make_factory(False, tok, len(tok)) is None
    assert plugin(0.0).logits_factory(tok, len(tok)) is None
    copy = make_factory("copy", tok, len(tok))
    d = Driver(tok, [ner_prompt()], factory=chain_factories(plugin(BIAS).logits_factory(tok, len(tok), copy.vocab),
                                                           copy))
    allowed = d.out[0] > -1e30
    # the hint's first tokens are raised, and still only copies of the text are allowed
    for s in ("Obama", "Paris"):
        assert d.out[0, tok(s, add_special_tokens=False)["input_ids"][0]] == BIAS
    assert not allowed[tok("Tokyo", add_special_tokens=False)["input_ids"][0]] or "Tokyo" in TEXT


def test_beams_carry_their_own_state(tok):
    """Beam search reorders rows between steps: each row's bias is what a processor that saw
    only that row's prefix gives."""
    a = tok("Obama | person;", add_special_tokens=False)["input_ids"]
    b = tok("Paris | location;", add_special_tokens=False)["input_ids"]
    n = min(len(a), len(b))
    a, b = a[: n - 1] + a[-1:], b[: n - 1] + b[-1:]  # same length, both end with ";"
    beams = Driver(tok, [ner_prompt()], beams=2)
    for x, y in zip(a, b):
        beams.ids = torch.cat([beams.ids, torch.tensor([[x], [y]])], dim=1)
        beams.out = beams._call()
    nxt = tok(" Paris", add_special_tokens=False)["input_ids"][0]
    beams.ids = torch.cat([beams.ids[[1, 0]], torch.tensor([[nxt], [nxt]])], dim=1)  # the beams swap places
    beams.out = beams._call()
    for row, prefix in ((0, b), (1, a)):
        single = Driver(tok, [ner_prompt()])
        for t in prefix + [nxt]:
            single.ids = torch.cat([single.ids, torch.tensor([[t]])], dim=1)
            single.out = single._call()
        assert torch.equal(beams.out[row], single.out[0])
    assert not torch.equal(beams.out[0], beams.out[1])


def test_a_large_bias_makes_a_random_model_write_the_hint(tiny_model_dir):
    """End to end through ``generate``: a random tiny model writes garbage, with a bias far
    above its logit range it writes the hint's first item first."""
    from instructie.inference.extractor import Extractor
    from instructie.decoding.generation import generate

    ex = Extractor.from_pretrained(tiny_model_dir, device="cpu")
    p = ner_prompt()
    free = generate(ex.model, ex.tokenizer, [p.source], max_new_tokens=12, with_scores=False)[0].text
    fac = plugin(1e4).logits_factory(ex.tokenizer, ex.model.config.vocab_size)
    biased = generate(ex.model, ex.tokenizer, [p.source], max_new_tokens=12, with_scores=False,
                      logits_processor_factory=fac, rows=[p])[0].text
    hint = ("Obama | person", "Paris | location")
    assert not free.startswith(hint)
    assert biased.startswith(hint)  # then garbage again: the bias pushes hint items, nothing after them


def test_the_tuning_picks_a_bias_per_task_on_its_own_dev_sets():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "eval"))
    from tune_hint_bias import pick_per_task

    dev = {0.0: {"c/NER/entity_f1": 0.60, "d/EE/trigger_cls_f1": 0.20, "d/EE/arg_cls_f1": 0.9},
           2.0: {"c/NER/entity_f1": 0.70, "d/EE/trigger_cls_f1": 0.50, "d/EE/arg_cls_f1": 0.0},
           8.0: {"c/NER/entity_f1": 0.65, "d/EE/trigger_cls_f1": 0.66, "d/EE/arg_cls_f1": 0.0}}
    # RE and RC have no dev set: the best mean over all (0.655 at 8 against 0.60 at 2); arguments are not headline
    assert pick_per_task(dev, {"c", "d"}) == {"NER": 2.0, "EE": 8.0, "RE": 8.0, "RC": 8.0}
    # (bias, unhinted floor) pairs: the best pair per task; a tie goes to the smaller floor
    pairs = {(b, f): {"c/NER/entity_f1": s["c/NER/entity_f1"] + (0.05 if f else 0.0),
                      "d/EE/trigger_cls_f1": s["d/EE/trigger_cls_f1"]}
             for b, s in dev.items() for f in (0.0, 0.5, 0.9)}
    assert pick_per_task(pairs, {"c", "d"})["NER"] == (2.0, 0.5)
    assert pick_per_task(pairs, {"c", "d"})["EE"] == (8.0, 0.0)
    # a task with several dev datasets: each gets its own best where it differs; RC never a floor
    for (b, f), s in pairs.items():
        s["e/NER/entity_f1"] = 0.3 + (0.02 if b == 8.0 else 0.0) + (0.01 if f == 0.9 else 0.0)
    picked = pick_per_task(pairs, {"c", "d", "e"})
    assert picked["NER"] == (2.0, 0.9)  # the mean of c and e
    assert picked["NER/c"] == (2.0, 0.5) and picked["NER/e"] == (8.0, 0.9)
    assert picked["RC"][1] == 0.0 and "EE/d" not in picked


def test_bad_hint_bias_settings_are_named(monkeypatch):
    from pathlib import Path

    from instructie.config import load_config
    from instructie.config import check_bias
    from instructie.core.io import ConfigError

    assert check_bias({"NER": 2, "EE": 0}) == {"NER": 2.0} and check_bias({"EE": 0}) == 0.0
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    cfg = "configs/quickstart.yaml"
    on = "hints.memory=true"
    assert load_config(cfg, [on, "hints.bias={NER: 2, EE: 8}"]).hints.bias == {"NER": 2.0, "EE": 8.0}
    for bad, msg in (("hints.bias=-1", "number >= 0"), ("hints.bias={XX: 1}", "unknown task 'XX'"),
                     ("hints.bias=high", "number >= 0"), ("hints.bias={NER: {EE: 2}}", "number >= 0"),
                     ("hints.bias=.inf", "number >= 0"), ("hints.bias=.nan", "number >= 0")):
        with pytest.raises(ConfigError, match=f"hints.bias: .*{msg}"):
            load_config(cfg, [on, bad])
    with pytest.raises(ConfigError, match="set hints.memory: true"):
        load_config(cfg, ["hints.bias=2"])  # a bias without hints has nothing to act on
    # a config written for the old keys says where they went
    with pytest.raises(ConfigError, match="eval.hint_bias is now hints.bias"):
        load_config(cfg, ["eval.hint_bias=2"])
    with pytest.raises(ConfigError, match="data.memory_hints is now hints.memory"):
        load_config(cfg, ["data.memory_hints=true"])


def test_confidences_are_the_models_own_not_the_biased_ones(tiny_model_dir):
    """Extractor's item confidences come from the token log-probabilities generate returns: a
    hint item written because of the bias keeps the low probability the model gave it."""
    from instructie.inference.extractor import Extractor
    from instructie.decoding.generation import generate

    ex = Extractor.from_pretrained(tiny_model_dir, device="cpu")
    fac = plugin(1e4).logits_factory(ex.tokenizer, ex.model.config.vocab_size)
    p = ner_prompt()
    g = generate(ex.model, ex.tokenizer, [p.source], max_new_tokens=4, logits_processor_factory=fac, rows=[p])[0]
    assert g.text.startswith(("Ob", "Par"))  # the bias chose the hint's first token ...
    assert g.token_logprobs[0] < -1.0  # ... which a random model finds unlikely (biased: ~0)


def _scripted(tok, answer: str, low: set[str]):
    """A ``Generated`` for ``answer`` whose tokens inside the items named in ``low`` are unlikely
    (log-prob -3) and all others sure (-0.01)."""
    from instructie.decoding.generation import Generated
    from instructie.prompts.targets import item_ranges

    ids = tok(answer, add_special_tokens=False)["input_ids"]
    ends, lps = [], []
    for k in range(len(ids)):
        ends.append(len(tok.decode(ids[: k + 1], skip_special_tokens=True)))
    ranges = item_ranges(answer)
    for k, end in enumerate(ends):
        item = next((answer[s:e].strip() for s, e in ranges if s < end <= e + 1), "")
        lps.append(-3.0 if item in low else -0.01)
    return Generated(answer, ids, lps)


def test_the_unhinted_floor_drops_only_unsure_items_the_hint_did_not_propose(tok):
    from instructie.hints.bias import floor_for, is_hinted

    def kept(prompt, g, floor):
        ans = read_answer(prompt, g, tok, Decoding(), plugin(floor=floor))
        return [f.item.text for f in ans.found], ans.dropped["below_unhinted_floor"]

    prompt = ner_prompt((("Obama", "person"),))
    answer = "Obama | person; Paris | location; Monday | person"
    # Obama: hinted but unsure -> kept; Paris: the model's own and sure -> kept; Monday: own, unsure -> out
    g = _scripted(tok, answer, low={"Obama | person", "Monday | person"})
    assert kept(prompt, g, 0.5) == (["Obama", "Paris"], 1)
    assert kept(prompt, g, 0.0) == (["Obama", "Paris", "Monday"], 0)  # 0: off
    assert kept(prompt, g, 0.999) == (["Obama"], 2)  # -0.01 per token is not 0.999 sure
    g = _scripted(tok, "Monday | person", low={"Monday | person"})
    assert kept(prompt, g, 0.5) == ([], 1)
    # an event is the hint's when its trigger and type are (its arguments are the model's own)
    assert is_hinted(["attack", "Conflict", "attacker=rebels"], [("attack", "Conflict")])
    assert not is_hinted(["attack", "Movement"], [("attack", "Conflict")])
    assert is_hinted(["mother"], [("mother",), ("child",)])  # RC: the relation
    # a hint item with an escaped character is the hint's too (the bias cannot push it; the floor keeps it)
    escaped = Prompt(prompt.source, "NER", ("organization", "person"), "AT|T and Monday",
                     hint=(("AT|T", "organization"),))
    g = _scripted(tok, "AT\\|T | organization; Monday | person", low={"AT\\|T | organization", "Monday | person"})
    ans = read_answer(escaped, g, tok, Decoding(), plugin(floor=0.5))
    assert [f.item.text for f in ans.found] == ["AT|T"] and ans.dropped["below_unhinted_floor"] == 1
    # tasks that get no hint (NEG, the auxiliary ones) and RC get no floor: it would cut every item alike
    assert [floor_for(0.5, t) for t in ("NER", "RE", "EE", "RC", "NEG", "ES")] == [0.5, 0.5, 0.5, 0, 0, 0]


def test_evaluation_scores_every_floor_from_one_generation(tiny_model_dir, monkeypatch):
    """``evaluate_records(floors=...)``: one generation, one report per floor; the floor takes out the
    model's own unsure items and counts them as dropped."""
    from instructie.evaluation import evaluate
    from instructie.decoding import generation
    from instructie.config import load_config
    from instructie.inference.extractor import Extractor

    ex = Extractor.from_pretrained(tiny_model_dir, device="cpu")
    memory = Memory.from_records([Record("m", "d", "NER", "Obama spoke .", options=OPTIONS,
                                         entities=[Entity("person", "Obama", 0, 5)])])
    gold = Record("g", "d", "NER", TEXT, options=OPTIONS,
                  entities=[Entity("person", "Obama", 7, 12), Entity("location", "Paris", 21, 26)])
    calls = []

    def scripted(model, tokenizer, sources, **kw):
        calls.append(kw.get("with_scores"))
        assert all(("Memory: Obama | person" in s) == (len(calls) < 3) for s in sources)  # hinted with a memory
        return [_scripted(tokenizer, "Obama | person; Paris | location; Monday | person",
                          low={"Obama | person", "Monday | person"}) for _ in sources]

    monkeypatch.setattr(generation, "generate", scripted)
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml")
    cfg.data.max_options = None
    reps = evaluate.evaluate_records(ex.model, ex.tokenizer, [gold], cfg, load_templates(),
                                     hints=plugin(memory=memory), floors=[0.0, 0.5, 0.9999])
    assert calls == [True] and [r["unhinted_floor"] for r in reps] == [0.0, 0.5, 0.9999]
    f1 = [r["summary"]["d/NER/entity_f1"] for r in reps]
    assert f1 == [0.8, 1.0, pytest.approx(2 / 3, abs=1e-4)]  # Monday out: right; then Paris out: one miss
    # the default floor is the plug-in's; without hints there is no hint to keep items by: no floor
    assert evaluate.evaluate_records(ex.model, ex.tokenizer, [gold], cfg, load_templates(),
                                     hints=plugin(floor={"NER": 0.5}, memory=memory))[0]["summary"][
        "d/NER/entity_f1"] == 1.0
    assert evaluate.evaluate_records(ex.model, ex.tokenizer, [gold], cfg, load_templates())[0]["summary"][
        "d/NER/entity_f1"] == 0.8


def test_bad_unhinted_floors_are_named(monkeypatch):
    from instructie.config import load_config
    from instructie.inference.extractor import Extractor  # noqa: F401
    from instructie.core.io import ConfigError

    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    cfg = "configs/quickstart.yaml"
    on = "hints.memory=true"
    assert load_config(cfg, [on, "hints.unhinted_floor={NER: 0.5}"]).hints.unhinted_floor == {"NER": 0.5}
    for bad in ("hints.unhinted_floor=1.5", "hints.unhinted_floor=-0.1", "hints.unhinted_floor={NER: 2}"):
        with pytest.raises(ConfigError, match="hints.unhinted_floor: an unhinted-item floor is a number from 0 to 1"):
            load_config(cfg, [on, bad])


def test_extraction_keeps_hinted_and_sure_items_under_the_floor(tiny_model_dir, monkeypatch):
    """``Extractor.extract(unhinted_floor=)``, default the card's: an item the hint did not
    propose is kept only when the model is sure of it; the others are counted in the stats."""
    from instructie.decoding import generation
    from instructie.inference.extractor import Extractor
    from instructie.core.io import ConfigError

    base = Extractor.from_pretrained(tiny_model_dir, device="cpu")
    memory = Memory.from_records([Record("m", "d", "NER", "Obama spoke .", options=OPTIONS,
                                         entities=[Entity("person", "Obama", 0, 5)])])
    card = replace(base.card, unhinted_floor={"NER": 0.5})
    ex = Extractor(base.model, base.tokenizer, card, "cpu", hints=Hints(memory))

    def scripted(model, tokenizer, sources, **kw):
        assert all("Memory: Obama | person" in s for s in sources)
        return [_scripted(tokenizer, "Obama | person; Paris | location; Monday | person",
                          low={"Obama | person", "Monday | person"}) for _ in sources]

    monkeypatch.setattr(generation, "generate", scripted)

    def found(**kw):
        doc = next(ex.extract(["Barack Obama visited Paris on Monday ."], ["NER"], labels=OPTIONS, **kw))
        return sorted(e.text for e in doc.entities), doc.stats.get("below_unhinted_floor", 0)

    assert found() == (["Obama", "Paris"], 1)  # the card's floor
    assert found(unhinted_floor=0) == (["Monday", "Obama", "Paris"], 0)
    assert found(unhinted_floor=0.9999) == (["Obama"], 2)
    with pytest.raises(ConfigError, match="unhinted_floor: .*from 0 to 1"):
        found(unhinted_floor=3)
    with pytest.raises(ConfigError, match="unhinted_floor needs a model trained with memory hints"):
        next(base.extract([TEXT], ["NER"], unhinted_floor=0.5))


def test_a_dataset_entry_overrides_its_task_and_rc_has_no_floor(tiny_model_dir, monkeypatch):
    """``{"NER": 4, "NER/b": 16}``: records of dataset b decode with 16, other NER records with
    4; text of no dataset gets the task's value."""
    from instructie.hints.bias import floor_for, setting_for

    bias = check_bias({"NER": 4, "NER/b": 16, "NER/c": 0})
    assert bias == {"NER": 4.0, "NER/b": 16.0, "NER/c": 0.0}  # c's own 0 overrides its task's 4
    assert [setting_for(bias, "NER", d) for d in ("a", "b", "c", "")] == [4.0, 16.0, 0.0, 4.0]
    assert setting_for(bias, "EE", "b") == 0.0 and setting_for(2.0, "EE", "b") == 2.0
    assert floor_for({"NER": 0.5, "RC": 0.9}, "RC") == 0.0 and floor_for(0.5, "RC", "x") == 0.0
    with pytest.raises(ValueError, match="unknown task 'XX/b'"):
        check_bias({"XX/b": 1})
    with pytest.raises(ValueError, match="unknown task 'NER/'"):
        check_bias({"NER/": 1})
