"""tokenizer.py through the Flan-T5 stand-in (tests/flan_t5_standin.py): what a Flan-T5 tokenizer cannot write or
rewrites is counted, fixed by the extension, and never costs a span; new embedding rows start sensibly; the
characters a tokenizer cannot represent are counted per text. CPU only, no network."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from flan_t5_standin import EXCLUDED, EXTRA_IDS, SPARE_ROWS, flan_t5_standin  # noqa: F401 (a fixture)
from helpers import FIXTURES, ROOT, fixture_records
from instructie.core.records import Entity, Record
from instructie.data.sources import Source, training_texts
from instructie.model.loading import ModelSpec, load_model_and_tokenizer
from instructie.model.tokenizer import UnrepresentableChars, extend_tokenizer, load_tokenizer, unknown_rate
from instructie.prompts.instructions import load_templates
from instructie.prompts.offsets import ground
from instructie.prompts.targets import parse, render

ZH = ["王小明 | 人物; 腾讯（深圳）有限公司 | 企业", "李白，字太白：唐朝诗人！“诗仙”…第①名？",
      "国乒2大新星0-3遭日本横扫！一轮游出局 主力缺阵谁灭伊藤美诚？"]


def _decodes(tok, text: str) -> str:
    return tok.decode(tok(text)["input_ids"], skip_special_tokens=True)


def _replay(tok, answer: str) -> str:
    """What a model writing exactly ``answer``'s tokens gives back (as generation keeps and decodes them)."""
    sys.path.insert(0, str(ROOT / "eval"))
    from tokenizer_ceiling import kept_ids

    ids = kept_ids(tok(answer)["input_ids"], set(tok.all_special_ids), tok.eos_token_id, tok.pad_token_id)
    return tok.decode(ids, skip_special_tokens=True)


@pytest.fixture(scope="module")
def standin_tok(flan_t5_standin):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(flan_t5_standin), local_files_only=True)


# ------------------------------------------------------------------------------------ the stand-in
def test_the_standin_loses_characters_as_flan_t5_does(flan_t5_standin, standin_tok):
    tok = standin_tok
    assert type(tok).__name__ == "T5Tokenizer"  # what AutoTokenizer gives for the hub's Flan-T5
    assert tok.convert_ids_to_tokens([0, 1, 2]) == ["<pad>", "</s>", "<unk>"]
    n = len(tok)
    assert tok.convert_tokens_to_ids("<extra_id_0>") == n - 1 and tok.convert_tokens_to_ids("<extra_id_99>") == n - 100
    assert {f"<extra_id_{i}>" for i in range(EXTRA_IDS)} <= set(tok.all_special_tokens)
    ids = tok("Peter Blackburn")["input_ids"]
    assert ids[-1] == tok.eos_token_id and tok.unk_token_id not in ids
    for ch in sorted(EXCLUDED) + ["王", "腾"]:  # no CJK, none of { } < > ~ \
        assert tok.unk_token_id in tok(ch, add_special_tokens=False)["input_ids"], ch
    assert _decodes(tok, "a，b（c）d\ne") == "a,b(c)d e"  # nmt_nfkc: fullwidth -> ASCII, newline -> space
    assert _decodes(tok, "…²①") == "...21"
    assert json.loads(tok.backend_tokenizer.to_str())["normalizer"]["type"] == "Precompiled"

    cfg = json.loads((flan_t5_standin / "config.json").read_text())
    assert cfg["vocab_size"] == n + SPARE_ROWS and cfg["tie_word_embeddings"] is False
    assert (flan_t5_standin / "spiece.model").exists()


# ------------------------------------------------------------------------------------ extension
def test_extension_keeps_rewritten_characters_and_counts_both_kinds(flan_t5_standin):
    texts = ZH + ["Acme {Holdings} <b> ~x \\ y", "EU rejects German call ."]
    tok, report = load_tokenizer(ModelSpec(name_or_path=str(flan_t5_standin)), texts)
    before, after = report["unknown_rate_before"], report["unknown_rate_after"]
    assert before["chars_unknown"] > 0 and before["chars_lossy"] > 0
    assert {"，", "（", "）", "：", "！", "…", "①", "？"} <= set(before["lossy_chars"])
    assert "王" in before["missing_chars"] and "{" in before["missing_chars"] and "，" not in before["missing_chars"]
    assert before["chars_unknown"] == round(before["rate"] * before["chars_total"])
    assert before["chars_lossy"] == round(before["lossy_rate"] * before["chars_total"])
    assert (after["chars_unknown"], after["chars_lossy"], after["missing_chars"], after["lossy_chars"]) == (0, 0, [], [])
    assert set(report["kept_chars"]) == set(before["lossy_chars"])
    assert report["base_tokenizer_len"] == len(AutoTokenizer_of(flan_t5_standin))
    for text in texts:
        assert _decodes(tok, text) == " ".join(text.split())  # exact, but for T5's single spaces

    # the normaliser still does its work on everything else: ids of text without kept characters unchanged
    orig = AutoTokenizer_of(flan_t5_standin)
    for text in ["Peter Blackburn said .", "a，b", "ｆｕｌｌｗｉｄｔｈ １２３", "Ⅻ ﬁ"]:
        if not any(c in report["kept_chars"] for c in text):
            assert tok(text)["input_ids"] == orig(text)["input_ids"], text
    assert tok.convert_tokens_to_ids("<extra_id_0>") == orig.convert_tokens_to_ids("<extra_id_0>")

    # saved and loaded as a run's tokenizer: the same ids, the same exact decoding
    from transformers import AutoTokenizer
    d = flan_t5_standin.parent / "extended_tok"
    tok.save_pretrained(d)
    back = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    for text in texts:
        assert back(text)["input_ids"] == tok(text)["input_ids"]


