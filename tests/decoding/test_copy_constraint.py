"""Contiguous-copy constrained decoding: every answer field is a copy of the text or a label.

The processor is driven step by step with scripted token sequences (no model), the way
``model.generate`` calls it: first with the decoder start token alone, then with one more
token per step."""
import pytest
import torch

from instructie.decoding.constraints import CopyProcessor, copy_factory, make_factory
from instructie.prompts.instructions import build_source, load_templates
from instructie.core.records import Record
from instructie.prompts.targets import parse

TEXT = "Barack Obama visited Paris on Monday ."
OPTIONS = ["person", "location"]


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def sp_tok():
    """A T5-like sentencepiece (Unigram + Metaspace) tokenizer: " | " is three tokens."""
    from tokenizers import SentencePieceUnigramTokenizer
    from transformers import PreTrainedTokenizerFast

    from helpers import TINY_TEXTS

    texts = TINY_TEXTS * 3 + [t for v in load_templates().values() for t in v]
    sp = SentencePieceUnigramTokenizer()
    sp.train_from_iterator(texts, vocab_size=400, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>",
                           show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=sp._tokenizer, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>")


def prompt(text=TEXT, options=OPTIONS, task="NER"):
    return build_source(Record("", "", task, text, options=options), load_templates()[task][0], options)


class Driver:
    """Calls a processor the way generate does; ``allowed()`` is the mask for the next token."""

    def __init__(self, tokenizer, sources, beams=1, **kw):
        enc = tokenizer(sources, return_tensors="pt", padding=True)
        self.proc = copy_factory(tokenizer, len(tokenizer), **kw)(enc["input_ids"], enc["attention_mask"])
        assert isinstance(self.proc, CopyProcessor)
        self.tok = tokenizer
        self.ids = torch.zeros(len(sources) * beams, 1, dtype=torch.long)  # T5: decoder start = pad
        self._mask = self._call()

    def _call(self):
        scores = torch.zeros(self.ids.shape[0], len(self.tok) + 3)  # model vocab padded past the tokenizer
        out = self.proc(self.ids, scores)
        assert (out[:, len(self.tok):] < -1e30).all()
        return out > -1e30

    def allowed(self):
        return self._mask

    def push(self, tokens):
        self.ids = torch.cat([self.ids, torch.tensor(tokens, dtype=torch.long)[:, None]], dim=1)
        self._mask = self._call()

    def walk(self, token_ids, row=0):
        """Feed ``token_ids`` (one row); returns the index of the first blocked token, or None."""
        for k, t in enumerate(token_ids):
            if not self.allowed()[row, t]:
                return k
            self.push([t])
        return None


def toks(tokenizer, s):
    return tokenizer(s, add_special_tokens=False)["input_ids"]


def names(tokenizer, mask):
    return tokenizer.convert_ids_to_tokens(mask.nonzero().flatten().tolist())


@pytest.mark.parametrize("answer", ["Barack Obama | person", "Paris | location; Barack Obama | person",
                                    "Obama | person; Paris | location; Monday | location", "None"])
def test_copies_and_labels_are_allowed_token_by_token(tok, answer):
    d = Driver(tok, [prompt()])
    assert d.walk(toks(tok, answer)) is None, answer
    assert d.allowed()[0, tok.eos_token_id]


def test_the_answer_start_tokenization_of_a_word_is_allowed(tok):
    # byte-level BPE: "Barack" at the start of the answer is not the prompt's " Barack"
    assert toks(tok, "Barack") != toks(tok, " Barack")[1:]
    d = Driver(tok, [prompt()])
    assert d.walk(toks(tok, "Barack")) is None
    d = Driver(tok, [prompt()])
    assert d.walk(toks(tok, " Barack")) is None  # the prompt's own tokens (with a space) too


def test_a_non_contiguous_copy_is_blocked_where_it_leaves_the_source(tok):
    d = Driver(tok, [prompt()])
    ids = toks(tok, "Barack Paris | person")
    k = d.walk(ids)
    assert k is not None and tok.decode(ids[k:k + 1]).strip() == "Paris"[: len(tok.decode(ids[k:k + 1]).strip())]
    assert tok.decode(ids[:k]) == "Barack"
    assert d.allowed()[0, toks(tok, " Obama")[0]]  # the copy may go on with " Obama"


def test_words_not_in_the_text_are_blocked(tok):
    for word in ("Macron", "Brussels"):  # in the tokenizer, not in this prompt
        d = Driver(tok, [prompt()])
        k = d.walk(toks(tok, word + " | person"))
        assert k is not None and k < len(toks(tok, word))
    # NER: the span is copied from the text, not from the instruction or the options
    for word in ("person", "entities", "Option", "Answer"):
        d = Driver(tok, [prompt()])
        assert d.walk(toks(tok, word)) is not None, word


def test_the_label_field_copies_a_whole_option(tok):
    d = Driver(tok, [prompt()])
    assert d.walk(toks(tok, "Obama | location")) is None
    assert d.allowed()[0, tok.eos_token_id]
    d = Driver(tok, [prompt()])
    k = d.walk(toks(tok, "Obama | Paris"))  # a span where the label belongs
    assert k is not None and tok.decode(toks(tok, "Obama | Paris")[:k]).startswith("Obama |")
    d = Driver(tok, [prompt()])
    partial = toks(tok, "Obama | person")[:-1]  # "... | per": not a label yet
    assert d.walk(partial) is None
    assert not d.allowed()[0, tok.eos_token_id]
    assert not any(d.allowed()[0, i] for i in toks(tok, ";"))


def test_a_classification_answer_may_start_with_any_label(tok):
    """RC answers a label at the very start, where byte-level BPE may write it without the space it
    has in "Option: person, location": that form must be allowed for every label, not only for
    the last one (a label is followed by a comma, outside any copyable unit)."""
    labels = ["person", "location", "organization"]
    assert any(toks(tok, x) != toks(tok, " " + x)[1:] for x in labels)  # some label's two forms differ
    for label in labels:
        d = Driver(tok, [prompt(options=labels, task="RC")])
        assert d.walk(toks(tok, label)) is None, label
        assert d.allowed()[0, tok.eos_token_id]


def test_eos_only_after_a_complete_copy(tok):
    d = Driver(tok, [prompt()])
    assert not d.allowed()[0, tok.eos_token_id]  # not an empty answer: that is "None"
    first = toks(tok, "Barack")
    assert len(first) > 1
    d.push(first[:1])
    assert not d.allowed()[0, tok.eos_token_id]  # mid-word
    assert d.walk(first[1:]) is None
    assert d.allowed()[0, tok.eos_token_id]
    d.walk(toks(tok, " |"))
    assert not d.allowed()[0, tok.eos_token_id]  # right after a separator: an empty field
    d = Driver(tok, [prompt()])
    d.walk(toks(tok, "None"))
    assert names(tok, d.allowed()[0]) == [tok.eos_token]  # None is the whole answer
    d = Driver(tok, [prompt()])
    assert d.walk(toks(tok, "Obama | person; None")) is not None  # ... and only the whole answer


def test_batch_rows_are_independent(tok):
    sources = [prompt(), prompt("EU rejects German call to boycott British lamb .", ["organization", "location"])]
    d = Driver(tok, sources)
    a, b = toks(tok, "Obama | person"), toks(tok, "EU | organization")
    steps = max(len(a), len(b))
    for k in range(steps):
        row = [a[k] if k < len(a) else tok.eos_token_id, b[k] if k < len(b) else tok.eos_token_id]
        assert d.allowed()[0, row[0]] and d.allowed()[1, row[1]]
        if k == 0:
            assert not d.allowed()[1, a[0]] and not d.allowed()[0, b[0]]
        d.push(row)
    assert d.allowed()[:, tok.eos_token_id].tolist() == [True, True]  # row 0 done (on EOS), row 1 complete


def test_beams_follow_the_reordering_of_rows(tok):
    """Beam search reorders its rows every step: each row's state must follow its own prefix."""
    sources = [prompt(), prompt("Japan beat China 2-1 in the Asian Cup on Friday .", ["location", "person"])]
    answers = [["Barack Obama | person", "Paris | location", "None"],
               ["Japan | location; China | location", "China | person", "Friday"]]
    seqs = [[toks(tok, a) + [tok.eos_token_id] for a in group] for group in answers]
    T = max(len(s) for g in seqs for s in g)
    seqs = [[s + [tok.pad_token_id] * (T - len(s)) for s in g] for g in seqs]
    beams = 3
    d = Driver(tok, sources, beams=beams)
    refs = [[Driver(tok, [sources[b]]) for _ in range(beams)] for b in range(2)]
    g = torch.Generator().manual_seed(0)
    for k in range(T):
        order = [torch.randperm(beams, generator=g).tolist() for _ in range(2)]  # a new row order each step
        rows = [seqs[b][order[b][i]] for b in range(2) for i in range(beams)]
        d.ids = torch.tensor([[0] + r[:k] for r in rows], dtype=torch.long)
        d.push([r[k] for r in rows])
        for b in range(2):
            for j in range(beams):
                refs[b][j].push([seqs[b][j][k]])
        for b in range(2):
            for i in range(beams):
                ref = refs[b][order[b][i]]
                assert torch.equal(d.allowed()[b * beams + i], ref.allowed()[0]), (k, b, i)


def test_a_sentencepiece_tokenizer_with_multi_token_separators(sp_tok):
    assert len(toks(sp_tok, " | ")) > 1  # "▁ | ▁"
    for answer in ("Barack Obama | person", "Paris | location; Barack Obama | person", "None"):
        d = Driver(sp_tok, [prompt()])
        assert d.walk(toks(sp_tok, answer)) is None, answer
        assert d.allowed()[0, sp_tok.eos_token_id]
    d = Driver(sp_tok, [prompt()])
    ids = toks(sp_tok, "Barack Paris | person")
    k = d.walk(ids)
    assert k is not None and sp_tok.decode(ids[:k]).strip() == "Barack"


def test_slots_take_given_role_names_and_copied_values(tok):
    src = prompt("王小明毕业于北京大学，他的妻子是李华。", ["妻子", "毕业院校"], task="RE")
    d = Driver(tok, [src], roles=["时间"])
    assert d.walk(toks(tok, "王小明 | 妻子 | 李华 | 时间=北京大学")) is None
    assert d.allowed()[0, tok.eos_token_id]
    # the RE tail (third field) is a span, not a slot: a role name cannot stand there
    d = Driver(tok, [src], roles=["时间"])
    k = d.walk(toks(tok, "王小明 | 妻子 | 时间"))
    assert k is not None and k >= len(toks(tok, "王小明 | 妻子 |"))
    # a role name must be followed by '='
    d = Driver(tok, [src], roles=["时间"])
    d.walk(toks(tok, "王小明 | 妻子 | 李华 | 时间"))
    assert not d.allowed()[0, tok.eos_token_id]
    assert d.allowed()[0, toks(tok, "=")[0]]


def test_make_factory_modes(tok):
    assert make_factory(False, tok, len(tok)) is None and make_factory("off", tok, len(tok)) is None
    enc = tok([prompt()], return_tensors="pt")
    assert type(make_factory(True, tok, len(tok))(enc["input_ids"], enc["attention_mask"])).__name__ == \
        "SourceVocabularyProcessor"
    assert type(make_factory("vocab", tok, len(tok))(enc["input_ids"], enc["attention_mask"])).__name__ == \
        "SourceVocabularyProcessor"
    assert isinstance(make_factory("copy", tok, len(tok))(enc["input_ids"], enc["attention_mask"]), CopyProcessor)
    with pytest.raises(ValueError):
        make_factory("yes", tok, len(tok))


def test_cli_flags_choose_the_mode():
    from instructie.cli.main import build_parser

    p = build_parser()
    assert p.parse_args(["extract", "in.txt", "--model", "m"]).constrained is None
    assert p.parse_args(["extract", "in.txt", "--model", "m", "--constrained"]).constrained == "vocab"
    assert p.parse_args(["extract", "in.txt", "--model", "m", "--constrained", "copy"]).constrained == "copy"
    assert p.parse_args(["test", "--model", "m", "--config", "c", "--constrained", "copy"]).constrained == "copy"


# ------------------------------------------------------------------ with the tiny random model

@pytest.mark.parametrize("beams", [1, 2])
def test_generate_writes_only_spans_of_the_text(tiny_model_dir, tok, beams):
    """The property that matters: under the copy constraint every parsed entity is in the text
    (unsupported rate 0), and every label is an option."""
    from helpers import TINY_TEXTS
    from transformers import AutoModelForSeq2SeqLM

    from instructie.decoding.generation import generate

    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_model_dir).eval()
    opts = ["person", "location", "organization"]
    recs = [Record(str(i), "d", "NER", t, options=opts) for i, t in enumerate(TINY_TEXTS[:8])]
    sources = [prompt(r.text, opts) for r in recs]
    limit = 40
    outs = generate(model, tok, sources, max_new_tokens=limit, num_beams=beams, batch_size=3,
                    logits_processor_factory=copy_factory(tok, model.config.vocab_size))
    n = 0
    for r, g in zip(recs, outs):
        text = g.text
        if len(g.token_ids) >= limit:  # cut by max_new_tokens: its last field may be unfinished
            text = text[: max(0, text.rfind(";"))]
        res = parse(text, "NER", options=opts)
        assert res.dropped["unknown_label"] == 0, g.text
        for e in res.entities:
            assert e.text in r.text, (e.text, g.text)
            n += 1
    assert n > 0  # the random model did write entities


