"""Files the package writes are readable as any file the user creates (the umask's mode, 0644 under umask
022), not private to the writer: a model directory on a shared machine is read by other users."""
from __future__ import annotations

import os
import stat

import pytest

from instructie.core.io import atomic_write, write_json, write_jsonl


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_respect_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    write_json(tmp_path / "metrics.json", {"f1": 1.0})
    write_jsonl(tmp_path / "out.jsonl", [{"a": 1}])
    with atomic_write(tmp_path / "page.html") as f:
        f.write("<p>")
    with atomic_write(tmp_path / "plot.png", "wb") as f:
        f.write(b"\x89PNG")
    for name in ("metrics.json", "out.jsonl", "page.html", "plot.png"):
        assert mode(tmp_path / name) == expected, name
    # the mode of a new file is also what a rewrite gives
    (tmp_path / "metrics.json").chmod(0o600)
    write_json(tmp_path / "metrics.json", {"f1": 0.5})
    assert mode(tmp_path / "metrics.json") == expected


def test_a_saved_model_directory_is_readable_by_others(tmp_path, umask, tiny_model_dir):
    from instructie.model.loading import load_trained, save_model

    umask(0o022)
    model, tok = load_trained(tiny_model_dir, device="cpu")
    out = save_model(model, tok, tmp_path / "model")
    files = [p for p in out.iterdir() if p.is_file()]
    assert any(p.name == "model.safetensors" for p in files)
    assert {p.name: mode(p) for p in files} == {p.name: 0o644 for p in files}
