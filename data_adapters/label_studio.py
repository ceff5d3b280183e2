"""Label Studio JSON exports (a list of tasks, or one task per line) -> ``Record``s.

Each task's first annotation that was not cancelled (else its first prediction) gives its
spans (``labels`` results) and relations (``relation`` results;
``instructie.core.annotation_formats``). Every task gives an NER record; a file with relations
gives an RE record per task as well. Options: ``name`` (the dataset name; default the
file's stem), ``labels`` / ``relations`` (comma-separated label sets; default every label the
file uses), ``text_key`` (the data field holding the text; default "text", else the only
string field).
"""
from __future__ import annotations

from typing import Iterator

from instructie.core.annotation_formats import from_label_studio, read_records
from instructie.core.io import InputError, SkipCounter, iter_jsonl, lone_surrogate, parse_json, read_text
from instructie.core.records import Record

from . import check_options, register

_OPTIONS = {"name", "labels", "relations", "text_key"}


def _tasks(path, on_error) -> Iterator[tuple[int, object]]:
    """(task number from 1, task) from a JSON list or object file, else (line, task) per line."""
    text = read_text(path)
    if text.lstrip().startswith("["):
        for no, task in enumerate(parse_json(text, path), 1):
            if problem := lone_surrogate(task):  # JSON lines are checked as they are read (iter_jsonl)
                on_error(InputError(path, f"task {no}", problem))
            else:
                yield no, task
    else:
        yield from iter_jsonl(path, on_error)


@register("label_studio")
def read(path, *, split: str = "", on_error=None, stats=None, **options) -> Iterator[Record]:
    check_options("label_studio", options, _OPTIONS)
    on_error = on_error or SkipCounter(False)
    yield from read_records(path, _tasks(path, on_error), lambda t: from_label_studio(t, options.get("text_key")),
                            lambda no: f"task {no}", split=split, on_error=on_error, stats=stats, options=options)