def test_extractor_copy_mode_has_no_unsupported_items(tiny_model_dir):
    from instructie.inference.extractor import Extractor

    ex = Extractor.from_pretrained(tiny_model_dir, device="cpu")
    texts = ["Barack Obama visited Paris on Monday . Obama met Emmanuel Macron in Paris .",
             "Peter Blackburn works for the European Commission in Brussels ."]
    docs = list(ex.extract(texts, tasks=["NER", "RE", "EE"], constrained="copy", keep_unsupported=True,
                           max_new_tokens=24, num_beams=2, batch_size=8))
    items = sum(len(d.entities) + len(d.relations) + len(d.events) for d in docs)
    assert items > 0
    assert all(d.stats.get("unsupported", 0) == 0 and not d.unsupported for d in docs)


def _fixture_records():
    """Real records of every adapter: CoNLL/CrossNER NER and DuEE EE, DuIE RE, FewRel RC, financial NEG."""
    from pathlib import Path

    from instructie.data_adapters import get_adapter

    fix = Path(__file__).resolve().parents[1] / "fixtures"
    out = list(get_adapter("ie_instructions")(str(fix / "ie_instructions"), split="test"))
    out += list(get_adapter("duie")(str(fix / "duie" / "duie_train_excerpt.json"),
                                    schema=str(fix / "duie" / "duie_schema.json")))[:20]
    out += list(get_adapter("fewrel")(str(fix / "fewrel" / "val_wiki_excerpt.json"), split="val",
                                      pid2name=str(fix / "fewrel" / "pid2name_excerpt.json")))[:20]
    out += list(get_adapter("fin_negative")(str(fix / "fin_negative" / "Train_Data.csv")))[:20]
    return out


