"""Hint-biased decoding: the processor adds its bias to the tokens that start or continue a
memory-hint item, and to nothing else; driven step by step with scripted tokens, then
through ``generate`` with a random tiny model."""
from pathlib import Path

import pytest
import torch

from instructie.hints.bias import decoding_factory as make_factory
from instructie.hints.bias import HintBiasProcessor, hint_bias_factory, hint_items
from instructie.prompts.instructions import build_source, load_templates
from instructie.hints.memory import Memory
from instructie.core.records import Entity, Record, Relation

TEXT = "Barack Obama visited Paris on Monday . Obama met Emmanuel Macron in Paris ."
OPTIONS = ["person", "location"]
BIAS = 5.0


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def ner_prompt(hint_items_=(("Obama", "person"), ("Paris", "location"))):
    rec = Record("", "", "NER", TEXT, options=OPTIONS)
    from instructie.prompts.targets import render_items
    return build_source(rec, load_templates()["NER"][0], OPTIONS, "Memory: " + render_items(list(hint_items_)))


def rc_prompt():
    rec = Record("", "", "RC", "Mary is the mother of John .", options=["mother", "child", "spouse"],
                 relations=[Relation(Entity("", "Mary"), "mother", Entity("", "John"))])
    return build_source(rec, load_templates()["RC"][0], rec.options, "Memory: pair | mother; tail | child")


def test_hint_items_read_from_the_prompt():
    assert hint_items(ner_prompt()) == [("Obama", "person"), ("Paris", "location")]
    assert hint_items(ner_prompt(())) == []  # "Memory: None"
    rec = Record("", "", "NER", TEXT, options=OPTIONS)
    assert hint_items(build_source(rec, load_templates()["NER"][0], OPTIONS)) == []  # no hint line
    # RC: the answer is one relation; the hint's evidence levels are not answer items
    assert hint_items(rc_prompt()) == [("mother",), ("child",)]
    # a prompt cut inside the hint (no "Answer:" line): the last, maybe partial, item is dropped
    cut = ner_prompt().split("\nAnswer:")[0][:-3]
    assert hint_items(cut) == [("Obama", "person")]
    # an item needing an escape (a span holding ";") is left out: the copy constraint never
    # writes escapes, so it could never be finished
    assert hint_items(ner_prompt((("A; B", "person"), ("Paris", "location")))) == [("Paris", "location")]
    # a T5 sentencepiece tokenizer decodes the prompt's line breaks as spaces
    assert hint_items(ner_prompt().replace("\n", " ")) == [("Obama", "person"), ("Paris", "location")]
    assert hint_items(rc_prompt().replace("\n", " ")) == [("mother",), ("child",)]


def test_hint_items_match_what_the_memory_hints():
    train = [Record("t1", "d", "NER", "Obama visited Paris .", options=OPTIONS,
                    entities=[Entity("person", "Obama", 0, 5), Entity("location", "Paris", 14, 19)])]
    mem = Memory.from_records(train)
    rec = Record("x", "d", "NER", TEXT, options=OPTIONS)
    prompt = build_source(rec, load_templates()["NER"][0], OPTIONS, mem.hint(rec))
    assert hint_items(prompt) == mem.items(rec)


class Driver:
    def __init__(self, tok, prompts, bias=BIAS, beams=1, factory=None):
        enc = tok(prompts, return_tensors="pt", padding=True)
        factory = factory or hint_bias_factory(tok, len(tok), bias)
        self.proc = factory(enc["input_ids"], enc["attention_mask"])
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
    rec = Record("", "", "NER", TEXT, options=OPTIONS)
    plain = build_source(rec, load_templates()["NER"][0], OPTIONS)
    d = Driver(tok, [plain, ner_prompt(), rc_prompt()])
    assert d.biased(0) == set() and d.eos(0) == 0
    assert d.biased(1) == {first_token(tok, "Obama"), first_token(tok, "Paris")}
    assert d.biased(2) == {first_token(tok, "mother"), first_token(tok, "child")}


def test_a_bias_per_task_reads_each_prompts_task_from_its_instruction(tok):
    d = Driver(tok, [ner_prompt(), rc_prompt()], factory=hint_bias_factory(tok, len(tok), {"RC": 3.0}))
    assert d.biased(0) == set() and d.eos(0) == 0  # NER: no bias given
    assert d.biased(1) == {first_token(tok, "mother"), first_token(tok, "child")} and d.eos(1) == -3.0
    assert make_factory(False, tok, len(tok), hint_bias={"NER": 0.0}) is None


