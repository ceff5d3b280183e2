"""CCF BDCI 2019 "金融信息负面及主体判定" (financial negative entity) CSVs -> task NEG.

Columns ``id,title,text,entity[,negative,key_entity]`` (UTF-8, BOM allowed); ``entity``
and ``key_entity`` are ``;``-separated. A record asks: which candidate entities is this
text negative about? ``options`` = candidates (deduplicated, order kept, whitespace at
the ends stripped, empties dropped); ``entities`` = one ``Entity("negative", key)`` per
key entity (none when negative=0); ``meta`` = {negative: 0/1 or None, labeled,
orig_chars, truncated}.

``path`` is a CSV file or a folder (its ``Train*.csv`` -> split "train", ``Test*.csv``
-> "test"; ``split`` picks one). Option ``labeled`` (default: from the header) and
``max_chars`` (default 400; 0 = never truncate).

Text composition (offsets refer to the composed text):

* Cleaning: ``{IMG:n}`` placeholders are removed, white space runs (incl. U+3000)
  become one space, and trailing runs of ``?`` (emoji lost in the crawl) are cut.
  Other ``?`` stay: 97 candidates start with "????" (the candidate lists were cut
  from the raw text), so removing them would lose those mentions.
* The title is dropped when empty, equal to the text, contained in it, or when the
  text starts with the title's first 20 characters (a truncated copy: most Weibo
  posts); otherwise text = title + "\\n" + text.
* Longer than ``max_chars``: keep windows of ``max(40, max_chars // 4)`` characters
  around candidate mentions (clipped to their sentence), first the opening sentence,
  then the first mention of every candidate, then further mentions in document
  order, while they fit; kept pieces in document order joined with "…". Gold
  labels are never used to choose windows (train and test texts are cut alike).
  ``stats["truncated"]`` counts these.

Key entities: offsets of their first occurrence in the composed text, ``None`` when
absent (``stats["key_not_in_text"]``, e.g. "（北京）" vs "(北京)" in the text). A key
entity that is not a candidate is kept and appended to ``options`` (the answer must
be expressible; parsing drops labels outside the options), counted in
``stats["key_not_candidate"]`` (0 in the released training set).

Bad rows (missing id, duplicate id, negative not 0/1, negative=1 without key
entities, negative=0 with key entities, wrong column count) go to ``on_error``.
"""
from __future__ import annotations

import bisect
import zlib
import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

from instructie.core.io import ConfigError, InputError, SkipCounter, csv_reader
from instructie.core.records import Entity, Record, find_all, unique

from . import check_options, register

DATASET = "fin_negative"
COLUMNS = ["id", "title", "text", "entity"]
LABEL_COLUMNS = ["negative", "key_entity"]
ELLIPSIS = "…"
_OPTIONS = {"labeled", "max_chars", "holdout", "part"}
_IMG = re.compile(r"\{IMG:\d+\}")
_WS = re.compile(r"[\s\u3000\xa0]+")
# Trailing ASCII '?' only: '？' is real punctuation, and leading "????" is part of some
# candidates ("????小资钱包": the entity lists were cut from the raw text).
_END_JUNK = re.compile(r"^ +|[? ]+$")
_SENT_END = re.compile(r"[。！？!?；;\n]+")


@register("fin_negative")
def read(path, *, split: str = "", on_error: Callable[[InputError], None] | None = None,
         stats: Counter | None = None, **options: Any) -> Iterator[Record]:
    check_options("fin_negative", options, _OPTIONS)
    max_chars = options.get("max_chars", 400)
    if not isinstance(max_chars, int) or isinstance(max_chars, bool) or (max_chars and max_chars < 50):
        raise ConfigError(f"fin_negative: max_chars must be 0 (no limit) or an integer >= 50, not {max_chars!r}")
    labeled = options.get("labeled")
    if labeled not in (None, True, False):
        raise ConfigError(f"fin_negative: labeled must be true, false or unset, not {labeled!r}")
    on_error = on_error or SkipCounter(False)
    stats = stats if stats is not None else Counter()
    p = Path(path)
    if not p.exists():
        raise InputError(p, None, "not found")
    if p.is_dir():
        files = [(f, s) for s in ("train", "test") if not split or split == s
                 for f in sorted(p.glob("*.csv")) if f.name.lower().startswith(s)]
        if not files:
            raise InputError(p, None, "no Train*.csv / Test*.csv here")
    else:
        files = [(p, split or _split_of(p))]
    # Only the training CSV is labeled: ``holdout`` (a fraction) sets aside a
    # deterministic part of it (by a hash of the id, so it does not depend on row
    # order) for testing; ``part`` picks "train" (the rest), "heldout" or "all".
    holdout = options.get("holdout", 0.0)
    part = options.get("part", "all")
    if not isinstance(holdout, (int, float)) or not 0 <= holdout < 1:
        raise ConfigError(f"fin_negative: holdout must be a fraction in [0, 1), not {holdout!r}")
    if part not in ("train", "heldout", "all"):
        raise ConfigError(f"fin_negative: part must be train, heldout or all, not {part!r}")
    for f, sp in files:
        for rec in _read_file(f, sp, labeled, max_chars, on_error, stats):
            if part == "all" or (part == "heldout") == is_heldout(rec.id, holdout):
                yield rec


def is_heldout(record_id: str, fraction: float) -> bool:
    return zlib.crc32(record_id.encode("utf-8")) % 10000 < fraction * 10000


