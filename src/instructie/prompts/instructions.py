"""Records -> InstructUIE-style (source, target) instances, and the auxiliary tasks.

A source reads::

    <instruction>
    Option: label1, label2, ...
    [Entities: / Pairs: / Event: / Head: + Tail:  (the inputs an auxiliary task is given)]
    Text: <text>
    [Memory: what the training data says about the text (``hints/memory.py``; with hints.memory)]
    Answer:

Long option lists (DuIE has 48 predicates) are cut into chunks of at most
``max_options``: in training each instance gets every gold label plus randomly
chosen other labels up to that size (shuffled, so answers cannot depend on option
order); at inference every chunk is asked and the answers are merged
(``option_chunks``).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence


from ..core.io import ConfigError, read_yaml
from ..core.records import AUX_OF, TASKS, Record, unique
from .targets import render, render_items

DEFAULT_TEMPLATES = Path(__file__).parent / "templates.yaml"


@dataclass
class Instance:
    id: str
    task: str
    dataset: str
    source: str
    target: str
    record: Record

    def to_dict(self) -> dict:
        return {"id": self.id, "task": self.task, "dataset": self.dataset,
                "source": self.source, "target": self.target}


def load_templates(path: str | Path | None = None) -> dict[str, list[str]]:
    p = Path(path) if path else DEFAULT_TEMPLATES
    data = read_yaml(p, "template file")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping task -> list of templates")
    out = {}
    for task, items in data.items():
        if task not in TASKS:
            raise ConfigError(f"{p}: unknown task {task!r} (known: {', '.join(TASKS)})")
        if not isinstance(items, list) or not items or not all(isinstance(s, str) and s.strip() for s in items):
            raise ConfigError(f"{p}: task {task}: expected a non-empty list of template strings")
        out[task] = items
    return out


def gold_labels(record: Record) -> list[str]:
    """The option labels the gold answer uses (they must stay in any option chunk)."""
    t = record.task
    if t in ("NER", "ET", "ES", "NEG"):
        return unique(e.label if t != "NEG" else e.text for e in record.entities)
    if t in ("RE", "EP", "EPR", "RC"):
        return unique(r.label for r in record.relations)
    if t in ("EE", "EET"):
        return unique(e.type for e in record.events)
    if t == "EEA":
        return unique(a.role for e in record.events for a in e.arguments)
    return []


# The order inference lists a record's options in. "sorted": one prompt per label set, however the schema lists
# the labels, so answers cannot depend on that order (peers' users trip on it: GLiNER #192, IEPile #39); training
# shuffles the options (data.shuffle_options, else config validation asks for "schema"), so a sorted list is an
# order the model has seen. Sorting comes before cutting a long list into chunks of max_options, so a chunk holds
# neighbours in sort order (DuEE's "类别-子类" types of one 类别 together), where training cut shuffled lists.
# "schema": as given.
OPTION_ORDERS = ("sorted", "schema")


def asked_order(options: Sequence[str], order: str) -> list[str]:
    """Inference: ``options`` in the order the prompt lists them (``OPTION_ORDERS``)."""
    if order not in OPTION_ORDERS:
        raise ValueError(f"option order must be one of {', '.join(OPTION_ORDERS)}, got {order!r}")
    return sorted(options) if order == "sorted" else list(options)


def option_chunks(options: list[str], max_options: int | None) -> list[list[str]]:
    """Inference: every option asked once, in chunks of at most ``max_options``."""
    if not max_options or len(options) <= max_options:
        return [list(options)]
    return [options[i : i + max_options] for i in range(0, len(options), max_options)]


def sample_options(record: Record, max_options: int | None, rng: random.Random, shuffle: bool) -> list[str]:
    """Training: all gold labels plus random others up to ``max_options``, optionally shuffled."""
    opts = list(record.options)
    if record.task == "NEG":  # the candidates are the question itself: never drop one
        max_options = None
    if max_options and len(opts) > max_options:
        gold = [o for o in gold_labels(record) if o in opts]
        rest = [o for o in opts if o not in set(gold)]
        opts = gold + rng.sample(rest, max(0, max_options - len(gold)))
        if not shuffle:  # keep the schema's order
            keep = set(opts)
            opts = [o for o in record.options if o in keep]
    if shuffle:
        rng.shuffle(opts)
    return opts


def restrict(record: Record, options: list[str]) -> Record:
    """The record with only the gold items whose label is among ``options``."""
    keep = set(options)
    t = record.task
    if t in ("NER", "ET", "ES"):
        return replace(record, options=options, entities=[e for e in record.entities if e.label in keep])
    if t == "NEG":
        return replace(record, options=options, entities=[e for e in record.entities if e.text in keep])
    if t in ("RE", "EP", "EPR", "RC"):
        return replace(record, options=options, relations=[r for r in record.relations if r.label in keep])
    if t in ("EE", "EET"):
        return replace(record, options=options, events=[e for e in record.events if e.type in keep])
    if t == "EEA":
        evs = [replace(e, arguments=tuple(a for a in e.arguments if a.role in keep)) for e in record.events]
        return replace(record, options=options, events=evs)
    return replace(record, options=options)


def given_inputs(record: Record) -> list[str]:
    """The lines an auxiliary/RC task is given besides the text."""
    t = record.task
    if t == "ET":
        return ["Entities: " + render_items([(e.text,) for e in record.entities])]
    if t == "EPR":
        return ["Pairs: " + render_items([(r.head.text, r.tail.text) for r in record.relations])]
    if t == "EEA" and record.events:
        ev = record.events[0]
        return ["Event: " + render_items([(ev.trigger.text, ev.type)])]
    if t == "RC" and record.relations:
        r = record.relations[0]
        return [f"Head: {r.head.text}", f"Tail: {r.tail.text}"]
    return []


def build_source(record: Record, instruction: str, options: list[str] | None = None,
                 hint: str | None = None) -> str:
    """The prompt. A memory ``hint`` goes after the text, so a source cut to the length
    limit loses the hint before any of the text."""
    opts = record.options if options is None else options
    lines = [instruction.strip(), "Option: " + ", ".join(opts)]
    lines += given_inputs(record)
    lines += ["Text: " + record.text] + ([hint] if hint else []) + ["Answer:"]
    return "\n".join(lines)


def template_index_problem(templates: dict[str, list[str]], index: int) -> str | None:
    """Why a fixed template ``index`` cannot be used (None when it can): an index past a task's templates would
    wrap round to another one (``pick_template``)."""
    fewest = min(len(v) for v in templates.values())
    if 0 <= index < fewest:
        return None
    return f"the templates are numbered 0 to {fewest - 1} (every task has at least {fewest}), or 'random'"


def pick_template(templates: dict[str, list[str]], task: str, template: int | str, seed: int, key: str) -> str:
    choices = templates.get(task)
    if not choices:
        raise ConfigError(f"no instruction template for task {task}")
    if template == "random":
        return random.Random(f"{seed}:{key}").choice(choices)
    return choices[int(template) % len(choices)]


def to_instance(record: Record, templates: dict[str, list[str]], *, template: int | str = 0,
                seed: int = 0, max_options: int | None = None, shuffle_options: bool = False,
                suffix: str = "", memory=None,
                hint_exclude: frozenset[str] = frozenset()) -> Instance:
    """One training/eval instance. With ``max_options`` the options are sampled to fit;
    with a ``memory`` (``memory.Memory`` or ``FoldedMemory``) the prompt gets its hint."""
    key = f"{record.id}#{record.task}{suffix}"
    rng = random.Random(f"{seed}:opts:{key}")
    opts = sample_options(record, max_options, rng, shuffle_options)
    rec = restrict(record, opts) if opts != record.options else record
    instruction = pick_template(templates, record.task, template, seed, key)
    hint = memory.hint(record, opts, hint_exclude) if memory is not None else None
    return Instance(key, record.task, record.dataset, build_source(rec, instruction, opts, hint), render(rec), rec)


def derive_aux(record: Record, tasks: Iterable[str]) -> Iterator[Record]:
    """InstructUIE's auxiliary tasks built from a main-task record."""
    wanted = set(tasks) & set(AUX_OF.get(record.task, ()))
    if "ES" in wanted:
        yield replace(record, task="ES")
    if "ET" in wanted and record.entities:
        yield replace(record, task="ET")
    if "EP" in wanted:
        yield replace(record, task="EP")
    if "EPR" in wanted and record.relations:
        yield replace(record, task="EPR")
    if "EET" in wanted:
        yield replace(record, task="EET")
    if "EEA" in wanted:
        for i, ev in enumerate(record.events):
            roles = record.roles.get(ev.type) or unique(r for rs in record.roles.values() for r in rs)
            if not roles:
                roles = unique(a.role for a in ev.arguments)
            yield replace(record, id=f"{record.id}@{i}", task="EEA", events=[ev], options=list(roles))


def expand_tasks(records: Iterable[Record], tasks: Iterable[str] | None) -> Iterator[Record]:
    """Each record itself (if its task is wanted, or no list is given) and its auxiliary tasks."""
    tasks = list(tasks) if tasks else None
    for rec in records:
        if tasks is None or rec.task in tasks:
            yield rec
        if tasks:
            yield from derive_aux(rec, tasks)
