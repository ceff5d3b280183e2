"""The pointer-generator copy head: a proper distribution, a copy route that learns, generation and
save/load through the same paths as plain T5."""
import math

import pytest
import torch

from instructie.decoding import generation
from instructie.model.copy_head import CopyT5ForConditionalGeneration, add_copy_head
from instructie.model.loading import ModelSpec, build_random_t5, load_model_and_tokenizer, load_trained, save_model

TEXTS = ["John Smith lives in Berlin .", "Mary works for Acme Corp in Paris .", "张三在北京工作。"] * 5


def _tiny(copy_head=True):
    model, tok, report = load_model_and_tokenizer(
        ModelSpec(init="random", size="tiny", vocab_size=300, copy_head=copy_head), TEXTS)
    return model, tok, report


def test_lm_head_input_is_last_decoder_hidden_state():
    # copy_head.py reads the decoder state from decoder_hidden_states[-1]: true for this transformers version
    model = build_random_t5("tiny", 128).eval()
    x, y = torch.randint(3, 128, (2, 7)), torch.randint(3, 128, (2, 5))
    out = model(input_ids=x, labels=y, output_hidden_states=True)
    assert torch.allclose(model.lm_head(out.decoder_hidden_states[-1]), out.logits, atol=1e-5)


def test_output_is_a_log_distribution_and_loss_matches():
    model, tok, report = _tiny()
    assert report["copy_head"] is True and isinstance(model, CopyT5ForConditionalGeneration)
    model.eval()
    enc = tok(["John Smith lives in Berlin ."], return_tensors="pt")
    labels = tok(["John Smith"], return_tensors="pt")["input_ids"]
    out = model(**enc, labels=labels)
    probs = out.logits.exp().sum(-1)
    assert torch.allclose(probs, torch.ones_like(probs), atol=1e-4)
    nll = -out.logits[0].gather(-1, labels[0][:, None]).mean()
    assert math.isclose(out.loss.item(), nll.item(), rel_tol=1e-5)


def test_copy_route_puts_mass_on_source_tokens_only_through_the_gate():
    model, tok, _ = _tiny()
    model.eval()
    with torch.no_grad():
        model.copy_gate.bias.fill_(-30.0)  # gate ~0: all mass on the copy distribution
    enc = tok(["Berlin Paris"], return_tensors="pt")
    out = model(**enc, labels=tok(["Paris"], return_tensors="pt")["input_ids"])
    p = out.logits[0, 0].exp()
    src = set(enc["input_ids"][0].tolist())
    assert p[sorted(src)].sum().item() == pytest.approx(1.0, abs=1e-4)
    outside = [i for i in range(p.numel()) if i not in src]
    assert p[outside].max().item() < 1e-6


