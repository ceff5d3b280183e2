"""FewRel 1.0 relation classification (English) -> ``Record(task="RC")``.

Input: ``{pid: [{"tokens": [...], "h": [name, qid, [[positions], ...]], "t": [...]}]}``
plus ``pid2name.json`` (option ``pid2name=PATH``, ``{pid: [name, description]}``).

Text is the tokens joined with single spaces (exact and reversible: every token's
character offsets are known). Head/tail spans come from the *first* position list
(later lists are further mentions); non-contiguous positions are spanned min..max
(``stats["noncontiguous_span"]``). Entity text is the rebuilt text slice, not ``h[0]``,
which the data lowercases. One relation per record: ``Relation(Entity("head"),
name, Entity("tail"))`` with ``name = pid2name[pid][0]``; a pid whose name is missing
or the literal ``"None"`` (5 such in pid2name.json) is named by its pid instead, since
"None" is the answer grammar's empty answer (``stats["unnamed_relation"]``).

Selection, all deterministic and independent of file order:

* ``relations=[pid, ...]``: only these relations (default: all in the file).
* ``unseen_relations=N`` (or an explicit list of pids), ``seed=0``,
  ``part="seen"|"unseen"|"all"``: zero-shot split. The N unseen relations are the first
  N of the sorted pids shuffled with ``random.Random(seed)``.
* ``instance_split="train"|"test"|"all"``, ``test_fraction=0.2``: per relation the
  instance indices are shuffled with ``random.Random(f"{seed}:{pid}")`` and the first
  ``round(n * test_fraction)`` are "test", so seen relations can be trained on and
  evaluated on held-out instances.

``options`` = sorted names of all relations of the chosen part (what the model may answer).
"""
from __future__ import annotations

import random
from collections import Counter
from typing import Any, Callable, Iterator

from instructie.core.io import ConfigError, InputError, SkipCounter, lone_surrogate, read_json
from instructie.core.records import Entity, Record, Relation

from . import check_options, register

_OPTIONS = {"pid2name", "relations", "unseen_relations", "seed", "part", "instance_split", "test_fraction"}


def load_pid2name(path: str) -> dict[str, str]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError(path, None, "expected a JSON object {pid: [name, description]}")
    if problem := lone_surrogate(data):
        raise InputError(path, None, problem)
    out = {}
    for pid, v in data.items():
        if not isinstance(v, list) or not v or not isinstance(v[0], str):
            raise InputError(path, f"relation {pid}", "expected [name, description]")
        out[pid] = v[0].strip()
    return out


