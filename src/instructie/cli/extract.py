"""``instructie extract``: stream documents from a file or stdin through an Extractor
into JSONL, resumable, with per-document error handling and an optional HTML view."""
from __future__ import annotations

import contextlib
import json
import os
import sys
from collections import deque
from pathlib import Path
from typing import Iterator

from ..core.io import ConfigError, InputError, SkipCounter

MAX_DOC_CHARS = 2_000_000  # a "document" past this is almost surely a wrong input mode
# A line longer than this many bytes cannot hold a document within MAX_DOC_CHARS (UTF-8 is at most 4
# bytes a char; a JSON \uXXXX escape 6): it is skipped unread, so memory stays flat on any input.
MAX_LINE_BYTES = 6 * MAX_DOC_CHARS + 4096


def _too_big(n_chars: int) -> str:
    return (f"document of {n_chars:,} characters exceeds {MAX_DOC_CHARS:,}; split it "
            "(use --per-line for one document per line)")


def _read_lines(stream) -> Iterator[tuple[int, bytes | None, int]]:
    """(line number, raw bytes or None when longer than MAX_LINE_BYTES, length in bytes)."""
    no = 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        no += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            n = len(raw)
            while raw and not raw.endswith(b"\n"):  # skip the rest of the line in bounded pieces
                raw = stream.readline(1 << 20)
                n += len(raw)
            yield no, None, n
            continue
        yield no, raw, len(raw)


def reads_jsonl(path: str, as_jsonl: bool = False) -> bool:
    """Whether ``read_documents`` reads ``path`` as JSON lines: by its name, or told (stdin: ``-``)."""
    return as_jsonl or (path != "-" and path.endswith((".jsonl", ".json")))