def _copy_task():
    """eval/experiments/copy_task.py (the script that records these numbers), loaded as a module."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("eval_copy_task", Path(__file__).resolve().parents[2] / "eval" / "experiments" / "copy_task.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_copy_head_copies_unseen_names_that_plain_t5_cannot():
    # same data, steps and seed: plain T5 memorises training words (0/40 measured), the pointer copies
    # them (40/40 measured; 14/40 with the continue-the-copy bias frozen at 0): python eval/experiments/copy_task.py
    task = _copy_task()
    plain, copying = task.copy_first_word("plain"), task.copy_first_word("copy")
    assert copying >= 30 and copying >= plain + 20, (plain, copying)


def test_continue_bias_points_at_the_successor_of_the_previous_token():
    model, _, _ = _tiny()
    d = model.config.d_model
    with torch.no_grad():
        model.copy_query.weight.zero_()      # no content preference: only the continuation bias
        model.copy_gate.bias.fill_(-30.0)    # all mass on the copy distribution
        model.copy_next.weight.zero_()
        model.copy_next.bias.fill_(5.0)
        src = torch.tensor([[5, 6, 7, 8]])
        logp = model.mix(torch.zeros(1, 1, model.config.vocab_size), torch.randn(1, 1, d), torch.randn(1, 4, d),
                         src, torch.ones(1, 4), prev_ids=torch.tensor([[6]]))
    p = logp[0, 0].exp()
    assert int(p.argmax()) == 7 and p[7] > 0.9


def test_generate_save_load_round_trip(tmp_path):
    model, tok, _ = _tiny()
    model.eval()
    before = generation.generate(model, tok, TEXTS[:3], max_new_tokens=6)
    save_model(model, tok, tmp_path / "m")
    loaded, tok2 = load_trained(tmp_path / "m", device="cpu")
    assert isinstance(loaded, CopyT5ForConditionalGeneration)
    assert loaded.lm_head.weight is not loaded.shared.weight
    after = generation.generate(loaded, tok2, TEXTS[:3], max_new_tokens=6)
    assert [b.token_ids for b in before] == [a.token_ids for a in after]
    # a beam search expands source_ids with the rest of the inputs
    beams = generation.generate(loaded, tok2, TEXTS[:3], max_new_tokens=6, num_beams=3)
    assert len(beams) == 3


def test_add_copy_head_keeps_the_plain_models_weights():
    model, tok, _ = _tiny(copy_head=False)
    new = add_copy_head(model)
    assert isinstance(new, CopyT5ForConditionalGeneration)
    assert new.lm_head.weight is not new.shared.weight
    # one input embedding table, as in the plain model (not three trained apart)
    assert new.encoder.embed_tokens.weight is new.shared.weight is new.decoder.embed_tokens.weight
    assert new.num_parameters() - model.num_parameters() == sum(
        p.numel() for n, p in new.named_parameters() if n.startswith("copy_"))
    assert torch.equal(new.lm_head.weight, model.lm_head.weight)
    assert torch.equal(new.shared.weight, model.shared.weight)
    assert torch.equal(new.encoder.block[0].layer[0].SelfAttention.q.weight,
                       model.encoder.block[0].layer[0].SelfAttention.q.weight)


def test_after_warm_up_the_training_forward_compiles_to_one_graph():
    # train.compile: graph breaks would split the copy head's forward into many compiled pieces
    import torch._dynamo
    model, tok, _ = _tiny()
    model.warm_up()
    kw = dict(tok(TEXTS[:4], return_tensors="pt", padding=True),
              labels=tok(["John", "Mary x", "a", "b"], return_tensors="pt", padding=True)["input_ids"],
              use_cache=False)  # as the training loop calls it
    explained = torch._dynamo.explain(model)(**kw)
    assert explained.graph_break_count == 0, [str(b.reason)[:200] for b in explained.break_reasons]


def test_extractor_runs_a_copy_head_model_with_exact_offsets(tiny_model_dir, tmp_path):
    # The API end to end on a copy-head model (real generation, free and copy-constrained): every span it
    # returns is text[start:end] of its document.
    import shutil

    from instructie import Extractor
    from instructie.model.loading import VOCAB_MULTIPLE, _round_up, load_trained

    torch.manual_seed(0)
    _, tok = load_trained(tiny_model_dir, device="cpu")
    model = build_random_t5("tiny", _round_up(len(tok), VOCAB_MULTIPLE), tok, copy_head=True).eval()
    d = tmp_path / "copy_model"
    save_model(model, tok, d)
    shutil.copy(tiny_model_dir / "instructie.json", d / "instructie.json")
    ex = Extractor.from_pretrained(d, device="cpu")
    assert isinstance(ex.model, CopyT5ForConditionalGeneration)
    texts = ["Barack Obama met Emmanuel Macron in Paris.", "王小明的妻子是李华。"]
    for constrained in (None, "copy"):
        docs = list(ex.extract(texts, tasks=["NER", "RE"], constrained=constrained))
        assert len(docs) == 2
        for doc, text in zip(docs, texts):
            spans = [*doc.entities, *(s for r in doc.relations for s in (r.head, r.tail))]
            assert all(text[s.start:s.end] == s.text for s in spans)


def test_padded_batch_loss_and_output_order():
    # a right-padded batch: padding is neither attended nor copied, and out[0] is the loss as in T5
    model, tok, _ = _tiny()
    model.eval()
    enc = tok(["John Smith lives in Berlin .", "Paris ."], return_tensors="pt", padding=True)
    labels = tok(["John Smith", "Paris"], return_tensors="pt", padding=True)["input_ids"]
    labels[labels == tok.pad_token_id] = -100
    out = model(**enc, labels=labels)
    assert out[0] is out.loss and torch.isfinite(out.loss)
    single = model(**tok(["Paris ."], return_tensors="pt"), labels=tok(["Paris"], return_tensors="pt")["input_ids"])
    n = int((labels[1] != -100).sum())
    assert torch.allclose(out.logits[1, :n], single.logits[0, :n], atol=1e-4)
