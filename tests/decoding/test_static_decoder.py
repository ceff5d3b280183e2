"""The static decoder (static buffers, continuous feeding) answers exactly as ``model.generate``
does: same token ids, texts and log-probabilities on a tiny random T5, with and without the
decoding constraints, however prompts are fed to its rows."""
import pytest
import torch

from instructie.core.records import Record
from instructie.decoding import generation
from instructie.decoding.constraints import make_factory
from instructie.decoding.static_decoder import bucket, release
from instructie.decoding.constraints import chain_factories
from instructie.hints.memory import Memory
from instructie.hints.plugin import Hints, HintSettings, proposed_items
from instructie.inference.predict import Prompt
from instructie.prompts.instructions import build_source, load_templates
from instructie.prompts.targets import render_items

from helpers import TINY_TEXTS

OPTIONS = ["person", "location", "organization"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from instructie.model.loading import load_trained

    model, tok = load_trained(tiny_model_dir, device="cpu")
    return model.eval(), tok


def prompts(k=2, hint=False):
    """NER prompts over the tiny texts, ``k`` rounds (each with another option order)."""
    out = []
    for r in range(k):
        opts = OPTIONS[r % 3:] + OPTIONS[: r % 3]
        for text in TINY_TEXTS:
            memory = "Memory: " + render_items([(text.split()[0], opts[0])]) if hint else None
            out.append(build_source(Record("", "", "NER", text, options=opts), load_templates()["NER"][r % 2],
                                    opts, memory))
    return out


class StopAfter:
    """Ends row r's answer after k_r tokens, k_r read from its prompt's ids: mixed answer
    lengths from a random model, the same wherever the row is decoded."""

    def __init__(self, ids, mask, eos):
        self.k = (ids * mask).sum(1) % 11 + 1
        self.eos = eos

    def __call__(self, input_ids, scores):
        hit = self.k == input_ids.shape[1] - 1
        out = scores.clone()
        out[:, self.eos] = torch.where(hit, 1e9, torch.finfo(scores.dtype).min)
        return out


def run(model, tok, srcs, decoder, **kw):
    stats = {}
    out = generation.generate(model, tok, srcs, decoder=decoder, stats=stats, **kw)
    assert stats["decoder"] == decoder
    return out, stats


def same(a, b):
    assert [x.token_ids for x in a] == [y.token_ids for y in b]
    assert [x.text for x in a] == [y.text for y in b]
    assert [x.truncated for x in a] == [y.truncated for y in b]
    for x, y in zip(a, b):
        assert x.token_logprobs == pytest.approx(y.token_logprobs, abs=1e-4)


@pytest.mark.parametrize("constrained", [False, "vocab", "copy"])
def test_static_and_eager_decoders_answer_alike(tiny, constrained):
    model, tok = tiny
    srcs = prompts()
    fac = make_factory(constrained, tok, model.config.vocab_size, roles=["winner"])
    eager, _ = run(model, tok, srcs, "eager", max_new_tokens=12, logits_processor_factory=fac)
    static, _ = run(model, tok, srcs, "static", max_new_tokens=12, logits_processor_factory=fac)
    same(eager, static)
    assert any(g.text for g in static)


def test_hint_bias_runs_in_the_static_decoder(tiny):
    model, tok = tiny
    srcs = prompts(hint=True)
    rows = [Prompt(s, "NER", tuple(OPTIONS), "", hint=proposed_items(s.split("\n")[-2], "NER")) for s in srcs]
    copy = make_factory("copy", tok, model.config.vocab_size)
    lean = Hints(Memory(), HintSettings(1e4)).logits_factory(tok, model.config.vocab_size, copy.vocab)
    fac = chain_factories(lean, copy)
    eager, _ = run(model, tok, srcs, "eager", max_new_tokens=10, logits_processor_factory=fac, rows=rows)
    static, _ = run(model, tok, srcs, "static", max_new_tokens=10, logits_processor_factory=fac, rows=rows)
    same(eager, static)
    # the bias wrote each prompt's hint item (its first word), so the processor did act
    assert sum(g.text.startswith(src.split("Text: ")[1].split()[0]) for g, src in zip(static, srcs)) >= len(srcs) // 2


@pytest.mark.parametrize("constrained", [False, "copy"])
def test_continuous_feeding_answers_as_plain_batches(tiny, constrained):
    """Few rows, many prompts of mixed answer lengths: rows are refilled as answers end, and
    each prompt's answer is the one it gets in one batch holding every prompt."""
    model, tok = tiny
    srcs = prompts(3)
    eos = tok.eos_token_id
    mask = make_factory(constrained, tok, model.config.vocab_size)

    def fac(ids, m):
        stop = StopAfter(ids, m, eos)
        if mask is None:
            return stop
        proc = mask(ids, m)
        return lambda i, s: stop(i, proc(i, s))

    release(model)
    whole, st_whole = run(model, tok, srcs, "static", max_new_tokens=14, batch_size=len(srcs),
                          logits_processor_factory=fac)
    release(model)
    fed, st_fed = run(model, tok, srcs, "static", max_new_tokens=14, batch_size=5, logits_processor_factory=fac)
    eager, _ = run(model, tok, srcs, "eager", max_new_tokens=14, batch_size=5, logits_processor_factory=fac)
    same(whole, fed)
    same(eager, fed)
    lengths = {len(g.token_ids) for g in fed}
    assert len(lengths) >= 5  # mixed lengths, so rows did free up at different steps
    # 5 rows decode 27 prompts of 1..11 tokens in fewer steps than 6 batches each as long as its longest
    assert st_fed["steps"] < 6 * 12 and st_fed["rows"] == 5


def test_copy_head_model_decodes_alike():
    from instructie.model.loading import ModelSpec, load_model_and_tokenizer

    texts = ["John Smith lives in Berlin .", "Mary works for Acme Corp in Paris .", "张三在北京工作。"] * 3
    torch.manual_seed(1)
    model, tok, _ = load_model_and_tokenizer(ModelSpec(init="random", size="tiny", vocab_size=300, copy_head=True),
                                             texts)
    model.eval()
    eager, _ = run(model, tok, texts, "eager", max_new_tokens=8)
    static, _ = run(model, tok, texts, "static", max_new_tokens=8)
    same(eager, static)


def test_cut_sources_and_empty_input(tiny):
    model, tok = tiny
    srcs = prompts(1)
    eager, _ = run(model, tok, srcs, "eager", max_new_tokens=6, max_source_length=20)
    static, _ = run(model, tok, srcs, "static", max_new_tokens=6, max_source_length=20)
    same(eager, static)
    assert all(g.truncated for g in static)
    assert generation.generate(model, tok, [], decoder="static") == []


def test_which_decoder_runs(tiny):
    model, tok = tiny
    assert generation.pick_decoder(model, "auto", 1) == "static"
    assert generation.pick_decoder(model, "auto", 3) == "eager"  # beams: model.generate
    with pytest.raises(ValueError, match="beam search"):
        generation.pick_decoder(model, "static", 3)
    with pytest.raises(ValueError, match="decoder must be one of"):
        generation.pick_decoder(model, "fast", 1)
    model.train()
    try:
        assert generation.pick_decoder(model, "auto", 1) == "eager"  # dropout on: not the static decoder's job
    finally:
        model.eval()
    beams = generation.generate(model, tok, prompts(1)[:3], max_new_tokens=4, num_beams=2)
    assert len(beams) == 3


def test_source_buckets():
    assert [bucket(n) for n in (1, 32, 33, 256, 257, 512, 513)] == [32, 32, 64, 256, 320, 512, 640]


@pytest.mark.parametrize("decoder", ["static", "eager"])
def test_each_prompts_metadata_reaches_its_own_processor_row(tiny, decoder):
    """``rows``: the factory gets the metadata of exactly the prompts it builds for, in its
    rows' order -- here each prompt's wanted answer length, which the answer then has."""
    model, tok = tiny
    srcs = prompts(2)
    want = [(i * 7) % 10 + 1 for i in range(len(srcs))]
    eos = tok.eos_token_id

    def fac(ids, mask, rows):
        stop = StopAfter(ids, mask, eos)
        stop.k = torch.tensor(rows, device=ids.device)
        return stop

    release(model)
    out, _ = run(model, tok, srcs, decoder, max_new_tokens=12, batch_size=4, logits_processor_factory=fac,
                 rows=want, with_scores=False)
    # the model may write special tokens, which answers leave out: at most the wanted length
    assert all(len(g.token_ids) <= k for g, k in zip(out, want))
    assert sum(len(g.token_ids) == k for g, k in zip(out, want)) >= len(srcs) - 3


def test_a_model_let_go_takes_its_decoder_with_it(tiny_model_dir):
    """The buffers and graphs kept for a model must not keep the model alive: a process that loads one model
    after another (checkpoints, several extractors) frees each one's memory when it lets the model go."""
    import gc
    import weakref

    from instructie.decoding.static_decoder import _DECODERS
    from instructie.model.loading import load_trained

    model, tok = load_trained(tiny_model_dir, device="cpu")
    model.eval()
    run(model, tok, prompts(1), "static", max_new_tokens=4)
    assert model in _DECODERS
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None
