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
    """Converted records of a JSONL file with their rows, each checked against its text (a bad line goes to
    ``errors``)."""
    return [(rec, row) for _, rec, row in _gold_rows(path, errors)]


def read_scored_gold(path: str, errors: SkipCounter) -> tuple[list[tuple[Record, dict]], list[str]]:
    """``read_gold`` for scoring, each record once, and the records that were repeated. A record is
    known by its ``instance_id``, else its id and task, as predictions are matched to it. A repeat of
    the same content (a file joined with itself or with an overlapping part) is left out -- scored
    twice it would count twice -- and returned (line and key) for the report; a repeated key with
    other content is an error for that line: one prediction would be scored against both, and which
    of the two is the gold cannot be told."""
    out, first, repeats = [], {}, []
    for no, rec, row in _gold_rows(path, errors):
        key = str(row["instance_id"]) if row.get("instance_id") is not None else f"{rec.id} ({rec.task})"
        if key not in first:
            first[key] = (no, row)
            out.append((rec, row))
        elif row == first[key][1]:
            repeats.append(f"line {no}: {key}")
        else:
            errors(InputError(path, no, f"record {key} again, with other content than on line {first[key][0]}: "
                                        "which is the gold cannot be told (give each record its own id)"))
    return out, repeats


def _gold_rows(path: str, errors: SkipCounter):
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
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            what = f"missing field {e}" if isinstance(e, KeyError) else str(e)
            errors(InputError(path, no, f"not a converted record: {what}"))
            continue
        yield no, rec, row