def AutoTokenizer_of(path):  # noqa: N802
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def test_extending_twice_keeps_what_the_first_extension_kept(flan_t5_standin):
    tok, _ = load_tokenizer(ModelSpec(name_or_path=str(flan_t5_standin)), ["甲，乙"])
    assert _decodes(tok, "甲，乙") == "甲，乙"
    tok2, method = extend_tokenizer(tok, ["丙", "：", "（"])
    assert method == "unigram_pieces"
    assert _decodes(tok2, "甲，乙：丙（") == "甲，乙：丙（"
    assert tok2("甲，乙")["input_ids"] == tok("甲，乙")["input_ids"]  # old ids kept


def test_answers_are_covered_even_when_texts_hold_none_of_their_characters(flan_t5_standin):
    # An escaped answer: the text has no backslash, but the answer grammar writes one. Before answers were part of
    # the training texts, "\" stayed <unk>: "AT&T\; Inc | organization" decoded as "AT&T; Inc | organization",
    # which reads as the entity "Inc".
    text = "Shares of AT&T; Inc rose while Acme {Holdings} fell ."
    rec = Record("r1", "toy", "NER", text, options=["organization"],
                 entities=[Entity("organization", "AT&T; Inc", 10, 19), Entity("organization", "Acme {Holdings}", 31, 46)])
    answer = render(rec)
    assert "\\;" in answer
    tok, report = load_tokenizer(ModelSpec(name_or_path=str(flan_t5_standin)),
                                 training_texts([Source(None, [rec])], load_templates()))
    assert "\\" in report["added_chars"] and "{" in report["added_chars"]
    back = _replay(tok, answer)
    assert back == answer
    g = ground(parse(back, "NER", options=["organization"]), text, "NER")
    assert [(e.text, e.start, e.end) for e in g.entities] == [("AT&T; Inc", 10, 19), ("Acme {Holdings}", 31, 46)]


def test_memory_hints_need_no_character_beyond_the_training_texts(flan_t5_standin):
    from instructie.hints.memory import Memory

    recs = fixture_records()
    tok, _ = load_tokenizer(ModelSpec(name_or_path=str(flan_t5_standin)),
                            training_texts([Source(None, recs)], load_templates()))
    mem = Memory.from_records(recs)
    hints = [h for r in recs if (h := mem.hint(r, r.options))]
    assert any(len(h) > 20 for h in hints)
    rate = unknown_rate(tok, hints)
    assert rate["chars_unknown"] == 0 and rate["chars_lossy"] == 0


# ------------------------------------------------------------------------------------ new embedding rows
def test_new_rows_start_from_the_normalised_form_or_the_rows_spread(flan_t5_standin):
    from safetensors.torch import load_file

    ckpt = load_file(str(flan_t5_standin / "model.safetensors"))
    base = AutoTokenizer_of(flan_t5_standin)
    n = len(base)
    model, tok, report = load_model_and_tokenizer(ModelSpec(name_or_path=str(flan_t5_standin)), ZH * 3)
    emb, head = model.get_input_embeddings().weight.detach(), model.get_output_embeddings().weight.detach()
    assert torch.equal(emb[:n], ckpt["shared.weight"][:n]) and torch.equal(head[:n], ckpt["lm_head.weight"][:n])
    assert report["new_rows"]["from_normalised_form"] >= 6 and report["new_rows"]["drawn"] > SPARE_ROWS

    # a kept fullwidth comma starts as the model's comma, in both tables
    comma = base.convert_tokens_to_ids(",")
    if comma == base.unk_token_id:
        comma = base(",", add_special_tokens=False)["input_ids"][-1]
    wide = tok.convert_tokens_to_ids("，")
    assert wide >= n and torch.equal(emb[wide], emb[comma]) and torch.equal(head[wide], head[comma])

    # Chinese characters (no normalised form) start apart, spread like the existing rows -- not the checkpoint's
    # never-trained spare rows, not near-copies of the mean
    han = [tok.convert_tokens_to_ids(c) for c in "王小明腾讯深圳有限公司人物企业"]
    assert all(i >= n for i in han)
    assert any(i < ckpt["shared.weight"].shape[0] for i in han)  # some landed on the spare rows...
    for i in han:
        if i < ckpt["shared.weight"].shape[0]:
            assert not torch.equal(emb[i], ckpt["shared.weight"][i])  # ...and were given a start
    old = torch.cdist(emb[3:200], emb[3:200]).mean()
    new = torch.cdist(emb[han], emb[han]).mean()
    assert 0.7 * old < new < 1.3 * old, (float(old), float(new))
    old_h = torch.cdist(head[3:200], head[3:200]).mean()
    assert 0.7 * old_h < torch.cdist(head[han], head[han]).mean() < 1.3 * old_h


