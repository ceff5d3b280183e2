"""``instructie extract``: stream documents from a file or stdin through an Extractor
into JSONL, resumable, with per-document error handling and an optional HTML view."""
from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections import Counter, deque
from dataclasses import dataclass, field
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


# Characters no tokenizer or sentence splitter should get: lone surrogates (half a character, from a
# JSON escape such as "\ud800"; they cannot even be written as UTF-8) and control characters other than
# tabs and line breaks.
_UNSAFE = re.compile("[\ud800-\udfff\x00-\x08\x0e-\x1f\x7f]")


def repair_text(text: str) -> tuple[str, int]:
    """``text`` with each lone surrogate and control character replaced by U+FFFD, and how many were.
    One character for one: offsets into the repaired text are offsets into the input."""
    return _UNSAFE.subn("\ufffd", text)


def read_documents(path: str, per_line: bool, text_field: str, errors: SkipCounter,
                   as_jsonl: bool = False, repaired: Counter | None = None) -> Iterator[tuple[str, str, int]]:
    """(id, text, line) per document: a .txt file (or stdin, ``-``) is one document, or one per
    line with ``per_line`` (id: the line number); .jsonl (or any input with ``as_jsonl``) has one
    JSON object per line with ``text_field`` (id: its ``id`` field, else the line number). ``line``: the
    input line the document starts on. Bad lines (not UTF-8, empty in .jsonl, malformed, too long) go
    to ``errors``: raised, or counted and skipped. A text (or id) with lone surrogates or control
    characters is repaired (``repair_text``; counted in ``repaired``: documents, characters), or with
    ``--skip-invalid`` skipped as invalid."""
    repaired = Counter() if repaired is None else repaired

    def clean(doc_id: str, text: str, no: int | None) -> tuple[str, str] | None:
        text, n = repair_text(text)
        doc_id, n_id = _UNSAFE.subn("\ufffd", doc_id) if _UNSAFE.search(doc_id) else (doc_id, 0)
        if n or n_id:
            if errors.skip_invalid:
                errors(InputError(name, no, f"{n + n_id} lone surrogate(s) or control character(s) in the "
                                            f"{'text' if n else 'id'}"))
                return None
            repaired["documents"] += 1
            repaired["characters"] += n + n_id
        return doc_id, text
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
        if text.strip() and (doc := clean("stdin" if is_stdin else Path(path).stem, text, None)):
            yield doc[0], doc[1], 1
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
            if doc := clean(doc_id, text, no):
                yield doc[0], doc[1], no
    finally:
        if not is_stdin:
            stream.close()


class Finished:
    """The documents an interrupted run wrote, keyed on id *and* input line, so that documents sharing
    an id are told apart; rows written without a line (an older output) are keyed on their id."""

    def __init__(self) -> None:
        self.keyed: set[tuple[str, int]] = set()
        self.ids: set[str] = set()

    def add(self, row: dict) -> None:
        line = row.get("line")
        if isinstance(line, int) and not isinstance(line, bool):
            self.keyed.add((str(row["id"]), line))
        else:
            self.ids.add(str(row["id"]))

    def __contains__(self, key: tuple[str, int]) -> bool:
        return key in self.keyed or key[0] in self.ids

    def __len__(self) -> int:
        return len(self.keyed) + len(self.ids)


def finished_documents(path: Path) -> Finished:
    """Documents already written by an interrupted run, read line by line (memory: ids and line numbers);
    a torn last line (a kill mid-write) is cut off so the file stays valid JSONL. A file that is not
    such output (any other line, or a last line that is not the start of one) is an error: --resume
    appends to it and would cut its end."""
    done = Finished()
    if not path.exists():
        return done
    keep = 0
    not_output = ("not a line of extraction output (a JSON object with an id): --resume continues only an earlier "
                  "`instructie extract` run's output file")
    with open(path, "rb") as f:
        for no, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                if not line.startswith(b'{"id": '):  # what every written line starts with
                    raise InputError(str(path), no, not_output)
                break
            keep += len(line)
            try:
                row = json.loads(line)
                done.add(row)
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
                raise InputError(str(path), no, not_output) from None
    if keep != path.stat().st_size:
        with open(path, "r+b") as f:
            f.truncate(keep)
    return done