def detokenize(tokens: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Join with single spaces; return the text and each token's (start, end)."""
    offsets, pos = [], 0
    for tok in tokens:
        offsets.append((pos, pos + len(tok)))
        pos += len(tok) + 1
    return " ".join(tokens), offsets


def _positions(ent: Any, n_tokens: int, stats: Counter) -> tuple[int, int] | str:
    """(first token, last token) of the entity's first mention, or what was wrong."""
    if not isinstance(ent, list) or len(ent) < 3 or not isinstance(ent[2], list) or not ent[2]:
        return "expected [name, id, [[token positions], ...]]"
    first = ent[2][0]
    if not isinstance(first, list) or not first or not all(isinstance(i, int) and not isinstance(i, bool) for i in first):
        return "token positions must be a non-empty list of integers"
    if min(first) < 0 or max(first) >= n_tokens:
        return f"token positions {first} outside the {n_tokens} tokens"
    lo, hi = min(first), max(first)
    if sorted(first) != list(range(lo, hi + 1)):
        stats["noncontiguous_span"] += 1
    if len(ent[2]) > 1:
        stats["extra_mentions_ignored"] += 1
    return lo, hi


def _choose_unseen(pids: list[str], unseen: Any, seed: int) -> set[str]:
    if unseen is None:
        return set()
    if isinstance(unseen, int) and not isinstance(unseen, bool):
        if not 0 <= unseen <= len(pids):
            raise ConfigError(f"fewrel: unseen_relations={unseen} but there are {len(pids)} relations")
        pool = sorted(pids)  # sorted first, so the split does not depend on file order
        random.Random(seed).shuffle(pool)
        return set(pool[:unseen])
    if isinstance(unseen, (list, tuple)) and all(isinstance(p, str) for p in unseen):
        missing = sorted(set(unseen) - set(pids))
        if missing:
            raise ConfigError(f"fewrel: unseen_relations names relations not in the data: {missing}")
        return set(unseen)
    raise ConfigError(f"fewrel: unseen_relations must be an integer or a list of pids, got {unseen!r}")


@register("fewrel")
def read(path: str, *, split: str = "", on_error: Callable[[InputError], None] | None = None,
         stats: Counter | None = None, **options: Any) -> Iterator[Record]:
    check_options("fewrel", options, _OPTIONS)
    if not options.get("pid2name"):
        raise ConfigError("fewrel: option 'pid2name' (path to pid2name.json) is required")
    seed = options.get("seed", 0)
    part = options.get("part", "all")
    inst_split = options.get("instance_split", "all")
    frac = options.get("test_fraction", 0.2)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"fewrel: seed must be an integer, got {seed!r}")
    if part not in ("seen", "unseen", "all"):
        raise ConfigError(f"fewrel: part must be seen, unseen or all, got {part!r}")
    if inst_split not in ("train", "test", "all"):
        raise ConfigError(f"fewrel: instance_split must be train, test or all, got {inst_split!r}")
    if not isinstance(frac, (int, float)) or isinstance(frac, bool) or not 0 <= frac <= 1:
        raise ConfigError(f"fewrel: test_fraction must be a number in [0, 1], got {frac!r}")
    if part != "all" and options.get("unseen_relations") is None:
        raise ConfigError(f"fewrel: part={part!r} needs unseen_relations")
    on_error = on_error if on_error is not None else SkipCounter(False)
    stats = stats if stats is not None else Counter()

    names = load_pid2name(str(options["pid2name"]))
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError(path, None, "expected a JSON object {relation id: [instances]}")
    valid = []
    for pid, insts in data.items():
        if pid not in names:
            on_error(InputError(path, f"relation {pid}", "relation id not in pid2name"))
        elif not isinstance(insts, list):
            on_error(InputError(path, f"relation {pid}", "expected a list of instances"))
        else:
            valid.append(pid)
    wanted = options.get("relations")
    if wanted is not None:
        if not isinstance(wanted, (list, tuple)) or not all(isinstance(p, str) for p in wanted):
            raise ConfigError(f"fewrel: relations must be a list of pids, got {wanted!r}")
        missing = sorted(set(wanted) - set(valid))
        if missing:
            raise ConfigError(f"fewrel: relations not in the data: {missing}")
        valid = [p for p in valid if p in set(wanted)]
    unseen = _choose_unseen(valid, options.get("unseen_relations"), seed)
    chosen = [p for p in valid if part == "all" or (p in unseen) == (part == "unseen")]

    def label(pid: str) -> str:
        n = names[pid]
        return n if n and n != "None" else pid
    labels = sorted({label(p) for p in chosen})
    if len(labels) < len(chosen):  # two pids sharing a name could not be told apart
        raise ConfigError("fewrel: the chosen relations share names: "
                          + ", ".join(f"{p}={label(p)}" for p in chosen))
    stats["unnamed_relation"] += sum(label(p) == p for p in chosen)
    stats["relation_types"] += len(chosen)

    for pid in chosen:
        insts = data[pid]
        test: set[int] = set()
        if inst_split != "all":
            order = list(range(len(insts)))
            random.Random(f"{seed}:{pid}").shuffle(order)
            test = set(order[: round(len(insts) * frac)])
        for i, inst in enumerate(insts):
            if inst_split != "all" and (i in test) != (inst_split == "test"):
                continue
            rec = _record(path, pid, i, inst, label(pid), labels, split, stats, on_error)
            if rec is not None:
                yield rec


def _record(path, pid, i, inst, name, labels, split, stats, on_error) -> Record | None:
    def bad(problem: str) -> None:
        on_error(InputError(path, f"relation {pid}, instance {i}", problem))

    if not isinstance(inst, dict):
        return bad("instance is not a JSON object")
    if problem := lone_surrogate(inst):
        return bad(problem)
    tokens = inst.get("tokens")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        return bad("'tokens' must be a non-empty list of strings")
    spans = {}
    for k in ("h", "t"):
        got = _positions(inst.get(k), len(tokens), stats)
        if isinstance(got, str):
            return bad(f"{k!r}: {got}")
        spans[k] = got
    text, offs = detokenize(tokens)
    (hs, he), (ts, te) = ((offs[a][0], offs[b][1]) for a, b in (spans["h"], spans["t"]))
    head = Entity("head", text[hs:he], hs, he)
    tail = Entity("tail", text[ts:te], ts, te)
    stats["records"] += 1
    return Record(id=f"fewrel-{split or 'x'}-{pid}-{i}", dataset="fewrel", task="RC", text=text,
                  language="en", relations=[Relation(head, name, tail)], options=list(labels),
                  split=split, meta={"pid": pid, "index": i, "head_id": inst["h"][1], "tail_id": inst["t"][1],
                                     "head_name": inst["h"][0], "tail_name": inst["t"][0]})
