"""`instructie eval` on a gold file that holds a record twice: scored once and reported when the
repeat is verbatim, an error naming the line when the same record comes back with other content."""
from __future__ import annotations

import json
from pathlib import Path

from instructie.cli.main import main

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def converted(tmp_path: Path) -> list[str]:
    out = tmp_path / "gold.jsonl"
    assert main(["convert", "--dataset", "fewrel", "--input", str(FIX / "fewrel/val_wiki_excerpt.json"),
                 "--pid2name", str(FIX / "fewrel/pid2name_excerpt.json"), "-o", str(out)]) == 0
    return out.read_text(encoding="utf-8").splitlines()


def evaluate(capsys, tmp_path, gold_lines: list[str], *extra) -> tuple[int, dict | None, str, str]:
    gold = tmp_path / "gold2.jsonl"
    gold.write_text("\n".join(gold_lines) + "\n", encoding="utf-8")
    rep = tmp_path / "report.json"
    preds = tmp_path / "gold.jsonl"  # each record once: its target is the prediction
    rc = main(["eval", "--gold", str(gold), "--predictions", str(preds), "--field", "target", "--json", str(rep),
               *extra])
    out, err = capsys.readouterr()
    return rc, json.loads(rep.read_text()) if rc == 0 else None, out, err


def test_a_record_repeated_verbatim_is_scored_once_and_reported(tmp_path, capsys):
    lines = converted(tmp_path)
    capsys.readouterr()
    gold = lines[:5] + [lines[2]] + lines[5:] + [lines[0]]  # e.g. two files joined that overlap
    rc, report, out, err = evaluate(capsys, tmp_path, gold)
    assert rc == 0, err
    assert report["records"] == len(lines) == 15 and report["repeated_gold"] == 2
    scores, = report["scores"]
    assert scores["metrics"]["label_tp"] == 15  # not 17: no record counts twice
    iid = json.loads(lines[2])["instance_id"]
    assert f"2 gold record(s) repeated verbatim, scored once: line 6: {iid}; line 17:" in out


def test_a_record_repeated_with_other_content_is_an_error_naming_the_line(tmp_path, capsys):
    lines = converted(tmp_path)
    capsys.readouterr()
    other = json.loads(lines[3])
    other["text"] = other["text"] + " (edited)"
    rc, _, out, err = evaluate(capsys, tmp_path, lines + [json.dumps(other, ensure_ascii=False)])
    assert rc == 2 and "Traceback" not in err
    line, = err.strip().splitlines()
    assert line.startswith(f"instructie eval: error: {tmp_path / 'gold2.jsonl'}:16: record {other['instance_id']} "
                           "again, with other content than on line 4")
    rc, report, out, err = evaluate(capsys, tmp_path, lines + [json.dumps(other, ensure_ascii=False)],
                                    "--skip-invalid")
    assert rc == 0, err
    assert report["records"] == 15 and report["skipped_invalid"] == 1 and report["repeated_gold"] == 0