# ------------------------------------------------------------------------------------ representable characters
def test_unrepresentable_characters_are_counted_per_text(flan_t5_standin, standin_tok):
    cov = UnrepresentableChars(standin_tok)
    assert cov.counts("EU rejects German call .") == (0, 20)
    assert cov.count("王小明 works at Acme") == 3
    assert cov.count("a，b { c") == 2  # one rewritten, one <unk>
    assert cov.mostly_unrepresentable("国乒2大新星0-3遭日本横扫！") and not cov.mostly_unrepresentable("Peter 王")
    assert not cov.mostly_unrepresentable("") and cov.counts("\n\t ") == (0, 0)

    tok, _ = load_tokenizer(ModelSpec(name_or_path=str(flan_t5_standin)), ["王小明，李华"])
    cov = UnrepresentableChars(tok)
    assert cov.count("王小明，李华") == 0 and cov.count("王小明，张三") == 2  # 张三 never seen


# ------------------------------------------------------------------------------------ the perfect-model ceiling
def test_gold_answers_replayed_through_the_standin_score_exactly_one(flan_t5_standin, tmp_path):
    """tokenize -> generation's id filtering -> decode -> parse -> ground -> score, for every fixture dataset and
    task, through the stand-in extended for the texts of the configured sets: exactly 1.0."""
    sys.path.insert(0, str(ROOT / "eval"))
    import tokenizer_ceiling

    f = lambda *p: str(FIXTURES.joinpath(*p))  # noqa: E731
    cfg = {"model": {"name_or_path": str(flan_t5_standin), "init": "pretrained"},
           "data": {"tasks": ["NER", "RE", "EE", "RC", "NEG", "ES", "ET", "EP", "EPR", "EET", "EEA"],
                    "max_options": 16, "max_target_length": 128,
                    "train": [{"adapter": "ie_instructions", "path": f("ie_instructions"), "split": "train"},
                              {"adapter": "duie", "path": f("duie", "duie_train_excerpt.json"),
                               "options": {"schema": f("duie", "duie_schema.json")}},
                              {"adapter": "fin_negative", "path": f("fin_negative", "Train_Data.csv")},
                              {"adapter": "fewrel", "path": f("fewrel", "val_wiki_excerpt.json"),
                               "options": {"pid2name": f("fewrel", "pid2name_excerpt.json")}}],
                    "eval": [{"adapter": "ie_instructions", "path": f("ie_instructions"), "split": "dev"}],
                    "test": [{"adapter": "ie_instructions", "path": f("ie_instructions"), "split": "test"}]}}
    path = tmp_path / "fixtures.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    out = tmp_path / "ceiling.json"
    assert tokenizer_ceiling.main(["--config", str(path), "--tokenizer", str(flan_t5_standin),
                                   "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    got = {(r["dataset"], r["task"]): r["score"] for r in rep["rows"]}
    assert {d for d, _ in got} == {"CoNLL2003", "DuEE", "duie", "fewrel", "fin_negative"}
    assert {t for _, t in got} == {"NER", "ES", "ET", "RE", "EP", "EPR", "EE", "EET", "EEA", "RC", "NEG"}
    assert all(v == 1.0 for v in got.values()), got
    assert all(r["unsupported"] == 0 and not r["dropped"] for r in rep["rows"])
    assert rep["unknown_rate_before"]["chars_unknown"] > 0 and rep["unknown_rate_before"]["chars_lossy"] > 0

    # the tokenizer as Flan-T5 has it loses answers: the same replay without the extension scores below 1.0
    assert tokenizer_ceiling.main(["--config", str(path), "--tokenizer", str(flan_t5_standin), "--no-extend",
                                   "--json", str(out)]) == 1
    low = {(r["dataset"], r["task"]): r["score"] for r in json.loads(out.read_text())["rows"]}
    assert low[("duie", "RE")] < 0.5 and low[("DuEE", "EE")] < 0.5 and low[("CoNLL2003", "NER")] == 1.0
