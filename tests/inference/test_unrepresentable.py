"""Characters the model's tokenizer cannot represent are counted per document, and a document that is mostly
such characters (a language the model was not built for) gets one warning, not a silent empty result."""
import logging

from flan_t5_standin import flan_t5_standin  # noqa: F401 (a fixture)
from instructie.decoding import generation
from instructie.inference.extractor import Extractor


def test_extraction_counts_what_the_tokenizer_cannot_represent(tiny_model_dir, flan_t5_standin, monkeypatch,
                                                               caplog):
    from transformers import AutoTokenizer

    base = Extractor.from_pretrained(tiny_model_dir, device="cpu")
    tok = AutoTokenizer.from_pretrained(str(flan_t5_standin), local_files_only=True)  # no CJK, no { } ~
    ex = Extractor(base.model, tok, base.card, "cpu")
    monkeypatch.setattr(generation, "generate", lambda m, t, sources, **kw:
                        [generation.Generated("None", [], []) for _ in sources])
    texts = ["Barack Obama visited Paris .", "王小明毕业于北京大学。", "The {Acme} index ~ rose ."]
    with caplog.at_level(logging.WARNING, logger="instructie"):
        docs = list(ex.extract(texts, ["NER"], labels=["person"]))
        list(ex.extract(texts[1:2], ["NER"], labels=["person"]))  # warned once per extractor
    assert "unrepresentable_chars" not in docs[0].stats
    assert docs[1].stats["unrepresentable_chars"] >= 8  # every Chinese character but none the stand-in knows
    assert docs[2].stats["unrepresentable_chars"] == 3  # { } ~
    warned = [r.getMessage() for r in caplog.records if "cannot represent" in r.getMessage()]
    assert len(warned) == 1 and "document '1'" in warned[0]