def test_zero_bias_makes_no_processor_and_bias_composes_with_the_copy_constraint(tok):
    assert make_factory(False, tok, len(tok)) is None
    assert make_factory(False, tok, len(tok), hint_bias=0.0) is None
    d = Driver(tok, [ner_prompt()], factory=make_factory("copy", tok, len(tok), hint_bias=BIAS))
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
    src = ner_prompt()
    free = generate(ex.model, ex.tokenizer, [src], max_new_tokens=12, with_scores=False)[0].text
    fac = make_factory(False, ex.tokenizer, ex.model.config.vocab_size, hint_bias=1e4)
    biased = generate(ex.model, ex.tokenizer, [src], max_new_tokens=12, with_scores=False,
                      logits_processor_factory=fac)[0].text
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
    assert load_config(cfg, ["eval.hint_bias={NER: 2, EE: 8}"]).eval.hint_bias == {"NER": 2.0, "EE": 8.0}
    for bad, msg in (("eval.hint_bias=-1", "number >= 0"), ("eval.hint_bias={XX: 1}", "unknown task 'XX'"),
                     ("eval.hint_bias=high", "number >= 0"), ("eval.hint_bias={NER: {EE: 2}}", "number >= 0"),
                     ("eval.hint_bias=.inf", "number >= 0"), ("eval.hint_bias=.nan", "number >= 0")):
        with pytest.raises(ConfigError, match=f"eval.hint_bias: .*{msg}"):
            load_config(cfg, [bad])


def test_confidences_are_the_models_own_not_the_biased_ones(tiny_model_dir):
    """Extractor's item confidences come from the token log-probabilities generate returns: a
    hint item written because of the bias keeps the low probability the model gave it."""
    from instructie.inference.extractor import Extractor
    from instructie.decoding.generation import generate

    ex = Extractor.from_pretrained(tiny_model_dir, device="cpu")
    fac = make_factory(False, ex.tokenizer, ex.model.config.vocab_size, hint_bias=1e4)
    g = generate(ex.model, ex.tokenizer, [ner_prompt()], max_new_tokens=4, logits_processor_factory=fac)[0]
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
    from instructie.hints.bias import drop_unhinted, is_hinted

    prompt = ner_prompt((("Obama", "person"),))
    answer = "Obama | person; Paris | location; Monday | person"
    # Obama: hinted but unsure -> kept; Paris: the model's own and sure -> kept; Monday: own, unsure -> out
    g = _scripted(tok, answer, low={"Obama | person", "Monday | person"})
    assert drop_unhinted(g, prompt, 0.5, tok) == ("Obama | person; Paris | location", 1)
    assert drop_unhinted(g, prompt, 0.0, tok) == (answer, 0)  # 0: off
    assert drop_unhinted(g, prompt, 0.999, tok) == ("Obama | person", 2)  # -0.01 per token is not 0.999 sure
    # nothing left is the empty answer; a hint-less prompt leaves every unsure item out
    g = _scripted(tok, "Monday | person", low={"Monday | person"})
    assert drop_unhinted(g, prompt, 0.5, tok) == ("None", 1)
    # an event is the hint's when its trigger and type are (its arguments are the model's own)
    assert is_hinted(["attack", "Conflict", "attacker=rebels"], [("attack", "Conflict")])
    assert not is_hinted(["attack", "Movement"], [("attack", "Conflict")])
    assert is_hinted(["mother"], [("mother",), ("child",)])  # RC: the relation
    # a hint item with an escaped character is the hint's too (the bias cannot push it; the floor keeps it)
    escaped = ner_prompt((("AT|T", "organization"),))
    g = _scripted(tok, "AT\\|T | organization; Monday | person", low={"AT\\|T | organization", "Monday | person"})
    assert drop_unhinted(g, escaped, 0.5, tok) == ("AT\\|T | organization", 1)
    # tasks that get no hint (NEG, the auxiliary ones) and RC get no floor: it would cut every item alike
    from instructie.hints.bias import floor_for
    assert [floor_for(0.5, t) for t in ("NER", "RE", "EE", "RC", "NEG", "ES")] == [0.5, 0.5, 0.5, 0, 0, 0]


