"""spaCy pipeline component: ``nlp.add_pipe("instructie", config={"model": DIR})``.

Sets ``doc.ents`` (with ``span._.score``), and ``doc._.relations`` / ``doc._.events``
(dicts with char offsets and scores). spaCy imports this module whenever it builds
a pipeline, so torch and transformers are imported only when a component is made.
"""
from __future__ import annotations

from dataclasses import asdict

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.util import filter_spans

for _cls, _name in ((Doc, "relations"), (Doc, "events"), (Span, "score")):
    if not _cls.has_extension(_name):
        _cls.set_extension(_name, default=None)


class InstructieComponent:
    def __init__(self, nlp: Language, name: str, model: str, tasks: list[str] | None, labels: list[str] | None,
                 relations: list[str] | None, device: str | None, batch_size: int, min_confidence: float,
                 option_order: str | None = None):
        from .extractor import Extractor

        self.name = name
        self.extractor = Extractor.from_pretrained(model, device=device, option_order=option_order)
        self.tasks, self.labels, self.relations = tasks, labels, relations
        self.batch_size, self.min_confidence = batch_size, min_confidence

    def __call__(self, doc: Doc) -> Doc:
        return next(iter(self.pipe([doc])))

    def pipe(self, docs, batch_size: int = 128):
        from itertools import islice

        docs = iter(docs)
        while True:
            chunk = list(islice(docs, batch_size))
            if not chunk:
                return
            results = self.extractor.extract([d.text for d in chunk], self.tasks, labels=self.labels,
                                             relations=self.relations, batch_size=self.batch_size,
                                             min_confidence=self.min_confidence)
            for doc, res in zip(chunk, results):
                yield self._annotate(doc, res)

    def _annotate(self, doc: Doc, res) -> Doc:
        spans = []
        for e in res.entities:
            span = doc.char_span(e.start, e.end, label=e.label, alignment_mode="expand")
            if span is not None:
                span._.score = e.score
                spans.append(span)
        # generative NER may return overlapping spans; doc.ents must not overlap
        doc.ents = filter_spans(spans)
        doc._.relations = [{"head": asdict(r.head), "label": r.label, "tail": asdict(r.tail), "score": r.score,
                            "slots": [asdict(x) for x in r.slots]} for r in res.relations]
        doc._.events = [{"type": v.type, "trigger": asdict(v.trigger), "arguments": [asdict(x) for x in v.arguments],
                         "score": v.score} for v in res.events]
        return doc


@Language.factory("instructie", default_config={"model": None, "tasks": None, "labels": None, "relations": None,
                                                "device": None, "batch_size": 64, "min_confidence": 0.0,
                                                "option_order": None})
def make_instructie_component(nlp: Language, name: str, model: str | None, tasks: list[str] | None,
                              labels: list[str] | None, relations: list[str] | None, device: str | None,
                              batch_size: int, min_confidence: float,
                              option_order: str | None = None) -> InstructieComponent:
    if not model:
        from ..core.io import ConfigError
        raise ConfigError('the instructie component needs config={"model": "path/to/model"}')
    return InstructieComponent(nlp, name, model, tasks, labels, relations, device, batch_size, min_confidence,
                               option_order)
