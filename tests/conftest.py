"""Shared fixtures. ``tiny_model_dir``: a random-init tiny T5 model directory (weights,
byte-level BPE tokenizer, instructie.json) built in about a second, for tests that need a
loadable model but not a trained one (its answers are garbage; tests that need known
answers script ``instructie.decoding.generation.generate``)."""
from __future__ import annotations

import json

import pytest

from helpers import TINY_TEXTS

TINY_CARD_LABELS = {
    "CoNLL2003": {"NER": ["person", "organization", "location", "miscellaneous"]},
    "duie": {"RE": ["作者", "毕业院校", "妻子", "丈夫"]},
    "DuEE": {"EE": ["竞赛行为-胜负", "人生-死亡"]},
}
TINY_CARD_ROLES = {"DuEE": {"竞赛行为-胜负": ["胜者", "败者", "时间"], "人生-死亡": ["死者", "时间", "死者年龄"]}}
TINY_CARD_LANGUAGES = {"CoNLL2003": "en", "duie": "zh", "DuEE": "zh"}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A loadable ``Extractor.from_pretrained`` directory: random tiny T5 + instructie.json."""
    import torch

    from instructie.prompts.instructions import load_templates
    from instructie.model.loading import VOCAB_MULTIPLE, _round_up, build_random_t5, save_model
    from instructie.model.tokenizer import train_tokenizer

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_model")
    templates = load_templates()
    texts = TINY_TEXTS * 3 + [t for v in templates.values() for t in v]
    tok = train_tokenizer(texts, vocab_size=600)
    model = build_random_t5("tiny", _round_up(len(tok), VOCAB_MULTIPLE), tok)
    model.eval()
    save_model(model, tok, out)
    card = {
        "instructie_version": "test",
        "tasks": ["EE", "NER", "RE"],
        "labels": TINY_CARD_LABELS,
        "roles": TINY_CARD_ROLES,
        "languages": TINY_CARD_LANGUAGES,
        "templates": templates,
        "max_options": 3,  # small, so label lists are asked in several option chunks
        "max_source_length": 192,
        "max_target_length": 12,  # a random model writes to the limit: keep generation short
    }
    (out / "instructie.json").write_text(json.dumps(card, ensure_ascii=False, indent=1), encoding="utf-8")
    return out