def test_every_gold_answer_of_the_fixtures_passes_the_copy_constraint():
    """What the constraint forbids it can only get wrong: each real record's gold answer, asked as
    evaluation asks it (option chunks), must be writable token by token. (FewRel's labels at the
    start of the answer were blocked for every label but the last: accuracy fell 0.71 -> 0.54.)"""
    from instructie.decoding.constraints import first_blocked
    from instructie.inference.predict import record_prompts
    from instructie.prompts.instructions import restrict
    from instructie.model.tokenizer import train_tokenizer
    from instructie.prompts.targets import render

    records = _fixture_records()
    assert {r.task for r in records} == {"NER", "EE", "RE", "RC", "NEG"}
    templates = load_templates()
    tok = train_tokenizer([r.text for r in records] + [" ".join(r.options) for r in records]
                          + [t for v in templates.values() for t in v], vocab_size=3000)
    roles = sorted({x for r in records for rs in (r.roles or {}).values() for x in rs})
    factory = copy_factory(tok, len(tok), roles=roles, templates=templates)
    blocked = []
    for r in records:
        for p in record_prompts(r, templates, 8):
            opts, source = list(p.options), p.source
            answer = render(restrict(r, opts))
            k = first_blocked(factory, tok, source, answer)
            if k is not None:
                blocked.append((r.dataset, r.id, answer, tok.convert_ids_to_tokens(tok(answer)["input_ids"])[k]))
    assert not blocked, blocked[:5]
