"""The one prediction path: prompts -> generation -> answer items parsed one by one, each with its own
confidence -> kept or left out (``min_confidence``, the hints plug-in's floor) -> grounded together in the
prompt's text. ``instructie test``, ``instructie eval`` of a model, ``extract``, the Python API and the
spaCy component all predict through ``answer_prompts``; they differ only in the prompts they ask (a
record's text whole, or a document's sentences and windows) and in what they do with the answers
(score them, or shift them to document offsets and merge windows).

A prompt carries its metadata (task, options, text, dataset, the hint's items) through decoding, so a
logits processor reads what it needs from it instead of from the prompt's tokens.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

from ..core.records import Entity, Event, Record
from ..decoding.constraints import chain_factories, make_factory
from ..decoding import generation
from ..decoding.generation import Generated
from ..decoding.tokens import item_confidences
from ..prompts.instructions import asked_order, build_source, option_chunks, pick_template, restrict
from ..prompts.offsets import ground
from ..prompts.targets import ParseResult, parse_items


@dataclass(frozen=True)
class Prompt:
    """One question to the model and what its answer is read against."""
    source: str                       # what the model reads
    task: str
    options: tuple[str, ...]
    text: str                         # the text the answer's spans are grounded in
    dataset: str = ""                 # per-dataset settings (a hint bias may differ per dataset)
    event: Event | None = None        # EEA: the event the prompt names
    hint: tuple[tuple[str, ...], ...] = ()  # the items the prompt's memory hint proposes
    roles: dict[str, list[str]] | None = field(default=None, compare=False)  # its schema's roles, else Decoding's


@dataclass
class Found:
    """One answer item: an entity, relation or event with offsets in the prompt's text (None where a span
    was not found: ``missing`` names those parts), or an RC/NEG label."""
    item: object
    confidence: float
    missing: tuple[str, ...] = ()


@dataclass
class Answer:
    prompt: Prompt
    text: str                         # what the model wrote
    found: list[Found] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)  # parser drops and items left out, by reason
    truncated: bool = False           # the prompt was cut to the length limit


@dataclass
class Decoding:
    """How to decode: generation's settings, the constraint, and the confidence an item needs."""
    batch_size: int = 64
    num_beams: int = 1
    max_source_length: int = 512
    max_new_tokens: int = 128
    constrained: bool | str = False   # False, "vocab" or "copy" (decoding.constraints)
    min_confidence: float = 0.0
    roles: dict[str, list[str]] = field(default_factory=dict)  # EE roles per event type (parsing, copy constraint)
    templates: dict[str, list[str]] | None = None  # the instructions, for the copy constraint


# ---------------------------------------------------------------------------------------------- prompts
class TokenCounts:
    """Token counts of texts (no special tokens), each text measured once: planning asks for a sentence's
    length to segment it, to fit it in a prompt and to cut its hint line. ``prime`` measures many texts in
    one batched tokenizer call (``segment.segment_many`` hands it every sentence of its batch)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.known: dict[str, int] = {}

    def prime(self, texts: Sequence[str]) -> None:
        new = [t for t in dict.fromkeys(texts) if t not in self.known]
        if new:
            for t, ids in zip(new, self.tokenizer(new, add_special_tokens=False)["input_ids"]):
                self.known[t] = len(ids)

    def __call__(self, text: str) -> int:
        n = self.known.get(text)
        if n is None:
            n = self.known[text] = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return n


def make_prompt(task: str, text: str, options: Sequence[str], instruction: str, *, dataset: str = "",
                language: str = "en", record: Record | None = None, hints=None,
                length: Callable[[str], int] | None = None) -> Prompt:
    """The prompt for ``task`` about ``text`` with ``options``; ``record`` gives what a task is given besides
    the text (RC's head and tail, EEA's event). With ``hints`` (``hints.Hints``) the prompt carries its
    memory line, cut to the plug-in's token budget by ``length``."""
    opts = list(options)
    rec = replace(record, options=opts) if record is not None else Record("", dataset, task, text, language=language,
                                                                         options=opts)
    line, items = hints.line(rec, length) if hints is not None else (None, ())
    event = rec.events[0] if task == "EEA" and rec.events else None
    roles = dict(record.roles) if record is not None else None
    return Prompt(build_source(restrict(rec, opts), instruction, opts, line), task, tuple(opts), text, dataset,
                  event, items, roles)