def read_documents(path: str, per_line: bool, text_field: str, errors: SkipCounter,
                   as_jsonl: bool = False) -> Iterator[tuple[str, str]]:
    """(id, text) per document: a .txt file (or stdin, ``-``) is one document, or one per
    line with ``per_line`` (id: the line number); .jsonl (or any input with ``as_jsonl``) has one
    JSON object per line with ``text_field`` (id: its ``id`` field, else the line number). Bad lines
    (not UTF-8, empty in .jsonl, malformed, too long) go to ``errors``: raised, or counted and skipped."""
    is_stdin = path == "-"
    name = "<stdin>" if is_stdin else path
    if not is_stdin and not Path(path).exists():
        raise InputError(path, None, "file not found")
    if not is_stdin and Path(path).is_dir():
        raise InputError(path, None, "is a directory, expected a file")
    jsonl = reads_jsonl(path, as_jsonl)
    if not jsonl and not per_line:  # the whole input is one document
        if is_stdin:
            data = sys.stdin.buffer.read(MAX_LINE_BYTES + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(MAX_LINE_BYTES + 1)
        if len(data) > MAX_LINE_BYTES:
            errors(InputError(name, None, _too_big(len(data))))
            return
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            errors(InputError(name, data[: e.start].count(b"\n") + 1,
                              f"not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})"))
            return  # skipped (with --skip-invalid), like a bad line in --per-line mode
        if len(text) > MAX_DOC_CHARS:
            errors(InputError(name, None, _too_big(len(text))))
            return
        if text.strip():
            yield ("stdin" if is_stdin else Path(path).stem), text
        return
    stream = sys.stdin.buffer if is_stdin else open(path, "rb")
    try:
        for no, raw, n_bytes in _read_lines(stream):
            if raw is None:
                errors(InputError(name, no, f"line of {n_bytes:,} bytes is too long for one document "
                                            f"(at most {MAX_DOC_CHARS:,} characters)"))
                continue
            try:
                line = raw.decode("utf-8-sig" if no == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                errors(InputError(name, no, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})"))
                continue
            if not line.strip():  # blank lines separate documents in .txt; in .jsonl they are an error
                if jsonl:
                    errors(InputError(name, no, "empty line"))
                continue
            if jsonl:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    errors(InputError(name, no, f"malformed JSON: {e.msg} (column {e.colno})"))
                    continue
                if not isinstance(obj, dict) or not isinstance(obj.get(text_field), str):
                    errors(InputError(name, no, f"no string field {text_field!r}"))
                    continue
                doc_id, text = str(obj.get("id", no)), obj[text_field]
            else:
                doc_id, text = str(no), line
            if len(text) > MAX_DOC_CHARS:
                errors(InputError(name, no, _too_big(len(text))))
                continue
            yield doc_id, text
    finally:
        if not is_stdin:
            stream.close()


def finished_ids(path: Path) -> set[str]:
    """Ids already written by an interrupted run, read line by line (memory: the ids only);
    a torn last line (a kill mid-write) is cut off so the file stays valid JSONL. A file that is not
    such output (any other line, or a last line that is not the start of one) is an error: --resume
    appends to it and would cut its end."""
    if not path.exists():
        return set()
    done: set[str] = set()
    keep = 0
    not_output = ("not a line of extraction output (a JSON object with an id): --resume continues only an earlier "
                  "`instructie extract` run's output file")
    with open(path, "rb") as f:
        for no, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                if not line.startswith(b'{"id": '):  # what every written line starts with (Document.to_dict)
                    raise InputError(str(path), no, not_output)
                break
            keep += len(line)
            try:
                done.add(str(json.loads(line)["id"]))
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
                raise InputError(str(path), no, not_output) from None
    if keep != path.stat().st_size:
        with open(path, "r+b") as f:
            f.truncate(keep)
    return done


def run_extract(a) -> int:
    from tqdm.auto import tqdm

    from ..inference.extractor import Extractor, Schema

    errors = SkipCounter(a.skip_invalid)
    schema = Schema.from_file(a.schema) if a.schema else None
    split = (lambda s: [x.strip() for x in s.split(",") if x.strip()] if s is not None else None)
    tasks = [t.upper() for t in split(a.tasks)] if a.tasks is not None else None
    out_path = Path(a.output) if a.output and a.output != "-" else None
    if a.html and Path(a.html).is_dir():  # found now, not after the whole extraction has run
        raise ConfigError(f"--html {a.html} is a directory: give a file name (page.html)")
    if a.resume and out_path is None:
        raise ConfigError("--resume needs an output file (-o): there is nothing to resume on stdout")
    if a.min_confidence is not None and not 0.0 <= a.min_confidence <= 1.0:
        raise ConfigError("--min-confidence must be between 0 and 1")
    if out_path is not None and a.input != "-" and Path(a.input).resolve() == out_path.resolve():
        raise ConfigError(f"output {a.output} is the input file")
    ex = Extractor.from_pretrained(a.model, device=a.device, option_order=a.option_order)
    if a.memory:
        from ..evaluation.gold import read_gold

        for path in a.memory:
            n = ex.remember(rec for rec, _ in read_gold(path, errors))
            print(f"[instructie] memory: {n} records added from {path}", file=sys.stderr)
    done = set()
    if out_path and a.resume:
        done = finished_ids(out_path)
    fds: list[int] = []
    if out_path:
        def open_output() -> int:
            # Opened at the first finished document: a run that fails on its input before
            # that leaves an earlier output untouched. A fresh run replaces it; --resume appends.
            if not fds:
                out_path.parent.mkdir(parents=True, exist_ok=True)
                mode = os.O_APPEND if a.resume else os.O_TRUNC
                fds.append(os.open(out_path, os.O_WRONLY | os.O_CREAT | mode, 0o644))
            return fds[0]

        def emit(line: str) -> None:
            _write_all(open_output(), line.encode("utf-8"))
    else:
        def emit(line: str) -> None:  # stdout may be a captured stream with no file descriptor
            sys.stdout.write(line)
            sys.stdout.flush()

    if a.text_field != "text" and not reads_jsonl(a.input, a.jsonl):
        raise ConfigError(f"--text-field reads JSON lines: {a.input} is read as plain text (give --jsonl to read it "
                          f"as JSON lines)")
    docs = ((i, t) for i, t in read_documents(a.input, a.per_line, a.text_field, errors, a.jsonl)
            if i not in done)
    pending: deque[str] = deque()  # ids of documents handed to the extractor, not yet written

    def texts():
        for doc_id, text in docs:
            pending.append(doc_id)
            yield text

    def ids():
        while True:
            yield pending.popleft()

    html_docs = []
    bar = tqdm(unit="sent", desc="extract", disable=not sys.stderr.isatty() and not os.environ.get("INSTRUCTIE_PROGRESS"))
    n_docs = n_sent = 0
    try:
        for doc in ex.extract(texts(), tasks, labels=split(a.labels), relations=split(a.relations), schema=schema,
                              language=a.language, batch_size=a.batch_size, num_beams=a.num_beams,
                              max_new_tokens=a.max_new_tokens, min_confidence=a.min_confidence,
                              keep_unsupported=a.keep_unsupported, constrained=a.constrained, ids=ids(),
                              hint_bias=a.hint_bias, unhinted_floor=a.unhinted_floor):
            line = json.dumps(doc.to_dict(with_text=a.with_text), ensure_ascii=False) + "\n"
            try:
                emit(line)
            except BrokenPipeError:  # `... | head`: the reader is gone, nothing left to do
                _silence_stdout()
                return 0
            n_docs += 1
            n_sent += len(doc.sentences)
            bar.update(len(doc.sentences))
            if a.html and len(html_docs) < 2000:
                html_docs.append(doc)
        if out_path:
            open_output()  # a finished run with no document still replaces the old output
    finally:
        bar.close()
        for fd in fds:
            os.close(fd)
    if a.html:
        write_html(a.html, html_docs)
    msg = f"extracted {n_docs} document(s), {n_sent} sentence(s)"
    if done:
        msg += f"; {len(done)} already done were skipped (--resume)"
    print(msg, file=sys.stderr)
    if errors.count:
        print(errors.report(), file=sys.stderr)
    return 0


def _write_all(fd: int, data: bytes) -> None:
    """One write per document (a kill leaves whole lines; a torn last line is cut by
    --resume); a pipe may take fewer bytes per call, so loop until all are written."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _silence_stdout() -> None:
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def write_html(path: str, docs) -> None:
    """A displaCy page: entities highlighted, relations and events listed per sentence."""
    import html as h

    from spacy import displacy

    from ..core.io import atomic_write

    parts = []
    for d in docs:
        ents = [{"start": e.start, "end": e.end, "label": e.label} for e in d.entities if e.start is not None]
        parts.append(displacy.render({"text": d.text, "ents": ents, "title": f"document {d.id}"},
                                     style="ent", manual=True, page=False))
        rows = []
        for s, e in d.sentences:
            items = [f"{h.escape(r.head.text)} —{h.escape(r.label)}→ {h.escape(r.tail.text)} ({r.score:.2f})"
                     for r in d.relations if r.head.start is not None and s <= r.head.start < e]
            items += [f"[{h.escape(v.type)}] {h.escape(v.trigger.text)}: "
                      + ", ".join(f"{h.escape(x.label)}={h.escape(x.text)}" for x in v.arguments)
                      + f" ({v.score:.2f})" for v in d.events if v.trigger.start is not None and s <= v.trigger.start < e]
            if items:
                rows.append(f"<li><i>{h.escape(d.text[s:e])}</i><ul>" + "".join(f"<li>{x}</li>" for x in items)
                            + "</ul></li>")
        if rows:
            parts.append("<ul>" + "".join(rows) + "</ul>")
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>instructie</title></head>"
            "<body style='font-family:sans-serif;max-width:60em;margin:auto'>" + "\n".join(parts) + "</body></html>")
    with atomic_write(path) as f:
        f.write(page)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit("use `instructie extract`")
