"""What a newcomer reads: help on every option, no empty choice, convert saying what it merged, eval saying
a file has nothing to score, training's log naming only what was cut."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from instructie.cli.main import build_parser

from helpers import run_cli as run

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_option_of_every_subcommand_says_what_it_does():
    missing = [f"{name} {act.option_strings[0] if act.option_strings else act.dest}"
               for name, p in subcommands().items() for act in p._actions
               if not isinstance(act, argparse._HelpAction) and not (act.help or "").strip()]
    assert missing == []
    empty = [f"{name} {act.dest}" for name, p in subcommands().items() for act in p._actions
             if act.choices and any(str(c) == "" for c in act.choices)]
    assert empty == []
    help_text = subcommands()["convert"].format_help()
    assert "{train,dev,test}" in help_text and "{,train" not in help_text


def test_convert_without_split_says_what_it_merged(tmp_path, capsys):
    out = tmp_path / "all.jsonl"
    rc, _, err = run(capsys, "convert", "--dataset", "ie_instructions", "--input", FIX / "ie_instructions", "-o", out)
    assert rc == 0, err
    note = [line for line in err.splitlines() if "merged" in line]
    assert len(note) == 1 and "train" in note[0] and "dev" in note[0] and "test" in note[0] and "--split" in note[0]
    rc, _, err = run(capsys, "convert", "--dataset", "ie_instructions", "--input", FIX / "ie_instructions",
                     "--split", "test", "-o", out)
    assert rc == 0 and "merged" not in err
    with pytest.raises(SystemExit) as stop:  # an empty --split is not a choice
        run(capsys, "convert", "--dataset", "ie_instructions", "--input", FIX / "ie_instructions", "--split", "",
            "-o", out)
    assert stop.value.code == 2 and "invalid choice: ''" in capsys.readouterr().err


def test_eval_of_a_file_without_gold_labels_says_so(tmp_path, capsys):
    gold = tmp_path / "fin_test.jsonl"
    rc, _, err = run(capsys, "convert", "--dataset", "fin_negative", "--input", FIX / "fin_negative" / "Test_Data.csv",
                     "-o", gold)
    assert rc == 0, err
    rc, out, err = run(capsys, "eval", "--gold", gold, "--predictions", gold, "--field", "target")
    assert rc == 0, err
    assert "fin_negative NEG" in err and "holds no gold item" in err and "not a measurement" in err
    # a labeled file: no such note
    train = tmp_path / "fin_train.jsonl"
    assert run(capsys, "convert", "--dataset", "fin_negative", "--input", FIX / "fin_negative" / "Train_Data.csv",
               "-o", train)[0] == 0
    rc, out, err = run(capsys, "eval", "--gold", train, "--predictions", train, "--field", "target")
    assert rc == 0 and "holds no gold item" not in err


@pytest.mark.parametrize("sources, targets, expected", [
    (0, 0, ""),
    (0, 10, "epoch 3: truncated 10 targets to 64 tokens"),
    (2, 0, "epoch 3: truncated 2 sources to 448 tokens"),
    (2, 10, "epoch 3: truncated 2 sources to 448 tokens and 10 targets to 64 tokens"),
])
def test_training_log_names_only_what_was_cut(sources, targets, expected):
    from instructie.training.finetune import truncation_note

    assert truncation_note(3, sources, 448, targets, 64) == expected
