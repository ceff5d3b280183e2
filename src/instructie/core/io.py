"""Reading and writing files: clear errors that name file and line, atomic writes."""
from __future__ import annotations

import contextlib
import gzip
import json
import os
import tempfile
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
        yield no, obj


def read_yaml(path: str | os.PathLike, what: str = "file") -> Any:
    """A YAML (or JSON) file's content; ConfigError naming the file when missing or invalid."""
    import yaml

    p = Path(path)
    try:
        with open(p, encoding="utf-8") as f:  # a stream with a name: YAML errors say the file, not "<unicode string>"
            return yaml.safe_load(f)
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(f"{p}: {what} not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: {what} is not UTF-8 text") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None


def read_json(path: str | os.PathLike) -> Any:
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(path, e.lineno, f"malformed JSON: {e.msg} (column {e.colno})") from None


def usual_mode() -> int:
    """The mode ``open()`` gives a new file: 0666 less the umask (0644 under umask 022)."""
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Write to a temporary file beside ``path`` and rename it into place on success,
    so a crash never leaves a half-written output."""
    p = Path(path)
    if p.is_dir():
        raise InputError(p, None, "output is a directory, expected a file name")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    except OSError as e:
        raise InputError(p, None, f"cannot write output: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            os.fchmod(f.fileno(), usual_mode())  # mkstemp makes it 0600: give it what open() would
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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
