"""The Python API: ``Extractor.from_pretrained(dir).extract(texts)`` -> documents with
entities, relations and events, each with document character offsets and a confidence.

Pipeline per chunk of documents (streamed, so memory stays flat on huge inputs):
segment (sentences, windows that fit the model) -> one prompt per segment x task x
option chunk -> the prediction path every command shares (``predict.answer_prompts``:
generation, items parsed one by one with a confidence each, filtered, grounded in the
segment) -> shifted to document offsets -> merged across overlapping windows (the same item
at the same document offsets is kept once, with its highest confidence).

``Document.sentences`` are the document's sentences (a sentence longer than the prompt
budget is asked in overlapping windows, counted in ``stats["windows"]``, but listed once).
Items whose spans are not in the text are counted in ``stats["unsupported"]`` and, with
``keep_unsupported``, listed in ``Document.unsupported`` (found parts with document offsets,
the rest ``None``).
"""
from __future__ import annotations

import logging

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ..core.io import ConfigError, InputError, read_yaml
from ..core.records import Entity, Event, Record, Relation, detect_language, unique
from ..hints.memory import HINT_TASKS
from ..hints.plugin import Hints, HintSettings, hint_budget
from ..model.card import ModelCard
from ..model.tokenizer import MOSTLY_UNREPRESENTABLE, UnrepresentableChars
from ..prompts.instructions import asked_order, build_source, option_chunks
from .predict import Decoding, Prompt, TokenCounts, answer_prompts, make_prompt

log = logging.getLogger("instructie")

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
        p = Path(path)
        data = read_yaml(p, "schema file")
        if not isinstance(data, dict) or not set(data) <= {"ner", "re", "ee"}:
            raise ConfigError(f"{p}: expected a mapping with keys ner, re, ee")
        ee = data.get("ee")
        roles = {}
        if isinstance(ee, dict):  # {event type: [roles]}
            for k, v in ee.items():
                if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
                    raise ConfigError(f"{p}: ee.{k}: the roles of an event type are a list of role names, "
                                      f"got {v!r}")
            roles = {k: list(v or []) for k, v in ee.items()}
            ee = list(ee)
        for k, v in (("ner", data.get("ner")), ("re", data.get("re")), ("ee", ee)):
            if v is not None and not (isinstance(v, list) and v and all(isinstance(x, str) for x in v)):
                raise ConfigError(f"{p}: {k} must be a non-empty list of labels (leave it out for the model's own)")
        return cls(data.get("ner"), data.get("re"), ee, roles)


