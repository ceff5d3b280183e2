"""The Python API: ``Extractor.from_pretrained(dir).extract(texts)`` -> documents with
entities, relations and events, each with document character offsets and a confidence.

Pipeline per chunk of documents (streamed, so memory stays flat on huge inputs):
segment (sentences, windows that fit the model) -> one prompt per segment x task x
option chunk -> batched, length-sorted generation -> answer items parsed one by one
(each gets its own confidence: exp of the mean log-probability of its tokens) ->
grounded in the segment text -> shifted to document offsets -> merged across
overlapping windows.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from .instructions import build_source, option_chunks
from .io import ConfigError
from .offsets import ground
from .records import Entity, Record, detect_language, unique
from .targets import item_ranges, parse

EXTRACT_TASKS = ("NER", "RE", "EE")


@dataclass
class Span:
    text: str
    label: str
    start: int | None
    end: int | None
    score: float = 1.0


@dataclass
class RelationItem:
    head: Span
    label: str
    tail: Span
    score: float
    slots: list[Span] = field(default_factory=list)


@dataclass
class EventItem:
    type: str
    trigger: Span
    arguments: list[Span]
    score: float


@dataclass
class Document:
    id: str
    text: str
    language: str
    sentences: list[tuple[int, int]] = field(default_factory=list)
    entities: list[Span] = field(default_factory=list)
    relations: list[RelationItem] = field(default_factory=list)
    events: list[EventItem] = field(default_factory=list)
    unsupported: list[dict] = field(default_factory=list)  # items whose spans are not in the text
    stats: dict = field(default_factory=dict)

    def to_dict(self, with_text: bool = False) -> dict:
        d = asdict(self)
        if not with_text:
            d.pop("text")
        d["sentences"] = [{"start": s, "end": e} for s, e in self.sentences]
        return d


@dataclass
class Schema:
    """Labels to ask for per task; None -> the labels the model was trained with."""
    ner: list[str] | None = None
    re: list[str] | None = None
    ee: list[str] | None = None
    ee_roles: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: str | Path) -> "Schema":
        import yaml
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{p}: schema file not found") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML/JSON: {e}") from None
        if not isinstance(data, dict) or not set(data) <= {"ner", "re", "ee"}:
            raise ConfigError(f"{p}: expected a mapping with keys ner, re, ee")
        ee = data.get("ee")
        roles = {}
        if isinstance(ee, dict):  # {event type: [roles]}
            roles = {k: list(v or []) for k, v in ee.items()}
            ee = list(ee)
        for k, v in (("ner", data.get("ner")), ("re", data.get("re")), ("ee", ee)):
            if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
                raise ConfigError(f"{p}: {k} must be a list of labels")
        return cls(data.get("ner"), data.get("re"), ee, roles)


class Extractor:
    def __init__(self, model, tokenizer, card: dict, device: str):
        self.model, self.tokenizer, self.card, self.device = model, tokenizer, card, device
        self.templates = card.get("templates") or {}
        self.max_options = card.get("max_options") or 16
        self.max_source_length = int(card.get("max_source_length", 256))
        self.max_target_length = int(card.get("max_target_length", 128))

    # ------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None, dtype: str | None = None) -> "Extractor":
        import torch

        from .modeling import load_trained

        p = Path(path)
        card_path = p / "instructie.json"
        if not card_path.exists():
            raise ConfigError(f"{p}: not an instructie model directory (no instructie.json); "
                              "train one with `instructie train`")
        card = json.loads(card_path.read_text(encoding="utf-8"))
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype is None:
            dtype = "bfloat16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "float32"
        model, tok = load_trained(p, device=device, dtype=getattr(torch, dtype))
        model.eval()
        return cls(model, tok, card, device)

    # ------------------------------------------------------------ labels
    def trained_labels(self, task: str, language: str | None = None) -> list[str]:
        """Labels of ``task`` the model was trained with; datasets of the document's
        language first (a Chinese text is not asked for CoNLL's English types)."""
        per_ds = self.card.get("labels", {})
        langs = self.card.get("languages", {})
        same = [d for d in per_ds if language is None or langs.get(d) == language]
        pick = same if any(task in per_ds[d] for d in same) else list(per_ds)
        return unique(l for d in pick for l in per_ds[d].get(task, []))

    def trained_roles(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for roles in self.card.get("roles", {}).values():
            for k, v in roles.items():
                out.setdefault(k, [])
                out[k] = unique(out[k] + list(v))
        return out

    # ------------------------------------------------------------ extraction
    def extract(self, texts: Iterable[str] | str, tasks: Sequence[str] | None = None, *,
                labels: Sequence[str] | None = None, relations: Sequence[str] | None = None,
                schema: Schema | None = None, language: str | None = None, batch_size: int = 64,
                num_beams: int = 1, max_new_tokens: int | None = None, min_confidence: float = 0.0,
                keep_unsupported: bool = False, constrained: bool = False, ids: Iterable[str] | None = None,
                docs_per_chunk: int = 256, progress=None) -> Iterator[Document]:
        """Extract from each text; yields one ``Document`` per input text, in order."""
        if isinstance(texts, str):
            texts = [texts]
        tasks = [t.upper() for t in (tasks or self.default_tasks())]
        for t in tasks:
            if t not in EXTRACT_TASKS:
                raise ConfigError(f"task {t!r} cannot run on raw text (choose from {', '.join(EXTRACT_TASKS)})")
        schema = schema or Schema()
        if labels is not None:
            if "EE" in tasks and "NER" not in tasks:
                schema.ee = list(labels)
            else:
                schema.ner = list(labels)
        if relations is not None:
            schema.re = list(relations)
        id_iter = iter(ids) if ids is not None else None
        chunk: list[tuple[str, str]] = []
        n = 0
        for text in texts:
            doc_id = next(id_iter) if id_iter is not None else str(n)
            n += 1
            chunk.append((doc_id, text))
            if len(chunk) >= docs_per_chunk:
                yield from self._extract_chunk(chunk, tasks, schema, language, batch_size, num_beams,
                                               max_new_tokens, min_confidence, keep_unsupported, constrained,
                                               progress)
                chunk = []
        if chunk:
            yield from self._extract_chunk(chunk, tasks, schema, language, batch_size, num_beams,
                                           max_new_tokens, min_confidence, keep_unsupported, constrained, progress)

    def default_tasks(self) -> list[str]:
        return [t for t in self.card.get("tasks", []) if t in EXTRACT_TASKS] or ["NER"]

    def _labels_for(self, task: str, schema: Schema, language: str) -> list[str]:
        given = {"NER": schema.ner, "RE": schema.re, "EE": schema.ee}[task]
        return list(given) if given is not None else self.trained_labels(task, language)

    def _text_budget(self, task: str, options: list[str]) -> int:
        """Tokens left for the text once instruction and options are in the prompt."""
        probe = build_source(Record("", "", task, ""), self._template(task), options)
        used = len(self.tokenizer(probe)["input_ids"])
        return max(16, self.max_source_length - used)

    def _template(self, task: str) -> str:
        return (self.templates.get(task) or ["Extract."])[0]

    def _extract_chunk(self, chunk, tasks, schema, language, batch_size, num_beams, max_new_tokens,
                       min_confidence, keep_unsupported, constrained, progress) -> Iterator[Document]:
        from .generation import generate
        from .segment import segment_many

        docs = [Document(doc_id, text, language or detect_language(text[:2000])) for doc_id, text in chunk]
        tok = self.tokenizer

        def tok_len(s: str) -> int:
            return len(tok(s, add_special_tokens=False)["input_ids"])

        # Plan prompts: segments x tasks x option chunks.
        prompts: list[tuple[int, int, str, list[str], str]] = []  # doc, seg, task, options, source
        by_lang: dict[str, list[int]] = {}
        for i, d in enumerate(docs):
            by_lang.setdefault(d.language, []).append(i)
        seg_of: dict[int, list] = {}
        for lang, idxs in by_lang.items():
            plans = {t: [(o, self._text_budget(t, o)) for o in
                         option_chunks(self._labels_for(t, schema, lang), self.max_options)] for t in tasks}
            budget = min(b for v in plans.values() for _, b in v) if plans else self.max_source_length
            for i, segs in zip(idxs, segment_many((docs[i].text for i in idxs), language=lang,
                                                  max_len=budget, length_fn=tok_len, overlap=32)):
                seg_of[i] = segs
                docs[i].sentences = unique((s.start, s.end) for s in segs)
                for k, s in enumerate(segs):
                    for t in tasks:
                        for opts, _ in plans[t]:
                            if not opts:
                                continue
                            rec = Record("", "", t, s.text, options=opts)
                            prompts.append((i, k, t, opts, build_source(rec, self._template(t), opts)))
        factory = None
        if constrained:
            from .constrained import source_vocabulary_factory
            factory = source_vocabulary_factory(tok, self.model.config.vocab_size)
        outs = generate(self.model, tok, [p[4] for p in prompts], batch_size=batch_size,
                        max_source_length=self.max_source_length,
                        max_new_tokens=max_new_tokens or self.max_target_length, num_beams=num_beams,
                        logits_processor_factory=factory, progress=progress)
        roles = {**self.trained_roles(), **schema.ee_roles}
        found: dict[int, dict] = {i: {} for i in range(len(docs))}
        for (i, k, task, opts, _), g in zip(prompts, outs):
            seg = seg_of[i][k]
            ends = _token_char_ends(tok, g.token_ids, g.text)
            for s, e in item_ranges(g.text):
                lps = [lp for lp, end in zip(g.token_logprobs, ends) if end > s and end - 1 < e + 1]
                conf = math.exp(sum(lps) / len(lps)) if lps else 0.0
                if conf < min_confidence:
                    continue
                res = parse(g.text[s:e], task, options=opts, roles=roles if task == "EE" else None)
                gr = ground(res, seg.text, task)
                for ent in gr.entities:
                    _keep(found[i], ("E", ent.start + seg.start, ent.end + seg.start, ent.label),
                          Span(ent.text, ent.label, ent.start + seg.start, ent.end + seg.start, conf))
                for r in gr.relations:
                    h, t = _shift(r.head, seg.start, conf), _shift(r.tail, seg.start, conf)
                    _keep(found[i], ("R", h.start, h.end, r.label, t.start, t.end),
                          RelationItem(h, r.label, t, conf, [_shift(a, seg.start, conf, a.role) for a in r.slots]))
                for ev in gr.events:
                    trig = _shift(ev.trigger, seg.start, conf, ev.type)
                    args = [_shift(a, seg.start, conf, a.role) for a in ev.arguments]
                    _keep(found[i], ("V", trig.start, trig.end, ev.type),
                          EventItem(ev.type, trig, args, conf))
                for u in gr.unsupported:
                    docs[i].stats["unsupported"] = docs[i].stats.get("unsupported", 0) + 1
                    if keep_unsupported:
                        docs[i].unsupported.append({"task": task, "item": asdict(u.item), "missing": list(u.missing),
                                                    "sentence": [seg.start, seg.end], "score": conf})
                if res.dropped:
                    for reason, c in res.dropped.items():
                        docs[i].stats[f"dropped_{reason}"] = docs[i].stats.get(f"dropped_{reason}", 0) + c
        for i, d in enumerate(docs):
            items = sorted(found[i].values(), key=lambda x: _order(x))
            d.entities = [x for x in items if isinstance(x, Span)]
            d.relations = [x for x in items if isinstance(x, RelationItem)]
            d.events = [x for x in items if isinstance(x, EventItem)]
            d.stats["segments"] = len(seg_of.get(i, []))
            d.stats["windows"] = sum(1 for s in seg_of.get(i, []) if s.window_index > 0)
            yield d


def _shift(x, offset: int, score: float, label: str | None = None) -> Span:
    lab = label if label is not None else getattr(x, "label", getattr(x, "role", ""))
    if x.start is None:
        return Span(x.text, lab, None, None, score)
    return Span(x.text, lab, x.start + offset, x.end + offset, score)


def _keep(store: dict, key: tuple, item) -> None:
    """Overlapping windows may find an item twice: keep the more confident one."""
    old = store.get(key)
    if old is None or item.score > old.score:
        store[key] = item


def _order(x) -> tuple:
    s = x if isinstance(x, Span) else (x.head if isinstance(x, RelationItem) else x.trigger)
    return (s.start if s.start is not None else -1, s.end or 0)


def _token_char_ends(tokenizer, token_ids: list[int], text: str) -> list[int]:
    """For each generated token, where the decoded answer ends after it."""
    ends, prev = [], 0
    for k in range(1, len(token_ids) + 1):
        prefix = tokenizer.decode(token_ids[:k], skip_special_tokens=True)
        prev = max(prev, min(len(prefix), len(text)))
        ends.append(prev)
    return ends
