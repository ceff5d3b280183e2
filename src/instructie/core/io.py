"""Reading and writing files: clear errors that name file and line, atomic writes."""
from __future__ import annotations

import contextlib
import csv
import functools
import gzip
import io
import json
import os
import re
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")


class InputError(Exception):
    """Bad user input: names the file and the line/record, and what was wrong."""

    def __init__(self, path: str | os.PathLike | None, where: str | int | None, problem: str):
        self.path, self.where, self.problem = (str(path) if path else None), where, problem
        loc = self.path or "<input>"
        if where is not None:
            loc += f":{where}" if isinstance(where, int) else f" ({where})"
        super().__init__(f"{loc}: {problem}")


class ConfigError(Exception):
    """A bad configuration, reported before any work starts."""


class TrainingError(RuntimeError):
    """A run that cannot go on (loss went NaN, GPU out of memory): one line for the user, naming the last
    checkpoint to ``--resume`` from once the config is changed. Finished checkpoints are kept."""


class SkipCounter:
    """With ``skip_invalid`` errors are counted (and the first few kept for the report);
    without it the first error is raised."""

    def __init__(self, skip_invalid: bool = False, keep: int = 20):
        self.skip_invalid, self.keep = skip_invalid, keep
        self.count = 0
        self.examples: list[str] = []

    def __call__(self, err: InputError) -> None:
        if not self.skip_invalid:
            raise err
        self.count += 1
        if len(self.examples) < self.keep:
            self.examples.append(str(err))

    def report(self) -> str:
        if not self.count:
            return ""
        lines = [f"skipped {self.count} invalid record(s):"] + ["  " + e for e in self.examples]
        if self.count > len(self.examples):
            lines.append(f"  ... and {self.count - len(self.examples)} more")
        return "\n".join(lines)


def csv_reader(path: str | os.PathLike):
    """A ``csv.reader`` over the file's text (``read_text``), without the csv module's field size limit
    (131,072 characters): a long text is data, not an error."""
    limit = sys.maxsize  # the limit is a C long: sys.maxsize is too large for it where a long has 32 bits
    while True:
        try:
            csv.field_size_limit(limit)
            break
        except OverflowError:
            limit //= 2
    return csv.reader(io.StringIO(read_text(path), newline=""))


def read_text(path: str | os.PathLike) -> str:
    """The whole file as UTF-8 text (a BOM is dropped); a clear error otherwise."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, None, "file not found")
    if p.is_dir():
        raise InputError(p, None, "is a directory, expected a file")
    data = p.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise InputError(p, line, f"not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})") from None


def _decoded_lines(path: str | os.PathLike) -> Iterator[tuple[int, str | InputError]]:
    """(line number, text or the decoding error) per non-blank line, streaming; a ``.gz``
    file is read through gzip (runs keep their prediction files compressed). Errors are
    yielded, not raised, so a caller may report one bad line and go on (a generator that
    raises is finished: every later line would be lost) -- except a broken gzip stream,
    after which no line can be read."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, None, "file not found")
    if p.is_dir():
        raise InputError(p, None, "is a directory, expected a file")
    no = 0
    with (gzip.open if p.suffix == ".gz" else open)(p, "rb") as f:
        try:
            for no, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8-sig" if no == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    yield no, InputError(p, no, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})")
                    continue
                if line.strip():
                    yield no, line.rstrip("\r\n")
        except (gzip.BadGzipFile, zlib.error, EOFError) as e:  # not gzip data, corrupt, or cut short
            raise InputError(p, no + 1, f"not a readable gzip file: {e}") from None