class Extractor:
    def __init__(self, model, tokenizer, card: ModelCard | dict, device: str, hints=None):
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.card = card if isinstance(card, ModelCard) else ModelCard.from_dict(card)
        self.templates = self.card.templates
        self.max_options = self.card.max_options
        # labels asked sorted (instructions.asked_order), so the answer cannot depend on the schema's order
        self.option_order = self.card.option_order
        self.max_source_length = int(self.card.max_source_length)
        self.max_target_length = int(self.card.max_target_length)
        # A model trained with memory hints is always asked with one (hints.Hints); the hint line gets at most
        # this many tokens of the prompt.
        self.hints = hints
        self._chars, self._warned = None, False  # characters the tokenizer cannot represent, counted lazily
        if hints is not None and hints.budget is None:
            hints.budget = hint_budget(self.max_source_length)

    @property
    def memory(self):
        return self.hints.memory if self.hints is not None else None

    def remember(self, records: Iterable[Record]) -> int:
        """Add labeled records (a user's gazetteer or annotations) to the memory the hints
        come from; returns how many NER/RE/EE/RC records were added (others have nothing to
        remember). Only for models trained with hints."""
        if self.hints is None:
            raise ConfigError("this model was trained without memory hints (hints.memory); "
                              "it cannot use added records")
        n = 0
        for r in records:
            if r.task in HINT_TASKS:
                self.hints.memory.add(r)
                n += 1
        return n

    # ------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None, dtype: str | None = None,
                        option_order: str | None = None) -> "Extractor":
        """The model ``instructie train`` saved: its directory, or a Hugging Face hub id ('org/name') of one.
        ``option_order``: "sorted" or "schema" (``instructions.asked_order``); default: the model's."""
        import torch

        if option_order is not None:
            try:
                asked_order([], option_order)
            except ValueError as e:
                raise ConfigError(str(e)) from None

        from ..model.loading import load_trained, resolve_model_dir

        p = resolve_model_dir(path)  # a local directory, or a hub id fetched (or taken from the cache)
        card = ModelCard.load(p)
        if card.kind == "pretrained":
            raise ConfigError(f"{p}: a span-corruption pretrained base, not an extraction model; fine-tune it "
                              f"with `instructie train` (model: {{name_or_path: {p}, init: pretrained}})")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            kind = torch.device(device).type
        except (RuntimeError, TypeError):
            raise ConfigError(f"device {device!r}: not a device torch knows (cpu, cuda, cuda:0, mps)") from None
        if kind == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {device!r}: this machine has no CUDA GPU (or torch was built without CUDA); "
                              f"use cpu")
        if dtype is None:
            dtype = "bfloat16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "float32"
        from transformers.utils import logging as hf_logging

        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # "Loading weights" bars would clutter every extract run
        try:
            model, tok = load_trained(p, device=device, dtype=getattr(torch, dtype))
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        model.eval()
        hints = Hints.load(p, card, HintSettings.resolve(card=card.tuned(), has_memory=card.memory_hints))
        ex = cls(model, tok, card, device, hints)
        if option_order is not None:
            ex.option_order = option_order
        return ex

    # ------------------------------------------------------------ labels
    def trained_labels(self, task: str, language: str | None = None) -> list[str]:
        """Labels of ``task`` the model was trained with; datasets of the document's
        language first (a Chinese text is not asked for CoNLL's English types)."""
        per_ds = self.card.labels
        langs = self.card.languages
        same = [d for d in per_ds if language is None or langs.get(d) == language]
        pick = same if any(task in per_ds[d] for d in same) else list(per_ds)
        return unique(l for d in pick for l in per_ds[d].get(task, []))

    def trained_roles(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for roles in self.card.roles.values():
            for k, v in roles.items():
                out.setdefault(k, [])
                out[k] = unique(out[k] + list(v))
        return out

    # ------------------------------------------------------------ extraction
    def extract(self, texts: Iterable[str] | str, tasks: Sequence[str] | None = None, *,
                labels: Sequence[str] | None = None, relations: Sequence[str] | None = None,
                schema: Schema | None = None, language: str | None = None, batch_size: int = 64,
                num_beams: int = 1, max_new_tokens: int | None = None, min_confidence: float = 0.0,
                keep_unsupported: bool = False, constrained: bool | str = False, ids: Iterable[str] | None = None,
                docs_per_chunk: int = 256, progress=None, hint_bias: float | dict | None = None,
                unhinted_floor: float | dict | None = None) -> Iterator[Document]:
        """Extract from each text; yields one ``Document`` per input text, in order.

        ``tasks``: NER, RE, EE (default: the model's). ``labels``: entity types to ask for
        (event types when EE is asked without NER), ``relations``: relation types -- both
        zero-shot, they override ``schema``; unset labels are the model's trained ones (those
        of datasets in the document's language first). Long label lists are asked in chunks
        of the model's ``max_options``. ``min_confidence``: items below it are dropped before
        grounding. ``constrained``: True or "vocab": decode only tokens of the prompt (text and labels);
        "copy": every field a contiguous copy of the text or a whole label (decoding.constraints).
        ``hint_bias``: lean decoding toward the memory hint's items (a number or ``{task: number}``; models
        trained with hints only); default: the model's tuned value (``eval/tune_hint_bias.py --write-card``),
        else 0. ``unhinted_floor``: an item the memory hint did not propose is kept only with at least this
        confidence (0 to 1, or ``{task: value}``); default: the model's tuned value, else 0.
        ``ids``: document ids (default "0", "1", ...). ``docs_per_chunk`` documents are planned
        and generated together (length-sorted batches of ``batch_size`` prompts); the input is
        consumed lazily, chunk by chunk.
        """
        if isinstance(texts, str):
            texts = [texts]
        for name, value in (("batch_size", batch_size), ("num_beams", num_beams), ("max_new_tokens", max_new_tokens)):
            if not (value is None and name == "max_new_tokens") and (
                    isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
        if not isinstance(min_confidence, (int, float)) or not 0.0 <= min_confidence <= 1.0:
            raise ConfigError(f"min_confidence must be between 0 and 1, got {min_confidence!r}")
        if isinstance(tasks, str):
            tasks = [tasks]  # one task by name
        for name, value in (("tasks", tasks), ("labels", labels), ("relations", relations)):
            if value is None:
                continue
            if isinstance(value, str):
                raise ConfigError(f"{name}: expected a list, got the string {value!r} (a list: [{value!r}])")
            if not value or not all(isinstance(x, str) and x.strip() for x in value):
                raise ConfigError(f"{name}: expected a non-empty list of names (None: the model's own), got "
                                  f"{list(value)!r}")
        hints = self._hints_for(hint_bias, unhinted_floor)
        tasks = [t.upper() for t in (self.default_tasks() if tasks is None else tasks)]
        for t in tasks:
            if t not in EXTRACT_TASKS:
                raise ConfigError(f"task {t!r} cannot run on raw text (choose from {', '.join(EXTRACT_TASKS)})")
        if labels is not None and not {"NER", "EE"} & set(tasks):
            raise ConfigError(f"labels are entity types (NER), or event types when EE runs without NER; the tasks "
                              f"{', '.join(tasks)} do not ask for them (relation types: relations)")
        if relations is not None and "RE" not in tasks:
            raise ConfigError(f"relations are asked by the RE task, which is not among {', '.join(tasks)}")
        if schema is not None:
            for name in ("ner", "re", "ee"):
                value = getattr(schema, name)
                if value is not None and (isinstance(value, str) or not value):
                    raise ConfigError(f"schema.{name}: expected a non-empty list of labels (None: the model's own), "
                                      f"got {value!r}")
        # A copy: the caller's Schema is not changed by ``labels``/``relations``.
        schema = replace(schema, ee_roles=dict(schema.ee_roles)) if schema is not None else Schema()
        if labels is not None:
            if "EE" in tasks and "NER" not in tasks:
                schema.ee = list(labels)
            else:
                schema.ner = list(labels)
        if relations is not None:
            schema.re = list(relations)
        decoding = Decoding(batch_size=batch_size, num_beams=num_beams, max_source_length=self.max_source_length,
                            max_new_tokens=max_new_tokens or self.max_target_length, constrained=constrained,
                            min_confidence=min_confidence, roles={**self.trained_roles(), **schema.ee_roles},
                            templates=self.templates)
        id_iter = iter(ids) if ids is not None else None
        chunk: list[tuple[str, str]] = []
        n = 0
        for text in texts:
            if not isinstance(text, str):
                raise InputError(None, f"text {n}", f"expected a string, got {type(text).__name__}")
            doc_id = next(id_iter) if id_iter is not None else str(n)
            n += 1
            chunk.append((doc_id, text))
            if len(chunk) >= docs_per_chunk:
                yield from self._extract_chunk(chunk, tasks, schema, language, decoding, hints, keep_unsupported,
                                               progress)
                chunk = []
        if chunk:
            yield from self._extract_chunk(chunk, tasks, schema, language, decoding, hints, keep_unsupported, progress)

    def _hints_for(self, hint_bias, unhinted_floor):
        """The hints plug-in with this call's settings (given values over the model's tuned ones)."""
        settings = HintSettings.resolve(given_bias=hint_bias, given_floor=unhinted_floor, card=self.card.tuned(),
                                        has_memory=self.hints is not None)
        if self.hints is None:
            return None
        return Hints(self.hints.memory, settings, self.hints.budget)

    def _count_unrepresentable(self, docs: list[Document]) -> None:
        """Each document's characters the tokenizer cannot represent (``stats["unrepresentable_chars"]``); a
        warning, once per extractor, for a document that is mostly such characters."""
        if self._chars is None:
            self._chars = UnrepresentableChars(self.tokenizer)
        for d in docs:
            n, total = self._chars.counts(d.text)
            if n:
                d.stats["unrepresentable_chars"] = n
            if not self._warned and total and n > MOSTLY_UNREPRESENTABLE * total:
                self._warned = True
                log.warning(f"document {d.id!r}: {n} of its {total} characters are ones this model's tokenizer "
                            f"cannot represent (a language or script it was not trained on?); its items will be few "
                            f"or wrong. Each document's count is in its stats (unrepresentable_chars).")

    def default_tasks(self) -> list[str]:
        return [t for t in self.card.tasks if t in EXTRACT_TASKS] or ["NER"]

    def _labels_for(self, task: str, schema: Schema, language: str) -> list[str]:
        given = {"NER": schema.ner, "RE": schema.re, "EE": schema.ee}[task]
        return list(given) if given is not None else self.trained_labels(task, language)

    def _text_budget(self, task: str, options: list[str]) -> int:
        """Tokens left for the text once instruction and options are in the prompt."""
        probe = build_source(Record("", "", task, ""), self._template(task), options)
        used = len(self.tokenizer(probe)["input_ids"]) + (self.hints.budget if self.hints is not None else 0)
        return max(16, self.max_source_length - used)

    def _option_plan(self, task: str, labels: list[str]) -> list[tuple[list[str], int]]:
        """(option chunk, text budget) pairs: chunks of the model's ``max_options``, and any chunk whose
        labels would leave the text under a quarter of the prompt halved until they do not (a long
        label list, or a model trained with every label in one prompt, must not push the text out)."""
        plan, todo = [], option_chunks(asked_order(labels, self.option_order), self.max_options)
        while todo:
            opts = todo.pop(0)
            room = self._text_budget(task, opts)
            if room < self.max_source_length // 4 and len(opts) > 1:
                half = (len(opts) + 1) // 2
                todo[:0] = [opts[:half], opts[half:]]
            else:
                plan.append((opts, room))
        return plan

    def _template(self, task: str) -> str:
        return (self.templates.get(task) or ["Extract."])[0]

    def _plan(self, chunk: list[tuple[str, str]], tasks: Sequence[str], schema: Schema, language: str | None,
              hints=None) -> tuple[list[Document], dict[int, list], list[tuple[int, Any, Prompt]]]:
        """Documents, their segments, and one prompt (doc, segment, ``predict.Prompt``) per
        segment x task x option chunk -- exactly what ``extract`` sends to the model."""
        from .segment import segment_many

        hints = self.hints if hints is None else hints
        docs = [Document(doc_id, text, language or detect_language(text[:2000])) for doc_id, text in chunk]
        tok_len = TokenCounts(self.tokenizer)

        prompts: list[tuple[int, Any, Prompt]] = []
        by_lang: dict[str, list[int]] = {}
        for i, d in enumerate(docs):
            by_lang.setdefault(d.language, []).append(i)
        seg_of: dict[int, list] = {}
        for lang, idxs in by_lang.items():
            plans = {t: self._option_plan(t, self._labels_for(t, schema, lang)) for t in tasks}
            # Sentences are windowed for the roomiest prompt; a prompt with less room for the
            # text (long labels) windows only the sentences too long for it.
            budget = max((b for v in plans.values() for _, b in v), default=self.max_source_length)
            for i, segs in zip(idxs, segment_many((docs[i].text for i in idxs), language=lang,
                                                  max_len=budget, length_fn=tok_len, overlap=32)):
                seg_of[i] = segs
                docs[i].sentences = _sentence_spans(segs)
                for s in segs:
                    n_tokens = tok_len(s.text)
                    for t in tasks:
                        for opts, room in plans[t]:
                            if not opts:
                                continue
                            for piece in ([s] if n_tokens <= room else _windows(s, lang, room, tok_len)):
                                prompts.append((i, piece, make_prompt(t, piece.text, opts, self._template(t),
                                                                      language=lang, hints=hints, length=tok_len)))
        return docs, seg_of, prompts

    def _extract_chunk(self, chunk, tasks, schema, language, decoding: Decoding, hints, keep_unsupported,
                       progress) -> Iterator[Document]:
        docs, seg_of, planned = self._plan(chunk, tasks, schema, language, hints)
        self._count_unrepresentable(docs)
        answers = answer_prompts(self.model, self.tokenizer, [p for _, _, p in planned], decoding, hints, progress)
        found: dict[int, dict] = {i: {} for i in range(len(docs))}
        for (i, seg, prompt), ans in zip(planned, answers):
            doc = docs[i]
            if ans.truncated:  # the text budget should prevent this; say so if it did not
                doc.stats["truncated_prompts"] = doc.stats.get("truncated_prompts", 0) + 1
            for reason, c in ans.dropped.items():
                key = reason if reason.startswith("below_") else f"dropped_{reason}"
                doc.stats[key] = doc.stats.get(key, 0) + c
            for f in ans.found:
                if f.missing:
                    doc.stats["unsupported"] = doc.stats.get("unsupported", 0) + 1
                    if keep_unsupported:
                        doc.unsupported.append({"task": prompt.task, "item": _shifted_dict(f.item, seg.start),
                                                "missing": list(f.missing), "sentence": [seg.start, seg.end],
                                                "score": f.confidence})
                    continue
                _keep_found(found[i], f.item, f.confidence, seg.start)
        for i, d in enumerate(docs):
            items = sorted(found[i].values(), key=lambda x: _order(x))
            d.entities = [x for x in items if isinstance(x, Span)]
            d.relations = [x for x in items if isinstance(x, RelationItem)]
            d.events = [x for x in items if isinstance(x, EventItem)]
            d.stats["segments"] = len(seg_of.get(i, []))
            d.stats["windows"] = sum(1 for s in seg_of.get(i, []) if s.window_index > 0)
            yield d


def _keep_found(store: dict, item, conf: float, offset: int) -> None:
    """A located item shifted to document offsets and kept (once per place, with its best confidence)."""
    if isinstance(item, Entity):
        _keep(store, ("E", item.start + offset, item.end + offset, item.label),
              Span(item.text, item.label, item.start + offset, item.end + offset, conf))
    elif isinstance(item, Relation):
        h, t = _shift(item.head, offset, conf), _shift(item.tail, offset, conf)
        _keep(store, ("R", h.start, h.end, item.label, t.start, t.end),
              RelationItem(h, item.label, t, conf, [_shift(a, offset, conf, a.role) for a in item.slots]))
    elif isinstance(item, Event):
        trig = _shift(item.trigger, offset, conf, item.type)
        args = [_shift(a, offset, conf, a.role) for a in item.arguments]
        _keep(store, ("V", trig.start, trig.end, item.type), EventItem(item.type, trig, args, conf))


def _sentence_spans(segs) -> list[tuple[int, int]]:
    """Document offsets of the sentences (a sentence cut into windows is reported once, whole)."""
    out: dict[int, tuple[int, int]] = {}
    for s in segs:
        a, b = out.get(s.sentence_index, (s.start, s.end))
        out[s.sentence_index] = (min(a, s.start), max(b, s.end))
    return [out[k] for k in sorted(out)]


def _shifted_dict(item, offset: int) -> dict:
    """An unsupported item as a dict, its located spans shifted to document offsets."""
    def fix(x):
        if isinstance(x, dict):
            y = {k: fix(v) for k, v in x.items()}
            if isinstance(y.get("start"), int) and isinstance(y.get("end"), int):
                y["start"] += offset
                y["end"] += offset
            return y
        if isinstance(x, (list, tuple)):
            return [fix(v) for v in x]
        return x
    return fix(asdict(item))


def _windows(seg, language: str, room: int, tok_len) -> list:
    """``seg`` cut into overlapping windows of at most ``room`` tokens, in document offsets."""
    from .segment import segment

    return [replace(w, doc_index=seg.doc_index, start=seg.start + w.start, end=seg.start + w.start + len(w.text),
                    sentence_index=seg.sentence_index, window_index=seg.window_index + k)
            for k, w in enumerate(segment(seg.text, language=language, max_len=room, length_fn=tok_len, overlap=32))]


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
