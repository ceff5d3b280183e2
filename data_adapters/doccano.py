"""doccano JSONL exports (sequence labeling, with or without relations) -> ``Record``s.

Each line is ``{"text", "label": [[start, end, label], ...]}`` or ``{"text", "entities":
[{"id", "label", "start_offset", "end_offset"}], "relations": [{"from_id", "to_id",
"type"}]}`` (``instructie.core.annotation_formats``). Every line gives an NER record; a file with
relations gives an RE record per line as well. Options: ``name`` (the dataset name; default
the file's stem), ``labels`` / ``relations`` (comma-separated label sets to ask for; default
every label the file uses; spans of other labels are left out).
"""
from __future__ import annotations

from typing import Iterator

from instructie.core.annotation_formats import from_doccano, read_records
from instructie.core.io import SkipCounter, iter_jsonl
from instructie.core.records import Record

from . import check_options, register

_OPTIONS = {"name", "labels", "relations"}


@register("doccano")
def read(path, *, split: str = "", on_error=None, stats=None, **options) -> Iterator[Record]:
    check_options("doccano", options, _OPTIONS)
    on_error = on_error or SkipCounter(False)
    yield from read_records(path, iter_jsonl(path, on_error), from_doccano, lambda no: no, split=split,
                            on_error=on_error, stats=stats, options=options)