# What a document's counters mean to a user, for the summary at the end of a run.
_STAT_NOTES = {
    "truncated_prompts": "prompt(s) cut to the model's input length (the end of their text was not read)",
    "unsupported": "item(s) naming text that is not in the document, left out (--keep-unsupported lists them)",
    "below_min_confidence": "item(s) below --min-confidence, left out",
    "below_unhinted_floor": "item(s) the memory hint did not propose below --unhinted-floor, left out",
    "windows": "extra window(s) for sentences too long for one prompt",
}


def stats_summary(totals: Counter) -> str:
    """One line of the documents' counters that are not zero (their sum over the run)."""
    parts = [f"{totals[k]} {note}" for k, note in _STAT_NOTES.items() if totals.get(k)]
    dropped = {k[len("dropped_"):]: v for k, v in sorted(totals.items()) if k.startswith("dropped_") and v}
    if dropped:
        parts.append(f"{sum(dropped.values())} unreadable answer part(s) dropped ("
                     + ", ".join(f"{k}: {v}" for k, v in dropped.items()) + ")")
    other = {k: v for k, v in sorted(totals.items()) if v and k not in _STAT_NOTES and k != "segments"
             and not k.startswith("dropped_")}
    parts += [f"{k}: {v}" for k, v in other.items()]
    return "; ".join(parts)


# Documents per generation call by default. Each call's documents are written when it ends, so the
# work an interruption loses, and the wait for the first line, is one chunk. On a GPU a chunk of 256
# short documents takes seconds and fills its batches (small chunks leave batches part-empty); on a CPU
# each prompt takes long and bigger chunks gain little (eval/cpu_extract_time.py: 30 sentences in
# chunks of 8 took about 10% longer than in one chunk), so a chunk is a few documents.
CHUNK_GPU, CHUNK_CPU = 256, 8


def run_extract(a) -> int:
    from ..inference.extractor import Extractor, Schema

    errors = SkipCounter(a.skip_invalid)
    schema = Schema.from_file(a.schema) if a.schema else None
    out_path = Path(a.output) if a.output and a.output != "-" else None
    with_spacy = _check_args(a, out_path)
    ex = Extractor.from_pretrained(a.model, device=a.device, option_order=a.option_order)
    on_cpu = str(ex.device).split(":")[0] == "cpu"
    if a.memory:
        _remember(ex, a.memory, errors)
    done = finished_documents(out_path) if out_path and a.resume else Finished()
    inputs = _Inputs(a, errors, done)
    tally = _write_rows(a, ex, schema, inputs, _Output(out_path, append=a.resume), _notes(with_spacy, on_cpu),
                        chunk_size=a.chunk_size or (CHUNK_CPU if on_cpu else CHUNK_GPU))
    if tally is None:  # the reader of stdout is gone (`... | head`): nothing left to do
        return 0
    if a.html:
        write_html(a.html, tally.html_docs, truncated=tally.docs > len(tally.html_docs))
    _summary(tally, done, inputs, errors)
    return 0


def _names(s: str | None) -> list[str] | None:
    """A comma-separated option as a list (None when not given)."""
    return [x.strip() for x in s.split(",") if x.strip()] if s is not None else None