def iter_jsonl(path: str | os.PathLike, on_error: Callable[[InputError], None] | None = None) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) per line of a JSON-lines file; a bad line (bytes or
    JSON) goes to ``on_error`` (default: raise) and reading goes on with the next."""
    on_error = on_error or SkipCounter(False)
    for no, line in _decoded_lines(path):
        if isinstance(line, InputError):
            on_error(line)
            continue
        if no == 1 and line.lstrip().startswith("["):  # a whole file of one array: no line of it would do
            raise InputError(path, 1, "a JSON array, not JSON lines (one object per line)")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            on_error(InputError(path, no, f"malformed JSON: {e.msg} (column {e.colno})"))
            continue
        except RecursionError:
            on_error(InputError(path, no, TOO_DEEP))
            continue
        # Only a \uD800-\uDFFF escape can put a lone surrogate in a string (the bytes were strict UTF-8); such a
        # text cannot be written out again or tokenized, so the line is reported here, not at the write.
        if _SURROGATE_ESCAPE.search(line) and (where := lone_surrogate(obj)):
            on_error(InputError(path, no, where))
            continue
        yield no, obj


TOO_DEEP = "JSON nested too deeply to read"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate(obj: Any) -> str | None:
    """Where a string in ``obj`` (parsed JSON) holds a lone surrogate (``"\\ud800"`` in JSON is valid syntax
    but no Unicode text: it cannot be encoded as UTF-8), as a message naming the field; None when none does.
    Iterative: parsed JSON may be nested nearly as deep as the recursion limit."""
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        where, x = stack.pop()
        if isinstance(x, str):
            m = _SURROGATE.search(x)
            if m:
                return (f"{'field ' + where if where else 'the value'} holds a lone surrogate "
                        f"\\u{ord(m.group()):04x} (character {m.start() + 1}): not valid Unicode text")
        elif isinstance(x, dict):
            for k, v in reversed(list(x.items())):
                if _SURROGATE.search(k):
                    return (f"a key in {'field ' + where if where else 'the object'} holds a lone surrogate: "
                            "not valid Unicode text")
                stack.append((f"{where}.{k}" if where else k, v))
        elif isinstance(x, list):
            stack.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(x))))
    return None


def read_yaml(path: str | os.PathLike, what: str = "file") -> Any:
    """A YAML (or JSON) file's content; ConfigError naming the file when missing or invalid."""
    import yaml

    p = Path(path)
    try:
        with open(p, encoding="utf-8") as f:  # a stream with a name: YAML errors say the file, not "<unicode string>"
            return yaml.load(f, Loader=_unique_key_loader())
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(f"{p}: {what} not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: {what} is not UTF-8 text") from None
    except _DuplicateKey as e:
        raise ConfigError(f"{p}:{e.line}: {e.problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None


class _DuplicateKey(Exception):
    def __init__(self, line: int, problem: str):
        super().__init__(problem)
        self.line, self.problem = line, problem


@functools.cache
def _unique_key_loader():
    """PyYAML's SafeLoader, except that a key given twice in one mapping is an error: YAML keeps the
    last silently, so a second ``train:`` block would drop the whole first one. Keys a merge (``<<``)
    brings in may still be overridden: that is what a merge is for."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen: dict = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    line = key_node.start_mark.line + 1
                    try:
                        if key in seen:
                            raise _DuplicateKey(line, f"key {key!r} is given twice in one mapping (first on line "
                                                      f"{seen[key]}); YAML would keep only the last")
                        seen[key] = line
                    except TypeError:  # an unhashable key: SafeLoader's own error says so
                        continue
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def read_json(path: str | os.PathLike) -> Any:
    text = read_text(path)
    return parse_json(text, path)


def parse_json(text: str, path: str | os.PathLike) -> Any:
    """A whole file's JSON text parsed; InputError naming ``path`` (and the line) when malformed."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(path, e.lineno, f"malformed JSON: {e.msg} (column {e.colno})") from None
    except RecursionError:
        raise InputError(path, None, TOO_DEEP) from None


def usual_mode() -> int:
    """The mode ``open()`` gives a new file: 0666 less the umask (0644 under umask 022)."""
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Write to a temporary file beside ``path`` and rename it into place on success,
    so a crash never leaves a half-written output. A write the OS refuses (a full disk) is an
    InputError naming ``path`` and the reason; temporaries of earlier writes to ``path`` whose
    process was killed are removed first (``remove_stale_temporaries``)."""
    p = Path(path)
    if p.is_dir():
        raise InputError(p, None, "output is a directory, expected a file name")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(p)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.{os.getpid()}.", suffix=".tmp")
    except OSError as e:
        raise InputError(p, None, f"cannot write output: {e.strerror or e}") from None
    try:
        f = os.fdopen(fd, mode, encoding=None if "b" in mode else encoding)
        try:
            os.fchmod(f.fileno(), usual_mode())  # mkstemp makes it 0600: give it what open() would
            yield _Output(f, p)
        except BaseException:
            with contextlib.suppress(OSError):  # the rest of the buffer cannot be written either
                f.close()
            raise
        try:
            f.flush()
            os.fsync(f.fileno())
            f.close()
            os.replace(tmp, p)
        except OSError as e:
            with contextlib.suppress(OSError):
                f.close()
            raise _cannot_write(p, e) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _cannot_write(p: Path, e: OSError) -> InputError:
    return InputError(p, None, f"cannot write output: {e.strerror or e}")


class _Output:
    """``atomic_write``'s temporary file: a failed write (a full disk, a lost mount) is an InputError
    naming the output, not an OSError from a file the user never named."""

    def __init__(self, f, path: Path):
        self._f, self._path = f, path

    def write(self, data):
        try:
            return self._f.write(data)
        except OSError as e:
            raise _cannot_write(self._path, e) from None

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as e:
            raise _cannot_write(self._path, e) from None

    def __getattr__(self, name):
        return getattr(self._f, name)


STALE_TEMPORARY_S = 10.0


def remove_stale_temporaries(p: Path) -> list[Path]:
    """Remove (and return) the temporaries that killed writes to ``p`` left beside it: files named as
    ``atomic_write`` names them for ``p`` (``.NAME.PID.XXXXXXXX.tmp``) whose writer process is gone and that
    nothing modified for ``STALE_TEMPORARY_S`` seconds. A running writer's file stays: its pid is alive here,
    and the age guard keeps the file of a writer on another machine sharing the folder (where the pid means
    nothing) while it is written. Files of other names, or beside other targets, are never touched."""
    if os.name != "posix":  # the pid check below is a POSIX signal 0
        return []
    pattern = re.compile(re.escape(f".{p.name}.") + r"(\d+)\.[a-z0-9_]{8}\.tmp")
    removed = []
    try:
        names = os.listdir(p.parent)
    except OSError:
        return []
    for name in names:
        m = pattern.fullmatch(name)
        if not m or _running(int(m.group(1))):
            continue
        q = p.parent / name
        try:
            if time.time() - q.stat().st_mtime >= STALE_TEMPORARY_S:
                q.unlink()
                removed.append(q)
        except OSError:  # gone meanwhile, or not ours to remove
            continue
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # alive under another user, or no pid at all: leave the file
        return True
    return True


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> int:
    """One JSON object per line, written atomically; the number of lines."""
    n = 0
    with atomic_write(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_write(path) as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")