def _split_of(p: Path) -> str:
    name = p.name.lower()
    return "train" if "train" in name else "test" if "test" in name else ""


def _read_file(path: Path, split: str, labeled: bool | None, max_chars: int, on_error, stats: Counter) -> Iterator[Record]:
    reader = csv_reader(path)
    header = next(reader, None)
    has_labels = header == COLUMNS + LABEL_COLUMNS
    if header != COLUMNS and not has_labels:
        raise InputError(path, 1, f"unexpected CSV header {header}; expected columns {','.join(COLUMNS)}[,{','.join(LABEL_COLUMNS)}]")
    if labeled and not has_labels:
        raise InputError(path, 1, f"labeled=true but the header has no {','.join(LABEL_COLUMNS)} columns")
    use_labels = has_labels if labeled is None else labeled
    seen: set[str] = set()
    line = reader.line_num + 1
    for row in reader:
        where, line = line, reader.line_num + 1  # a row may span several lines
        if not any(c.strip() for c in row):
            continue
        try:
            rec = _convert(row, len(header), use_labels, max_chars, seen, stats)
        except ValueError as e:
            on_error(InputError(path, where, str(e)))
            stats["invalid"] += 1
            continue
        rec.split = split
        stats["records"] += 1
        stats[f"records:{split or path.name}"] += 1
        yield rec


def _convert(row: list[str], width: int, use_labels: bool, max_chars: int, seen: set, stats: Counter) -> Record:
    if len(row) != width:
        raise ValueError(f"expected {width} columns, got {len(row)}")
    rid, title, body, cands = row[0].strip(), row[1], row[2], row[3]
    if not rid:
        raise ValueError("missing id")
    if rid in seen:
        raise ValueError(f"duplicate id {rid!r}")
    seen.add(rid)
    options = unique(c.strip() for c in cands.split(";") if c.strip())
    negative, keys = None, []
    if use_labels:
        neg = row[4].strip()
        if neg not in ("0", "1"):
            raise ValueError(f"negative must be 0 or 1, got {neg!r}")
        negative = int(neg)
        keys = unique(k.strip() for k in row[5].split(";") if k.strip())
        if negative and not keys:
            raise ValueError("negative=1 but key_entity is empty")
        if not negative and keys:
            raise ValueError(f"negative=0 but key_entity is {row[5]!r}")
        for k in keys:
            if k not in options:
                stats["key_not_candidate"] += 1
                options.append(k)
    if not options:
        stats["no_candidates"] += 1
    full = compose(title, body, stats)
    text, truncated = (truncate(full, options, max_chars), True) if max_chars and len(full) > max_chars else (full, False)
    stats["truncated"] += truncated
    entities = []
    for k in keys:
        i = text.find(k)
        if i < 0:
            stats["key_not_in_text"] += 1
            stats["key_lost_by_truncation"] += truncated and k in full
            entities.append(Entity("negative", k))
        else:
            entities.append(Entity("negative", k, i, i + len(k)))
    stats["key_entities"] += len(keys)
    return Record(id=rid, dataset=DATASET, task="NEG", text=text, language="zh", entities=entities,
                  options=options, meta={"negative": negative, "labeled": use_labels,
                                         "orig_chars": len(full), "truncated": truncated})


def _clean(s: str) -> str:
    s = _WS.sub(" ", _IMG.sub(" ", s))
    return _END_JUNK.sub("", s)


def compose(title: str, body: str, stats: Counter | None = None) -> str:
    """Title + text, with the title dropped where it only repeats the text (see module doc)."""
    t, b = _clean(title), _clean(body)
    drop = not t or t == b or (bool(b) and (t in b or b.startswith(t[:20])))
    if stats is not None:
        stats["title_dropped" if drop else "title_kept"] += 1
    if not b:
        return t
    return b if drop else t + "\n" + b


def truncate(text: str, candidates: list[str], max_chars: int) -> str:
    """Windows around candidate mentions in document order, joined with "…", at most ``max_chars``."""
    width = max(40, max_chars // 4)
    bounds = [0] + [m.end() for m in _SENT_END.finditer(text)] + [len(text)]

    def window(s: int, e: int, w: int) -> tuple[int, int]:
        # The sentence(s) holding [s, e), clipped to w chars centred on the span.
        lo = bounds[bisect.bisect_right(bounds, s) - 1]
        hi = bounds[bisect.bisect_left(bounds, e)]
        pad = max(0, (w - (e - s)) // 2)
        a, b = max(lo, s - pad), min(hi, e + pad)
        return a, b

    firsts, rest = [], []
    for c in candidates:
        starts = find_all(text, c)
        if starts:
            firsts.append((starts[0], starts[0] + len(c)))
            rest += [(x, x + len(c)) for x in starts[1:]]
    firsts.sort()
    # Priority: a short opening, every candidate's first mention bare, then the
    # opening sentence and windows around first mentions, then around later mentions.
    wanted = ([window(0, 0, min(width, 40))] + firsts + [window(0, 0, width)]
              + [window(s, e, width) for s, e in firsts + sorted(set(rest))])
    kept: list[tuple[int, int]] = []
    for iv in wanted:
        m = _merge(kept + [iv])
        if sum(b - a for a, b in m) + len(ELLIPSIS) * (len(m) - 1) <= max_chars:
            kept.append(iv)
    if not kept:
        return text[:max_chars]
    return ELLIPSIS.join(text[a:b] for a, b in _merge(kept))


def _merge(iv: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for a, b in sorted(iv):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]