def _check_args(a, out_path: Path | None) -> bool:
    """Refuse bad arguments before the model loads. Returns whether spaCy is installed."""
    from ..inference.segment import spacy_available

    if out_path is not None and out_path.is_dir():  # found now, not after the model has loaded
        raise ConfigError(f"-o {a.output} is a directory: give a file name (out.jsonl)")
    if a.html and Path(a.html).is_dir():  # found now, not after the whole extraction has run
        raise ConfigError(f"--html {a.html} is a directory: give a file name (page.html)")
    with_spacy = spacy_available()
    if a.html and not with_spacy:
        raise ConfigError("--html draws the page with spaCy's displaCy, which is not installed: "
                          "pip install 'instructie[spacy]'")
    if a.chunk_size is not None and a.chunk_size < 1:
        raise ConfigError(f"--chunk-size is a number of documents (at least 1), got {a.chunk_size}")
    if a.resume and out_path is None:
        raise ConfigError("--resume needs an output file (-o): there is nothing to resume on stdout")
    if a.min_confidence is not None and not 0.0 <= a.min_confidence <= 1.0:
        raise ConfigError("--min-confidence must be between 0 and 1")
    if out_path is not None and a.input != "-" and Path(a.input).resolve() == out_path.resolve():
        raise ConfigError(f"output {a.output} is the input file")
    if a.text_field != "text" and not reads_jsonl(a.input, a.jsonl):
        raise ConfigError(f"--text-field reads JSON lines: {a.input} is read as plain text (give --jsonl to read it "
                          f"as JSON lines)")
    return with_spacy


def _remember(ex, paths: list[str], errors: SkipCounter) -> None:
    """Add the records of the --memory files to the extractor's memory."""
    from ..evaluation.gold import read_gold

    for path in paths:
        n = ex.remember(rec for rec, _ in read_gold(path, errors))
        print(f"[instructie] memory: {n} records added from {path}", file=sys.stderr)


def _notes(with_spacy: bool, on_cpu: bool) -> list[str]:
    """What a user should know about how this run goes."""
    notes = []
    if not with_spacy:
        notes.append("spaCy is not installed: sentences are split by built-in rules (. ! ? 。！？ and the like; "
                     "abbreviations, initials and decimals kept whole); pip install 'instructie[spacy]' adds "
                     "spaCy's sentencizer and the --html page")
    if on_cpu:
        notes.append("extracting on the CPU: every prompt (one per sentence, task and group of labels) is "
                     "generated there, slow for any model past the quickstart's size; --tasks and --labels ask "
                     "fewer prompts, a CUDA GPU (--device cuda) answers them many times faster")
    return notes


class _Inputs:
    """The input's documents that are not done yet (--resume), read as the extractor asks for them. The
    ids and input lines of those handed over and not yet written wait in order (documents come back in
    input order); repaired texts and repeated ids are kept for the summary."""

    def __init__(self, a, errors: SkipCounter, done: Finished) -> None:
        self.a, self.errors, self.done = a, errors, done
        self.jsonl = reads_jsonl(a.input, a.jsonl)
        self.repaired: Counter = Counter()
        self.first_line: dict[str, int] = {}  # id -> the input line it was first seen on
        self.repeats: list[str] = []  # "'id' at lines 1 and 4", the first few
        self.n_repeated = 0
        self.pending_ids: deque[str] = deque()
        self.pending_lines: deque[int] = deque()

    def texts(self) -> Iterator[str]:
        a = self.a
        for doc_id, text, no in read_documents(a.input, a.per_line, a.text_field, self.errors, a.jsonl,
                                               self.repaired):
            if self.jsonl:  # ids from the input may repeat; line numbers (the other ids) do not
                self._seen(doc_id, no)
            if (doc_id, no) not in self.done:
                self.pending_ids.append(doc_id)
                self.pending_lines.append(no)
                yield text

    def ids(self) -> Iterator[str]:
        while True:
            yield self.pending_ids.popleft()

    def _seen(self, doc_id: str, no: int) -> None:
        first = self.first_line.setdefault(doc_id, no)
        if first != no:
            self.n_repeated += 1
            if len(self.repeats) < 5:
                self.repeats.append(f"{doc_id!r} at lines {first} and {no}")
            if self.n_repeated == 1:
                print(f"[instructie] {self.a.input}:{no}: id {doc_id!r} was already used at line {first}: each "
                      f"document is written with its input line ('line'), which --resume goes by", file=sys.stderr)


