"""Unlabeled texts to pretrain on: ``data.files`` (.txt a text per line, .jsonl with ``data.text_field``, .csv
with that column; globs and folders allowed) and ``data.adapters`` (the ``text`` of every record a dataset adapter
reads). Short texts are dropped, duplicates kept once."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..config import PretrainDataConfig, pretrain_files
from ..core.io import ConfigError, InputError, SkipCounter, _decoded_lines, csv_reader, iter_jsonl
from .sources import load_records


@dataclass
class TextSource:
    name: str
    texts: list[str]
    read: int = 0  # before filtering


@dataclass
class Texts:
    texts: list[str]  # what is pretrained on, in a fixed order
    report: dict[str, Any]  # per source: read, kept, too_short, duplicates, over_max_texts
    labels: list[str]  # the adapters' label names (options), one string per distinct option list: a tokenizer
    # trained here sees them, as `train`'s does, so fine-tuning prompts tokenize as compactly
    skipped: str = ""  # with skip_invalid: what was skipped, to be logged


def read_texts(data: PretrainDataConfig, skip_invalid: bool = False) -> Texts:
    """The texts to pretrain on and a report per source. Bad lines raise ``InputError`` naming file and
    line (with ``skip_invalid``: counted and skipped)."""
    errors = SkipCounter(skip_invalid)
    sources: list[TextSource] = []
    labels: dict[str, None] = {}
    for i, entry in enumerate(data.files):
        for f in pretrain_files(entry, f"data.files[{i}]"):
            got = list(_read_file(f, data.text_field, errors))
            sources.append(TextSource(str(f), got, len(got)))
    for ds in data.adapters:
        recs = load_records(ds, skip_invalid)
        sources.append(TextSource(f"{ds.adapter}:{ds.path}" + (f" [{ds.split}]" if ds.split else ""),
                                  [r.text for r in recs], len(recs)))
        labels.update((" ".join(r.options), None) for r in recs if r.options)
    seen: set[str] = set()
    texts: list[str] = []
    report: dict[str, Any] = {"sources": []}
    for s in sources:
        c = Counter()
        for text in s.texts:
            text = text.strip()
            if len(text) < max(1, data.min_chars):
                c["too_short"] += 1
            elif data.dedup and text in seen:
                c["duplicates"] += 1
            elif data.max_texts is not None and len(texts) >= data.max_texts:
                c["over_max_texts"] += 1
            else:
                seen.add(text)
                texts.append(text)
                c["kept"] += 1
        report["sources"].append({"source": s.name, "read": s.read, **c})
    report["texts"] = len(texts)
    report["chars"] = sum(map(len, texts))
    if errors.count:
        report["skipped_invalid"] = errors.count
    return Texts(texts, report, list(labels), errors.report())


def _read_file(path: Path, field: str, on_error: Callable[[InputError], None]) -> Iterator[str]:
    suffix = path.suffix.lower()
    if suffix == ".txt":
        for no, line in _decoded_lines(path):
            if isinstance(line, InputError):
                on_error(line)
            else:
                yield line
    elif suffix == ".jsonl":
        for no, obj in iter_jsonl(path, on_error):
            text = obj.get(field) if isinstance(obj, dict) else None
            if not isinstance(text, str):
                on_error(InputError(path, no, f"expected a JSON object with a string field {field!r} "
                                              "(data.text_field)"))
                continue
            yield text
    elif suffix == ".csv":
        reader = csv_reader(path)
        header = next(reader, None) or []
        if field not in header:
            raise InputError(path, 1, f"no column {field!r} (data.text_field) in the header {header}")
        col = header.index(field)
        line = reader.line_num + 1
        for row in reader:
            where, line = line, reader.line_num + 1  # a quoted field may span several lines
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                on_error(InputError(path, where, f"expected {len(header)} columns, got {len(row)}"))
                continue
            yield row[col]
    else:  # pretrain_files lets no other suffix through
        raise ConfigError(f"{path}: not a .txt, .jsonl or .csv file")
