"""The spaCy component: ``nlp.add_pipe("instructie", config={"model": DIR})``.

The factory is found through the ``spacy_factories`` entry point that pyproject declares
(registered by ``pip install -e .``); answers are scripted as in test_extract.py, plus one
run of the real random-init model."""
from __future__ import annotations

import math
from importlib.metadata import entry_points

import pytest

spacy = pytest.importorskip("spacy")

from instructie.decoding import generation  # noqa: E402
from instructie.decoding.generation import Generated  # noqa: E402


def test_entry_point_is_registered():
    eps = [ep for ep in entry_points(group="spacy_factories") if ep.name == "instructie"]
    assert [ep.value for ep in eps] == ["instructie.inference.spacy_component:make_instructie_component"], \
        "run `pip install -e .` so the spaCy entry point is registered"
    from spacy.util import registry

    from instructie.inference.spacy_component import make_instructie_component
    assert registry._entry_point_factories.get_entry_point("instructie") is make_instructie_component


def _scripted(monkeypatch, answers: dict[str, list[tuple[str, float]]]):
    """Answer by the first key found in the prompt's text line; each piece with its probability."""
    def fake(model, tokenizer, sources, **kw):
        out = []
        for src in sources:
            text = src[src.index("\nText: ") + 7: src.rindex("\nAnswer:")]
            pieces = next((v for k, v in answers.items() if k in text), [("None", 0.9)])
            ids, lps = [], []
            for piece, prob in pieces:
                pid = tokenizer(piece, add_special_tokens=False)["input_ids"]
                ids += pid
                lps += [math.log(prob)] * len(pid)
            out.append(Generated(tokenizer.decode(ids, skip_special_tokens=True), ids, lps))
        return out
    monkeypatch.setattr(generation, "generate", fake)


def test_component_sets_ents_scores_relations(monkeypatch, tiny_model_dir):
    _scripted(monkeypatch, {
        "王小明的妻子": [("王小明 | person;", 0.8), (" 李华 | person", 0.4)],
        "Obama": [("Barack Obama | person;", 0.9), (" Paris | location;", 0.6), (" Berlin | location", 0.9)],
    })
    nlp = spacy.blank("zh")
    nlp.add_pipe("instructie", config={"model": str(tiny_model_dir), "tasks": ["NER"], "device": "cpu"})
    assert nlp.pipe_names == ["instructie"]
    doc = nlp("今天下雨。王小明的妻子是李华。")
    assert [(e.text, e.label_, e.start_char) for e in doc.ents] == [("王小明", "person", 5), ("李华", "person", 12)]
    assert [round(e._.score, 6) for e in doc.ents] == [0.8, 0.4]
    assert doc._.relations == [] and doc._.events == []

    en = spacy.blank("en")
    en.add_pipe("instructie", config={"model": str(tiny_model_dir), "tasks": ["NER"], "min_confidence": 0.5,
                                      "option_order": "sorted"})
    assert en.get_pipe("instructie").extractor.option_order == "sorted"  # the card's (schema) unless told
    assert nlp.get_pipe("instructie").extractor.option_order == "schema"
    docs = list(en.pipe(["Barack Obama visited Paris.", "Nothing to see."]))
    assert [(e.text, e.label_) for e in docs[0].ents] == [("Barack Obama", "person"), ("Paris", "location")]
    assert docs[1].ents == ()  # Berlin (not in the text) is dropped, never a made-up span


def test_component_relations_and_events(monkeypatch, tiny_model_dir):
    text = "王小明的妻子是李华。国乒2大新星0-3遭日本横扫！"

    def fake(model, tokenizer, sources, **kw):
        out = []
        for src in sources:
            seg = src[src.index("\nText: ") + 7: src.rindex("\nAnswer:")]
            opts = src[src.index("Option: ") + 8: src.index("\n", src.index("Option: "))].split(", ")
            if src.startswith("Please find all relation") and "妻子" in seg and "妻子" in opts:
                ans = "王小明 | 妻子 | 李华"
            elif src.startswith("Please extract the events") and "横扫" in seg and "竞赛行为-胜负" in opts:
                ans = "横扫 | 竞赛行为-胜负 | 胜者=日本 | 败者=国乒2大新星"
            elif src.startswith("Please list all named entities") and "王小明" in seg:
                ans = "王小明 | person; 李华 | person"
            else:
                ans = "None"
            ids = tokenizer(ans, add_special_tokens=False)["input_ids"]
            out.append(Generated(ans, ids, [math.log(0.7)] * len(ids)))
        return out
    monkeypatch.setattr(generation, "generate", fake)
    nlp = spacy.blank("zh")
    nlp.add_pipe("instructie", config={"model": str(tiny_model_dir), "tasks": ["NER", "RE", "EE"]})
    doc = nlp(text)
    assert [e.text for e in doc.ents] == ["王小明", "李华"]
    (rel,) = doc._.relations
    assert rel["label"] == "妻子" and rel["score"] == pytest.approx(0.7)
    for part in (rel["head"], rel["tail"]):
        assert text[part["start"]:part["end"]] == part["text"]
    (ev,) = doc._.events
    assert ev["type"] == "竞赛行为-胜负" and ev["trigger"]["start"] == text.index("横扫")
    assert {(a["label"], a["text"]) for a in ev["arguments"]} == {("胜者", "日本"), ("败者", "国乒2大新星")}
    for a in ev["arguments"]:
        assert text[a["start"]:a["end"]] == a["text"]


def test_component_real_model_and_missing_model(tiny_model_dir):
    nlp = spacy.blank("zh")
    nlp.add_pipe("instructie", config={"model": str(tiny_model_dir)})
    doc = nlp("王小明毕业于北京大学。王小明的妻子是李华。")
    for e in doc.ents:  # whatever a random model writes: spans are the document's own tokens
        assert doc.text[e.start_char:e.end_char] == e.text and 0.0 <= e._.score <= 1.0
    assert isinstance(doc._.relations, list) and isinstance(doc._.events, list)
    from instructie.core.io import ConfigError
    with pytest.raises(ConfigError, match="needs config"):
        spacy.blank("en").add_pipe("instructie")