class _Output:
    """Where the rows go: stdout, or the -o file. The file is opened at the first finished document: a run
    that fails on its input before that leaves an earlier output untouched. A fresh run replaces it;
    --resume appends."""

    def __init__(self, path: Path | None, append: bool) -> None:
        self.path, self.append = path, append
        self.fd: int | None = None

    def open(self) -> None:
        if self.path is not None and self.fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            mode = os.O_APPEND if self.append else os.O_TRUNC
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | mode, 0o644)

    def write(self, line: str) -> None:
        if self.path is None:  # stdout may be a captured stream with no file descriptor
            sys.stdout.write(line)
            sys.stdout.flush()
        else:
            self.open()
            _write_all(self.fd, line.encode("utf-8"))

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)


@dataclass
class _Tally:
    """What a run wrote, for the summary and the --html page."""

    docs: int = 0
    sentences: int = 0
    stats: Counter = field(default_factory=Counter)  # the documents' counters, summed
    html_docs: list = field(default_factory=list)  # the first HTML_MAX_DOCS, for --html


def _write_rows(a, ex, schema, inputs: _Inputs, out: _Output, notes: list[str], chunk_size: int) -> _Tally | None:
    """Extract the input's documents and write a JSON line for each; None when the reader of stdout is gone."""
    from tqdm.auto import tqdm

    def say_notes() -> None:
        """Once extraction has started: an input that is bad from its first lines gets its one-line error alone."""
        while notes:
            tqdm.write("[instructie] " + notes.pop(0), file=sys.stderr)

    tasks = [t.upper() for t in _names(a.tasks)] if a.tasks is not None else None
    tally = _Tally()
    bar = tqdm(unit="prompt", desc="extract", disable=not sys.stderr.isatty() and not os.environ.get("INSTRUCTIE_PROGRESS"))
    try:
        for doc in ex.extract(inputs.texts(), tasks, labels=_names(a.labels), relations=_names(a.relations),
                              schema=schema, language=a.language, batch_size=a.batch_size, num_beams=a.num_beams,
                              max_new_tokens=a.max_new_tokens, min_confidence=a.min_confidence,
                              keep_unsupported=a.keep_unsupported, constrained=a.constrained, ids=inputs.ids(),
                              docs_per_chunk=chunk_size, progress=lambda n: (say_notes(), bar.update(n)),
                              hint_bias=a.hint_bias, unhinted_floor=a.unhinted_floor):
            say_notes()
            row = doc.to_dict(with_text=a.with_text)
            stats = row.pop("stats", None) or {}
            tally.stats.update({k: v for k, v in stats.items() if isinstance(v, int)})
            # id first: a resumed run recognises its own output by it (finished_documents)
            row = {"id": row.pop("id"), "line": inputs.pending_lines.popleft(), **row}
            if a.debug_stats:
                row["stats"] = stats
            try:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
            except BrokenPipeError:  # `... | head`: the reader is gone, nothing left to do
                _silence_stdout()
                return None
            tally.docs += 1
            tally.sentences += len(doc.sentences)
            bar.set_postfix_str(f"{tally.docs} document(s)")
            if a.html and len(tally.html_docs) < HTML_MAX_DOCS:
                tally.html_docs.append(doc)
        out.open()  # a finished run with no document still replaces the old output
    finally:
        bar.close()
        out.close()
    return tally


