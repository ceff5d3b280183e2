"""loading.py: random-init T5, trained tokenizer, save/load, offline errors, a pretrained checkpoint (the Flan-T5
stand-in, tests/flan_t5_standin.py) with its vocabulary extended. CPU only, no network: every model and tokenizer
is built here. The tokenizer's own tests are in test_tokenizer.py."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch

from flan_t5_standin import flan_t5_standin  # noqa: F401 (a fixture)
from instructie.core.io import ConfigError
from instructie.model.loading import (SIZES, ModelSpec, build_random_t5, count_params, load_model_and_tokenizer,
                                      load_trained, model_flops_per_token, save_model)
from instructie.model.tokenizer import unknown_rate

DUIE = Path("/work/shared/data/duie/duie_train.json")
CONLL = Path("/work/shared/data/ie_instructions/NER/CoNLL2003/train.json")
GRAMMAR = "person: Peter Blackburn; organization: EU | head=冰火未央 \\ tail=a;b\nline two\n"
ZH_FALLBACK = [  # used where the shared data is not present (e.g. the GPU machine)
    {"text": "《邪少兵王》是冰火未央写的网络小说连载于旗峰天下",
     "spo_list": [{"subject": "邪少兵王", "object": {"@value": "冰火未央"}}]},
    {"text": "GV-971由中国海洋大学、中国科学院上海药物研究所（下称“上海药物所”）和上海绿谷制药有限公司联合研发",
     "spo_list": [{"subject": "上海药物研究所", "object": {"@value": "上海药物所"}}]},
    {"text": "李白，字太白，号青莲居士，唐朝浪漫主义诗人，被后人誉为“诗仙”",
     "spo_list": [{"subject": "李白", "object": {"@value": "唐朝"}}]},
]
EN_FALLBACK = ["EU rejects German call to boycott British lamb .", "Peter Blackburn",
               "BRUSSELS 1996-08-22", "The European Commission said on Thursday it disagreed with German advice ."]


@pytest.fixture(scope="module")
def duie() -> list[dict]:
    if DUIE.exists():
        with DUIE.open(encoding="utf-8") as f:
            return [json.loads(line) for line, _ in zip(f, range(400))]
    return ZH_FALLBACK


@pytest.fixture(scope="module")
def zh(duie) -> list[str]:
    return [r["text"] for r in duie]


@pytest.fixture(scope="module")
def en() -> list[str]:
    if CONLL.exists():
        return [r["sentence"] for r in json.loads(CONLL.read_text(encoding="utf-8"))[:2000]]
    return EN_FALLBACK * 50


@pytest.fixture(scope="module")
def random_tiny(zh, en):
    return load_model_and_tokenizer(ModelSpec(init="random", size="tiny", vocab_size=3000), zh + en + [GRAMMAR])


def _batch(tok, src: list[str], tgt: list[str]) -> dict[str, torch.Tensor]:
    enc = tok(src, return_tensors="pt", padding=True)
    labels = tok(tgt, return_tensors="pt", padding=True)["input_ids"]
    labels[labels == tok.pad_token_id] = -100
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}


# ------------------------------------------------------------------------------------ random init
def test_random_tiny_init_and_initial_loss(random_tiny, zh, en):
    model, tok, report = random_tiny
    cfg = model.config
    d = cfg.d_model
    assert (cfg.num_layers, cfg.num_decoder_layers, d) == (2, 2, 128) and cfg.is_gated_act
    assert (cfg.pad_token_id, cfg.eos_token_id, cfg.decoder_start_token_id) == (0, 1, 0)
    assert not getattr(cfg, "scale_decoder_outputs", False)
    head, emb = model.get_output_embeddings(), model.get_input_embeddings()
    assert head.weight is not emb.weight and not report["lm_head_tied"]
    assert abs(head.weight.std().item() - d ** -0.5) < 0.1 * d ** -0.5  # not HF's 1.0
    assert emb.num_embeddings % 64 == 0 and len(tok) <= emb.num_embeddings < len(tok) + 64
    assert report["params"]["total"] == sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())

    model.eval()
    with torch.no_grad():
        src = zh[:4] + en[:4]
        loss = model(**_batch(tok, src, ["person: x", "王; 李"] * (len(src) // 2) + ["x"] * (len(src) % 2))).loss.item()
    assert math.isfinite(loss) and abs(loss - math.log(emb.num_embeddings)) < 1.5, loss  # not ~100

    # HF's own tie_weights() (called e.g. by resize) must not re-tie the head we untied
    model.tie_weights()
    assert model.get_output_embeddings().weight is not model.get_input_embeddings().weight


def test_generate_runs_and_uses_t5_ids(random_tiny):
    model, tok, _ = random_tiny
    model.eval()
    out = model.generate(**tok(["EU rejects German call"], return_tensors="pt"), max_new_tokens=4, do_sample=False)
    assert out[0, 0].item() == 0 and out.shape[1] <= 5


def test_random_init_needs_texts_or_tokenizer():
    with pytest.raises(ConfigError, match="training texts"):
        load_model_and_tokenizer(ModelSpec(init="random", size="tiny"))
    with pytest.raises(ConfigError, match="size"):
        load_model_and_tokenizer(ModelSpec(init="random", size="huge"), ["a b c"] * 10)
    with pytest.raises(ConfigError, match="name_or_path"):
        load_model_and_tokenizer(ModelSpec(init="pretrained"))


# ------------------------------------------------------------------------------------ trained tokenizer
def test_trained_tokenizer_eos_specials_roundtrip(random_tiny, zh, en, tmp_path):
    from transformers import AutoTokenizer

    _, tok, report = random_tiny
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.convert_ids_to_tokens([0, 1, 2]) == ["<pad>", "</s>", "<unk>"]
    ids = tok("EU rejects")["input_ids"]
    assert ids[-1] == 1 and ids.count(1) == 1  # the post-processor appends </s>
    assert report["unknown_rate_before"]["rate"] == 0 and report["added_chars"] == []
    for text in zh + en + [GRAMMAR, "全角，标点：“引号”（括号）１２３", "tab\there  two  spaces", "Ünïcödé ß"]:
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids
        assert tok.decode(ids, skip_special_tokens=True) == text  # exact: no normalizer, newlines kept
    rate = unknown_rate(tok, zh + en + [GRAMMAR])
    assert rate["rate"] == 0 and rate["missing_chars"] == [] and rate["lossy_chars"] == []
    assert rate["chars_total"] > 0

    tok.save_pretrained(tmp_path)
    back = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    for text in [GRAMMAR, zh[0], en[0]]:
        assert back(text)["input_ids"] == tok(text)["input_ids"]
        assert back.decode(back(text)["input_ids"], skip_special_tokens=True) == text


def test_cjk_span_tokenized_like_in_context(random_tiny, duie):
    """Each CJK character is its own pre-token, so an entity's tokens (alone, as in an answer) are a
    contiguous run of its sentence's tokens: the model can copy them."""
    _, tok, _ = random_tiny
    han = lambda s: bool(s) and all("\u4e00" <= c <= "\u9fff" for c in s)  # noqa: E731
    checked = 0
    for r in duie:
        sent = tok(r["text"], add_special_tokens=False)["input_ids"]
        for spo in r["spo_list"]:
            for span in (spo["subject"], spo["object"]["@value"]):
                if not han(span) or span not in r["text"]:
                    continue
                ids = tok(span, add_special_tokens=False)["input_ids"]
                assert any(sent[i:i + len(ids)] == ids for i in range(len(sent) - len(ids) + 1)), span
                checked += 1
    assert checked > 0


