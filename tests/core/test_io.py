"""Reading JSON a user hands over: a line nested too deep for the parser or holding text that is not
Unicode is one error for that line (counted and skipped with --skip-invalid), never a crash."""
from __future__ import annotations

import json

import pytest

from instructie.core.io import InputError, SkipCounter, iter_jsonl, lone_surrogate, read_json
from instructie.data_adapters import get_adapter

DEEP = 100_000


def test_a_line_nested_too_deep_is_an_error_for_that_line(tmp_path):
    p = tmp_path / "in.jsonl"
    p.write_text('{"a": 1}\n' + "[" * DEEP + "]" * DEEP + '\n{"a": 3}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"in.jsonl:2: JSON nested too deeply to read"):
        list(iter_jsonl(p))
    skip = SkipCounter(True)
    assert [no for no, _ in iter_jsonl(p, skip)] == [1, 3]
    assert skip.count == 1


def test_a_whole_json_file_nested_too_deep_is_an_error(tmp_path):
    p = tmp_path / "in.json"
    p.write_text('{"a": ' + "[" * DEEP + "]" * DEEP + "}", encoding="utf-8")
    with pytest.raises(InputError, match=r"in.json: JSON nested too deeply to read"):
        read_json(p)
    p.write_text("[" + '{"data": ' * DEEP + "1" + "}" * DEEP + "]", encoding="utf-8")
    with pytest.raises(InputError, match=r"in.json: JSON nested too deeply to read"):
        list(get_adapter("label_studio")(p))


def test_lone_surrogates_are_found_where_they_are(tmp_path):
    p = tmp_path / "in.jsonl"
    rows = ['{"text": "fine \\ud83d\\ude00 pair"}',      # a surrogate pair is one character: fine
            '{"text": "a backslash \\\\ud800 as text"}',  # an escaped backslash, then letters: fine
            '{"spo": [{"object": {"@value": "x\\udfff"}}]}',
            '{"k\\ud800": 1}']
    p.write_text("\n".join(rows) + "\n", encoding="utf-8")
    skip = SkipCounter(True)
    got = list(iter_jsonl(p, skip))
    assert [no for no, _ in got] == [1, 2] and got[0][1]["text"] == "fine \U0001F600 pair"
    assert skip.examples == [f"{p}:3: field spo[0].object.@value holds a lone surrogate \\udfff (character 2): "
                             "not valid Unicode text",
                             f"{p}:4: a key in the object holds a lone surrogate: not valid Unicode text"]
    assert lone_surrogate(json.loads('["ok", {"a": ["\\udc80"]}]')).startswith("field [1].a[0] holds")