def _summary(tally: _Tally, done: Finished, inputs: _Inputs, errors: SkipCounter) -> None:
    msg = f"extracted {tally.docs} document(s), {tally.sentences} sentence(s)"
    if done:
        msg += f"; {len(done)} already done were skipped (--resume)"
    print(msg, file=sys.stderr)
    if summary := stats_summary(tally.stats):
        print(f"[instructie] {summary}", file=sys.stderr)
    if repaired := inputs.repaired:
        print(f"[instructie] repaired {repaired['documents']} document(s): {repaired['characters']} lone surrogate(s) "
              f"or control character(s) replaced by U+FFFD (--skip-invalid skips such documents instead)",
              file=sys.stderr)
    if n := inputs.n_repeated:
        print(f"[instructie] {n} document(s) reuse the id of an earlier line ("
              + "; ".join(inputs.repeats) + (", ..." if n > len(inputs.repeats) else "")
              + "): each row's 'line' tells them apart", file=sys.stderr)
    if errors.count:
        print(errors.report(), file=sys.stderr)


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


HTML_MAX_DOCS = 2000  # a page past this is too heavy for a browser; the JSONL has every document
# Light colours dark text reads on, handed to the labels in the order they first appear (displaCy's
# own palette covers spaCy's English labels only: every other label would be the same grey).
PALETTE = ("#7aecec", "#feca74", "#bfeeb7", "#ff9561", "#aa9cfc", "#ffeb80", "#c887fb", "#9cc9cc",
           "#ff8197", "#bfe1d9", "#f0d0ff", "#e4e7d2", "#c5e0ff", "#ffd3b6", "#d7f5a0", "#f5b8e0")
# Sans-serif faces of the common systems with Chinese (and Japanese) glyphs before the generic family.
FONTS = ('system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", '
         '"PingFang SC", "Hiragino Sans GB", "Microsoft YaHei", "Noto Sans CJK SC", "Source Han Sans SC", '
         '"WenQuanYi Micro Hei", sans-serif')
_CSS = f"""
body {{ font-family: {FONTS}; max-width: 60em; margin: 2em auto; padding: 0 1em; line-height: 1.5; }}
section.doc {{ border-top: 1px solid #ccc; padding: 0.5em 0 1.5em; }}
h2 {{ font-size: 1.2em; margin: 0.5em 0; }}
h3 {{ font-size: 1em; margin: 1em 0 0.3em; color: #555; }}
.nothing {{ display: inline-block; background: #f4f4f4; border: 1px dashed #999; border-radius: 0.3em;
           padding: 0.2em 0.6em; color: #444; font-style: italic; }}
.item {{ margin: 0.4em 0 0.8em; }}
.caption {{ font-size: 0.9em; color: #333; }}
.note {{ color: #666; font-size: 0.9em; }}
"""


def _palette(labels) -> dict[str, str]:
    out: dict[str, str] = {}
    for label in labels:
        key = label.upper()  # displaCy looks colours up in upper case
        if key not in out:
            out[key] = PALETTE[len(out) % len(PALETTE)]
    return out


def _marked(text: str, start: int, end: int, spans, colors: dict) -> tuple[str, list]:
    """text[start:end] drawn by displaCy with ``spans`` ((start, end, label, text), document offsets) marked;
    spans overlapping an earlier one cannot be drawn in one line of text and are returned instead.
    Labels are escaped here: displaCy escapes the text but writes labels as given."""
    import html as h

    from spacy import displacy

    kept, left = [], []
    for span in spans:
        s, e = span[0], span[1]
        if s is None or e is None or not start <= s < e <= end or any(s < ke and ks < e for ks, ke, *_ in kept):
            left.append(span)
        else:
            kept.append(span)
    ents = [{"start": s - start, "end": e - start, "label": h.escape(label)} for s, e, label, _ in sorted(kept)]
    markup = displacy.render({"text": text[start:end], "ents": ents}, style="ent", manual=True, page=False,
                             options={"colors": colors})
    return markup, left


