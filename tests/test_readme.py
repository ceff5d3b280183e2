"""README.md's snippets run as written, on a CPU, against the quickstart model (and eval/RESULTS.md's
generated tables are what eval/report.py writes from the run files).

Every ```bash and ```python block of the README carries a marker on the line before it:
``<!-- test: cpu -->`` (this test runs it) or ``<!-- test: skip (reason) -->`` (it needs a GPU, the shared
datasets, network access or minutes of work). A block without a marker fails the test, so a new snippet
cannot go untested by accident, and a skipped one says why where a reader sees it.

The runnable blocks run in README order in one temporary directory that holds a copy of what they read
(``configs/``, ``tests/fixtures/``) and a quickstart model trained there once by the README's own training
command, as ``runs/quickstart``, with a short schedule and answers of at most 8 tokens (a random model
writes to the limit, and extraction's limit is the model's answer length): the commands behave the same,
in a fraction of the time. Later blocks may use files earlier ones wrote, as a reader following the README
does. Bash blocks run with ``bash -e -o pipefail``; Python blocks run in one interpreter, each in a fresh
namespace (so a block cannot lean on another's names, and torch is imported once); CUDA is hidden (the CPU
set-up the README describes) and the hub offline. A block fails the test when it exits non-zero or raises,
and every file a runnable command names as its output (``-o``, ``--html``, ``--predictions``,
``--gold-out``) must exist and not be empty afterwards. The set-up block is not run (it installs
packages); instead its commands are checked against the ones ``.ci/run`` runs.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = re.compile(r"^<!-- test: (cpu|skip \(.+\)) -->$")
FENCE = re.compile(r"^```(bash|python)\n(.*?)^```$", re.S | re.M)
OUTPUT_FLAGS = ("-o", "--output", "--html", "--predictions", "--gold-out")


def readme_blocks() -> list[dict]:
    """Each bash/python block: language, code, first line number, marker ("cpu", "skip (...)" or None)."""
    text = README.read_text(encoding="utf-8")
    blocks = []
    for m in FENCE.finditer(text):
        before = [line for line in text[: m.start()].splitlines() if line.strip()]
        marker = MARKER.match(before[-1]) if before else None
        blocks.append({"lang": m.group(1), "code": m.group(2), "line": text[: m.start()].count("\n") + 1,
                       "marker": marker.group(1) if marker else None})
    return blocks


def _env() -> dict:
    env = dict(os.environ)
    scripts = {sysconfig.get_path("scripts"), str(Path(sys.executable).parent)}
    env["PATH"] = os.pathsep.join([*scripts, env.get("PATH", "")])
    env.update(CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUTF8="1")
    return env


def _run(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, encoding="utf-8", timeout=900)


def _outputs(code: str) -> list[str]:
    """The files the commands of a bash block name as their outputs."""
    words = shlex.split(code.replace("\\\n", " "), comments=True)
    return [words[i + 1] for i, w in enumerate(words[:-1]) if w in OUTPUT_FLAGS and words[i + 1] != "-"]


def test_every_readme_block_says_whether_it_runs():
    blocks = readme_blocks()
    assert sum(b["marker"] == "cpu" for b in blocks) >= 5, "the README's runnable snippets were not found"
    unmarked = [b["line"] for b in blocks if b["marker"] is None]
    assert not unmarked, (f"README.md: the blocks at lines {unmarked} need '<!-- test: cpu -->' or "
                          "'<!-- test: skip (reason) -->' on the line before them")


def test_readme_setup_is_what_ci_runs():
    setup = readme_blocks()[0]
    lines = [line.strip() for line in setup["code"].splitlines() if line.strip()]
    first = [part.strip() for part in lines[0].split("&&")]
    # .ci/run spells them "python3 -m pip install -q ..." and "python3 -m pytest -q"
    ci = [line.split("#")[0].strip().replace("python3 -m pip", "pip").replace("python3", "python")
          for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines() if line.startswith("python3 -m")]
    installs = [re.sub(r"\s+-q\b", "", c) for c in ci if c.startswith("pip install")]
    assert installs and first[: len(installs)] == installs, (first, ci)
    assert first[len(installs):] == ["instructie train --config configs/quickstart.yaml"], first
    assert lines[1] == "python -m pytest -q" and lines[1] in ci, (lines, ci)


@pytest.fixture(scope="module")
def readme_dir(tmp_path_factory) -> Path:
    """A directory with the README's inputs and a briefly trained quickstart model in runs/quickstart."""
    d = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "configs", d / "configs")
    shutil.copytree(ROOT / "tests" / "fixtures", d / "tests" / "fixtures")
    r = _run(["instructie", "train", "--config", "configs/quickstart.yaml", "--set", "train.max_steps=2",
              "--set", "data.max_target_length=8", "--set", "data.eval=[]", "--set", "data.test=[]"], d, _env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (d / "runs" / "quickstart" / "instructie.json").is_file()
    return d


# Runs the Python blocks given as a JSON list on stdin, each in a fresh namespace; the first that raises
# ends the run with its traceback and exit code 1, after a line naming it.
PYTHON_RUNNER = """
import json, sys, traceback
for i, code in enumerate(json.load(sys.stdin)):
    try:
        exec(compile(code, f"<README python block {i}>", "exec"), {"__name__": "__main__"})
    except BaseException:
        print(f"@@ python block {i} raised", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
    print(f"@@ python block {i} ok", file=sys.stderr, flush=True)
"""


def test_readme_snippets_run_on_cpu(readme_dir):
    env = _env()
    blocks = [b for b in readme_blocks() if b["marker"] == "cpu"]
    assert len(blocks) >= 5
    for b in blocks:
        if b["lang"] != "bash":
            continue
        r = _run(["bash", "-e", "-o", "pipefail", "-c", b["code"]], readme_dir, env)
        where = f"README.md line {b['line']} (bash block)"
        assert r.returncode == 0, (f"{where} failed with exit code {r.returncode}:\n{b['code']}\n--- output ---\n"
                                   f"{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
        for name in _outputs(b["code"]):
            out = readme_dir / name
            assert out.is_file() and out.stat().st_size > 0, f"{where}: {name} was not written"
    python = [b for b in blocks if b["lang"] == "python"]
    r = subprocess.run([sys.executable, "-c", PYTHON_RUNNER], input=json.dumps([b["code"] for b in python]),
                       cwd=readme_dir, env=env, capture_output=True, text=True, encoding="utf-8", timeout=900)
    failed = re.search(r"@@ python block (\d+) raised", r.stderr)
    where = f"README.md line {python[int(failed.group(1))]['line']} (python block)" if failed else "README python blocks"
    assert r.returncode == 0, f"{where} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    assert r.stderr.count("@@ python block") == len(python) and " ok" in r.stderr


def test_results_tables_are_the_ones_report_py_writes():
    """eval/RESULTS.md says its marked tables are generated from the run files: they must still be."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("eval_report", ROOT / "eval" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    text = report.RESULTS.read_text(encoding="utf-8")
    assert sorted(re.findall(r"^<!-- generated: (\S+) -->$", text, re.M)) == sorted(report.SECTIONS)
    assert report.render(text) == text, "eval/RESULTS.md's tables are out of date: run python eval/report.py"
