"""Gold records read from converted JSONL, each checked against its text."""
from __future__ import annotations

from ..core.io import InputError, SkipCounter, iter_jsonl
from ..core.records import TASKS, Record


def check_offsets(rec: Record) -> None:
    """Every span with offsets must lie in the text and match it (ValueError otherwise)."""
    for x in rec.spans():
        if x.start is None and x.end is None:
            continue
        if not (isinstance(x.start, int) and isinstance(x.end, int)) or isinstance(x.start, bool):
            raise ValueError(f"span {x.text!r}: offsets must be integers, got {x.start!r}, {x.end!r}")
        if not 0 <= x.start < x.end <= len(rec.text):
            raise ValueError(f"span {x.text!r}: offsets {x.start}-{x.end} are outside the text "
                             f"(length {len(rec.text)})")
        if rec.text[x.start:x.end] != x.text:
            raise ValueError(f"span {x.text!r}: text[{x.start}:{x.end}] is {rec.text[x.start:x.end]!r}")


def read_gold(path: str, errors: SkipCounter) -> list[tuple[Record, dict]]:
    out = []
    for no, row in iter_jsonl(path, errors):
        try:
            if not isinstance(row, dict):
                raise ValueError("expected a JSON object")
            rec = Record.from_dict(row)
            if not isinstance(rec.text, str) or not isinstance(rec.task, str):
                raise ValueError("'text' and 'task' must be strings")
            if rec.task not in TASKS:
                raise ValueError(f"unknown task {rec.task!r} (known: {', '.join(TASKS)})")
            check_offsets(rec)
            out.append((rec, row))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            what = f"missing field {e}" if isinstance(e, KeyError) else str(e)
            errors(InputError(path, no, f"not a converted record: {what}"))
    return out