def write_html(path: str, docs, truncated: bool = False) -> None:
    """A displaCy page per document: entities coloured by label in the text; each relation and event
    drawn on its sentence (head and tail, trigger and arguments marked with their roles); "nothing
    found" where nothing was. Every value from the input or the model is escaped."""
    import html as h

    from ..core.io import atomic_write

    labels = []
    for d in docs:
        labels += [e.label for e in d.entities]
        for r in d.relations:
            labels += ["head", "tail"] + [x.label for x in r.slots]
        for v in d.events:
            labels += [v.type] + [x.label for x in v.arguments]
    colors = {h.escape(k): v for k, v in _palette(labels).items()}

    def sentence_of(d, spans) -> tuple[int, int]:
        """The sentence holding the first located span, widened to every located span."""
        located = [(s, e) for s, e, *_ in spans if s is not None and e is not None]
        if not located:
            return 0, 0
        first = located[0][0]
        a, b = next(((s, e) for s, e in d.sentences if s <= first < e), located[0])
        return min([a] + [s for s, _ in located]), max([b] + [e for _, e in located])

    parts = []
    for d in docs:
        lang = "zh" if str(d.language).lower().startswith("zh") else "en"
        body = [f'<section class="doc" lang="{lang}"><h2>document {h.escape(str(d.id))}</h2>']
        ents = [(e.start, e.end, e.label, e.text) for e in d.entities]
        markup, left = _marked(d.text, 0, len(d.text), ents, colors)
        if not (d.entities or d.relations or d.events):
            body.append('<p class="nothing">Nothing found in this document.</p>')
        body.append(markup + _left_note(left))
        if d.relations:
            body.append("<h3>Relations</h3>")
        for r in d.relations:
            spans = [(r.head.start, r.head.end, "head", r.head.text), (r.tail.start, r.tail.end, "tail", r.tail.text)]
            spans += [(x.start, x.end, x.label, x.text) for x in r.slots]
            a, b = sentence_of(d, spans)
            markup, left = _marked(d.text, a, b, spans, colors) if b > a else ("", spans)
            caption = (f"{h.escape(r.head.text)} &rarr; <b>{h.escape(r.label)}</b> &rarr; {h.escape(r.tail.text)}"
                       f" ({r.score:.2f})")
            body.append(f'<div class="item"><div class="caption">relation: {caption}</div>{markup}'
                        + _left_note(left) + "</div>")
        if d.events:
            body.append("<h3>Events</h3>")
        for v in d.events:
            spans = [(v.trigger.start, v.trigger.end, v.type, v.trigger.text)]
            spans += [(x.start, x.end, x.label, x.text) for x in v.arguments]
            a, b = sentence_of(d, spans)
            markup, left = _marked(d.text, a, b, spans, colors) if b > a else ("", spans)
            args = ", ".join(f"{h.escape(x.label)} = {h.escape(x.text)}" for x in v.arguments) or "no arguments"
            body.append(f'<div class="item"><div class="caption">event: <b>{h.escape(v.type)}</b>, trigger '
                        f"{h.escape(v.trigger.text)}; {args} ({v.score:.2f})</div>{markup}"
                        + _left_note(left) + "</div>")
        body.append("</section>")
        parts.append("\n".join(body))
    if truncated:
        parts.append(f'<p class="note">The first {len(docs)} documents are shown; the JSONL output has them '
                     f"all.</p>")
    if not docs:
        parts.append('<p class="nothing">No document was extracted.</p>')
    page = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>instructie extraction</title>"
            f"<style>{_CSS}</style></head>\n<body>\n" + "\n".join(parts) + "\n</body></html>\n")
    with atomic_write(path) as f:
        f.write(page)


def _left_note(left) -> str:
    """The spans that could not be marked in the text, by label and text."""
    import html as h

    if not left:
        return ""
    shown = [f"{h.escape(label)}: {h.escape(text)}" + ("" if s is not None else " (not in the text)")
             for s, _, label, text in left]
    return '<div class="note">also found, not marked (overlapping another span or not in the text): ' \
        + "; ".join(shown) + "</div>"


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit("use `instructie extract`")