# ------------------------------------------------------------------------------------ save / load
def test_save_load_identical_logits(random_tiny, tmp_path):
    model, tok, _ = random_tiny
    model.eval()
    save_model(model, tok, tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not (tmp_path / "pytorch_model.bin").exists()
    assert json.loads((tmp_path / "config.json").read_text())["tie_word_embeddings"] is False
    m2, t2 = load_trained(tmp_path, device="cpu")
    assert not m2.training and m2.dtype == torch.float32
    assert m2.get_output_embeddings().weight is not m2.get_input_embeddings().weight
    assert m2.encoder.embed_tokens.weight is m2.shared.weight  # input embeddings still shared
    batch = _batch(tok, ["EU rejects German call", "冰火未央写的网络小说"], ["organization: EU", "王"])
    assert t2(["冰火未央", GRAMMAR])["input_ids"] == tok(["冰火未央", GRAMMAR])["input_ids"]
    with torch.no_grad():
        a, b = model(**batch).logits, m2(**batch).logits
    assert torch.equal(a, b)
    m3, _ = load_trained(tmp_path, device="cpu", dtype="bfloat16")
    assert m3.dtype == torch.bfloat16


def test_load_trained_rejects_non_model_dir(tmp_path):
    with pytest.raises(ConfigError, match="config.json"):
        load_trained(tmp_path)


# ------------------------------------------------------------------------------------ offline hub errors
def test_offline_missing_hub_id_is_a_clear_config_error(monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)  # read at import time: patch the live value too
    t0 = time.time()
    with pytest.raises(ConfigError) as e:
        load_model_and_tokenizer(ModelSpec(name_or_path="instructie-test/no-such-model-xyz"))
    msg = str(e.value)
    assert msg.startswith("model 'instructie-test/no-such-model-xyz' is not a local directory"), msg
    assert "Hugging Face hub (offline?)" in msg and "init: random" in msg
    assert time.time() - t0 < 20
    with pytest.raises(ConfigError, match="directory not found"):
        load_model_and_tokenizer(ModelSpec(name_or_path="./no/such/model/dir"))


# ------------------------------------------------------------------------------------ a pretrained checkpoint
@pytest.fixture(scope="module")
def flan_like_dir(flan_t5_standin):
    """The stand-in checkpoint (untied head, English-only T5 tokenizer) and its output layer as saved."""
    from safetensors.torch import load_file
    return flan_t5_standin, load_file(str(flan_t5_standin / "model.safetensors"))["lm_head.weight"]


def test_extend_vocab_pretrained(flan_like_dir, zh, en):
    d, head_before = flan_like_dir
    texts = zh + en[:200] + ["Peter Blackburn 王小明是人, a=b | c;d \\ e"]
    model, tok, report = load_model_and_tokenizer(ModelSpec(name_or_path=str(d), init="pretrained"), texts)
    before, after = report["unknown_rate_before"], report["unknown_rate_after"]
    assert before["rate"] > 0 and "王" in before["missing_chars"] and "\\" in before["missing_chars"]
    assert after["rate"] == 0 and after["missing_chars"] == [] and after["lossy_chars"] == []
    assert report["extend_method"] == "unigram_pieces"
    assert set(report["added_chars"]) == set(before["missing_chars"]) | set(before["lossy_chars"])
    assert "unknown chars" in report["summary"] and "rewritten chars" in report["summary"]

    rows = model.get_input_embeddings().num_embeddings
    assert len(tok) <= rows < len(tok) + 64 and model.get_output_embeddings().out_features == rows
    assert rows == report["embedding_rows"] and model.config.vocab_size == rows
    # the checkpoint's separate output layer survived the resize (HF's tie_weights would re-tie it to `shared`)
    head = model.get_output_embeddings().weight
    assert head is not model.get_input_embeddings().weight
    n = report["base_tokenizer_len"]
    assert torch.equal(head[:n], head_before[:n])
    # existing ids unchanged; sentinels keep theirs; no spacing damage around new characters
    from transformers import AutoTokenizer

    orig = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    assert tok("Peter Blackburn said .")["input_ids"] == orig("Peter Blackburn said .")["input_ids"]
    assert tok.convert_tokens_to_ids("<extra_id_0>") == orig.convert_tokens_to_ids("<extra_id_0>")
    assert "<extra_id_0>" in tok.all_special_tokens
    for text in texts:
        ids = tok(text)["input_ids"]
        assert ids[-1] == tok.eos_token_id and tok.unk_token_id not in ids
        assert tok.decode(ids, skip_special_tokens=True) == " ".join(text.split())  # T5 collapses whitespace
    with torch.no_grad():
        loss = model(**_batch(tok, texts[:3], ["王小明", "x", "b"])).loss
    assert torch.isfinite(loss)


def test_extend_vocab_off_keeps_tokenizer(flan_like_dir, zh):
    d, _ = flan_like_dir
    model, tok, report = load_model_and_tokenizer(ModelSpec(name_or_path=str(d), extend_vocab=False), zh[:20])
    assert report["unknown_rate_after"]["rate"] > 0 and report["added_chars"] == []
    assert model.get_input_embeddings().num_embeddings >= len(tok)
    assert unknown_rate(tok, zh)["rate"] > 0.5  # an English vocabulary misses most Chinese


# ------------------------------------------------------------------------------------ accounting
def test_count_params_and_flops():
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(vocab_size=32128, feed_forward_proj="gated-gelu", tie_word_embeddings=False, **SIZES["small"])
    with torch.device("meta"):
        model = T5ForConditionalGeneration(cfg)
    model.set_output_embeddings(torch.nn.Linear(cfg.d_model, cfg.vocab_size, bias=False, device="meta"))
    p = count_params(model)
    assert p["embedding"] == 2 * 32128 * 512 and p["total"] == p["embedding"] + p["non_embedding"]
    assert 75e6 < p["total"] < 80e6  # flan-t5-small: 77M
    f = model_flops_per_token(cfg)
    # matmul params seen by tokens = all non-embedding params except norms and relative bias, plus the head
    assert abs((f.n_enc + f.n_dec - 512 * 32128) - p["non_embedding"]) / p["non_embedding"] < 0.01
    assert f.encoder_per_src_token == 6 * f.n_enc and f.decoder_per_tgt_token == 6 * f.n_dec
    g = model_flops_per_token(cfg, src_len=128, tgt_len=32)
    assert g.encoder_per_src_token > f.encoder_per_src_token and g.decoder_per_tgt_token > f.decoder_per_tgt_token
    assert g.train_flops(1000, 100) == g.encoder_per_src_token * 1000 + g.decoder_per_tgt_token * 100


def test_copy_head_on_a_pretrained_checkpoint_keeps_its_weights(flan_like_dir, zh, en):
    # model.copy_head on top of a pretrained T5 (Flan-T5, a pretrain run): the checkpoint's weights and its
    # separate output layer survive, the vocabulary is still extended for Chinese, and the loss is finite.
    from instructie.model.copy_head import CopyT5ForConditionalGeneration
    d, head_before = flan_like_dir
    texts = zh + en[:50]
    model, tok, report = load_model_and_tokenizer(
        ModelSpec(name_or_path=str(d), init="pretrained", copy_head=True), texts)
    assert isinstance(model, CopyT5ForConditionalGeneration) and report["copy_head"] is True
    assert report["unknown_rate_after"]["rate"] == 0
    head = model.get_output_embeddings().weight
    assert head is not model.get_input_embeddings().weight
    n = report["base_tokenizer_len"]
    assert torch.equal(head[:n], head_before[:n])
    with torch.no_grad():
        loss = model(**_batch(tok, texts[:3], ["王小明", "x", "b"])).loss
    assert torch.isfinite(loss)


def test_a_fine_tuned_copy_head_model_from_a_pretrained_checkpoint_reloads_as_trained(flan_like_dir, en, tmp_path):
    # Fine-tuning starts from a pretrain run (or Flan-T5) with the copy head added: T5's encoder and decoder read
    # one embedding table, as in the random-init model (same parameter count), and what training changed in it
    # comes back when the saved model is loaded (an earlier version trained three tables and lost the decoder's).
    d, _ = flan_like_dir
    texts = en[:50]
    model, tok, report = load_model_and_tokenizer(
        ModelSpec(name_or_path=str(d), init="pretrained", copy_head=True, extend_vocab=False), texts)
    assert model.encoder.embed_tokens is model.shared and model.decoder.embed_tokens is model.shared
    fresh, _, _ = load_model_and_tokenizer(ModelSpec(init="random", size="tiny", copy_head=True), texts)
    rows = model.shared.num_embeddings
    fresh_rows = fresh.shared.num_embeddings
    assert report["params"]["total"] - fresh.num_parameters() == 2 * (rows - fresh_rows) * model.config.d_model
    with torch.no_grad():  # a training step's worth of change to the table
        model.shared.weight.add_(torch.randn_like(model.shared.weight) * 0.1)
    save_model(model, tok, tmp_path / "ft")
    loaded, _ = load_trained(tmp_path / "ft", device="cpu")
    assert loaded.decoder.embed_tokens is loaded.shared and torch.equal(loaded.shared.weight, model.shared.weight)
    batch = _batch(tok, texts[:3], ["a", "b c", "d"])
    model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(**batch).logits, model(**batch).logits, atol=1e-5)