def test_evaluation_scores_every_floor_from_one_generation(tiny_model_dir, monkeypatch):
    """``evaluate_floors``: one generation, one report per floor; the floor takes out the model's
    own unsure items and counts them as dropped."""
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
    reps = evaluate.evaluate_floors(ex.model, ex.tokenizer, [gold], cfg, load_templates(), [0.0, 0.5, 0.9999],
                                    memory=memory, hint_bias=0.0)
    assert calls == [True] and [r["unhinted_floor"] for r in reps] == [0.0, 0.5, 0.9999]
    f1 = [r["summary"]["d/NER/entity_f1"] for r in reps]
    assert f1 == [0.8, 1.0, pytest.approx(2 / 3, abs=1e-4)]  # Monday out: right; then Paris out: one miss
    # the default floor is the config's; without a memory there is no hint to keep items by: no floor
    cfg.eval.unhinted_floor = {"NER": 0.5}
    assert evaluate.evaluate_records(ex.model, ex.tokenizer, [gold], cfg, load_templates(),
                                     memory=memory)["summary"]["d/NER/entity_f1"] == 1.0
    assert evaluate.evaluate_records(ex.model, ex.tokenizer, [gold], cfg, load_templates())["summary"][
        "d/NER/entity_f1"] == 0.8
    assert calls[-1] is False  # and no scores asked for


def test_bad_unhinted_floors_are_named(monkeypatch):
    from instructie.config import load_config
    from instructie.inference.extractor import Extractor  # noqa: F401
    from instructie.core.io import ConfigError

    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    cfg = "configs/quickstart.yaml"
    assert load_config(cfg, ["eval.unhinted_floor={NER: 0.5}"]).eval.unhinted_floor == {"NER": 0.5}
    for bad in ("eval.unhinted_floor=1.5", "eval.unhinted_floor=-0.1", "eval.unhinted_floor={NER: 2}"):
        with pytest.raises(ConfigError, match="eval.unhinted_floor: an unhinted-item floor is a number from 0 to 1"):
            load_config(cfg, [bad])


def test_extraction_keeps_hinted_and_sure_items_under_the_floor(tiny_model_dir, monkeypatch):
    """``Extractor.extract(unhinted_floor=)``, default the card's: an item the hint did not
    propose is kept only when the model is sure of it; the others are counted in the stats."""
    from instructie.decoding import generation
    from instructie.inference.extractor import Extractor
    from instructie.core.io import ConfigError

    base = Extractor.from_pretrained(tiny_model_dir, device="cpu")
    memory = Memory.from_records([Record("m", "d", "NER", "Obama spoke .", options=OPTIONS,
                                         entities=[Entity("person", "Obama", 0, 5)])])
    card = {**base.card, "unhinted_floor": {"NER": 0.5}}
    ex = Extractor(base.model, base.tokenizer, card, "cpu", memory=memory)

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
    4 (one generation per value); text of no dataset gets the task's value."""
    from instructie.hints import bias as hint_bias
    from instructie.evaluation import evaluate
    from instructie.decoding import generation
    from instructie.config import load_config
    from instructie.inference.extractor import Extractor
    from instructie.config import check_bias
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

    ex = Extractor.from_pretrained(tiny_model_dir, device="cpu")
    memory = Memory.from_records([Record("m", "a", "NER", "Obama spoke .", options=OPTIONS,
                                         entities=[Entity("person", "Obama", 0, 5)])])
    records = [Record(f"{d}{k}", d, "NER", TEXT, options=OPTIONS) for d in "abc" for k in range(2)]
    biases, sizes = [], []
    real_make = hint_bias.decoding_factory
    monkeypatch.setattr(hint_bias, "decoding_factory",
                        lambda *a, hint_bias=0.0, **kw: biases.append(hint_bias) or real_make(*a, hint_bias=hint_bias, **kw))
    monkeypatch.setattr(generation, "generate", lambda m, t, sources, **kw: sizes.append(len(sources)) or
                        [generation.Generated("None", [], []) for _ in sources])
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml")
    cfg.data.max_options = None
    evaluate.evaluate_records(ex.model, ex.tokenizer, records, cfg, load_templates(), memory=memory, hint_bias=bias)
    assert biases == [4.0, 16.0] and sizes == [2, 2, 2]  # c: plain decoding, no processor