def record_prompts(record: Record, templates: dict[str, list[str]], max_options: int | None,
                   option_order: str = "schema", hints=None, length=None) -> list[Prompt]:
    """The prompts that ask ``record`` (its text whole): one per chunk of its options; NEG and RC ask all their
    options at once (the candidates are the question; RC must choose among all relations)."""
    opts = asked_order(record.options, option_order)
    chunks = [opts] if record.task in ("NEG", "RC") else option_chunks(opts, max_options)
    instruction = pick_template(templates, record.task, 0, 0, "")  # the first; a clear error if none
    return [make_prompt(record.task, record.text, c, instruction, dataset=record.dataset, language=record.language,
                        record=record, hints=hints, length=length) for c in chunks]


# ---------------------------------------------------------------------------------------------- answers
def answer_prompts(model, tokenizer, prompts: Sequence[Prompt], decoding: Decoding, hints=None,
                   progress=None) -> list[Answer]:
    """Ask the model every prompt (batched, length-sorted) and read its answers (``read_answer``)."""
    gens = generate_for(model, tokenizer, prompts, decoding, hints, progress)
    return [read_answer(p, g, tokenizer, decoding, hints) for p, g in zip(prompts, gens)]


def generate_for(model, tokenizer, prompts: Sequence[Prompt], decoding: Decoding, hints=None,
                 progress=None) -> list[Generated]:
    """The model's raw answers (with token log-probabilities) to ``prompts``: one generation that several
    readings can share (``read_answer`` with other floors)."""
    constraint = make_factory(decoding.constrained, tokenizer, model.config.vocab_size,
                              roles=sorted({r for rs in decoding.roles.values() for r in rs}),
                              templates=decoding.templates)
    lean = hints.logits_factory(tokenizer, model.config.vocab_size, getattr(constraint, "vocab", None)) \
        if hints is not None else None
    return generation.generate(model, tokenizer, [p.source for p in prompts], batch_size=decoding.batch_size,
                    max_source_length=decoding.max_source_length, max_new_tokens=decoding.max_new_tokens,
                    num_beams=decoding.num_beams, logits_processor_factory=chain_factories(lean, constraint),
                    progress=progress, with_scores=True, rows=list(prompts))


def read_answer(prompt: Prompt, generated: Generated, tokenizer, decoding: Decoding, hints=None,
                floor=None) -> Answer:
    """What an answer says: its items parsed one by one (``targets.parse_items``), each with its confidence
    (exp of the mean log-probability of its tokens, ``tokens.item_confidences``); those below
    ``min_confidence``, and with ``hints`` those the hint did not propose below its floor (or ``floor``),
    left out and counted; the rest grounded in the prompt's text together, so that repeated mentions take
    successive occurrences."""
    text = generated.text
    ans = Answer(prompt, text, truncated=generated.truncated)
    roles = prompt.roles if prompt.roles is not None else decoding.roles
    parsed = parse_items(text, prompt.task, options=list(prompt.options) or None, roles=roles or None)
    confs = item_confidences(tokenizer, generated.token_ids, generated.token_logprobs, text, [r for r, _ in parsed])
    kept: list[tuple[ParseResult, float]] = []
    for ((s, e), res), conf in zip(parsed, confs):
        ans.dropped.update(res.dropped)
        n = len(res.entities) + len(res.relations) + len(res.events) + len(res.labels)
        if conf < decoding.min_confidence:
            ans.dropped["below_min_confidence"] += n
        elif hints is not None and not hints.keeps(prompt.task, prompt.dataset, prompt.hint, text[s:e], conf, floor):
            ans.dropped["below_unhinted_floor"] += n
        else:
            kept.append((res, conf))
    ans.found = _grounded(prompt, kept)
    return ans


def _grounded(prompt: Prompt, kept: list[tuple[ParseResult, float]]) -> list[Found]:
    """The kept items grounded in the prompt's text together, each with its item's confidence."""
    merged = ParseResult()
    confs: dict[str, list[float]] = {"entity": [], "relation": [], "event": [], "label": []}
    for res, conf in kept:
        for kind, mine, theirs in (("entity", merged.entities, res.entities), ("relation", merged.relations,
                                   res.relations), ("event", merged.events, res.events),
                                   ("label", merged.labels, res.labels)):
            mine += theirs
            confs[kind] += [conf] * len(theirs)
    if prompt.task == "EEA" and len(merged.events) > 1:
        # the prompt names one event: the items are its arguments (as ``targets.parse`` reads them)
        merged.events = [Event("", Entity("", ""), tuple(a for ev in merged.events for a in ev.arguments))]
        confs["event"] = [min(confs["event"])]
    g = ground(merged, prompt.text, prompt.task, event=prompt.event)
    return ([Found(x, confs[kind][k], missing) for kind, k, x, missing in g.placed]
            + [Found(lab, c) for lab, c in zip(g.labels, confs["label"])])
