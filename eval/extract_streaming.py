"""``instructie extract`` over a long input on CPU: streaming with flat memory.

Builds a tiny random T5 (a trained tokenizer, the card of an NER model), writes ``--lines`` input
lines (CoNLL2003 test sentences, repeated), runs ``instructie extract --per-line`` on them in a
subprocess and samples its resident memory (``/proc/PID/status`` VmRSS) twice a second. Reports
the lines written against the lines read, the throughput, and the resident memory at each tenth of
the run: flat memory means the input is read lazily and each chunk's documents are written and let
go. ``--max-new-tokens`` keeps a random model's answers short (the point is the stream, not the model).

    python eval/extract_streaming.py --lines 1000000 --out eval/extract_streaming.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def tiny_model(out: Path, texts: list[str]) -> None:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    from bench_extract import LABELS, save_ner_model  # eval/, beside this script
    from instructie.model.tokenizer import train_tokenizer

    tok = train_tokenizer(texts, vocab_size=2000)
    config = T5Config(vocab_size=len(tok), d_model=32, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2,
                      d_kv=16, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                      decoder_start_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    save_ner_model(T5ForConditionalGeneration(config).eval(), tok, out, max_source_length=256, max_target_length=16,
                   labels=sorted(LABELS))


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--data", default=os.environ.get("INSTRUCTIE_DATA", "../shared/data"))
    ap.add_argument("--max-new-tokens", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--chunk-size", type=int, default=1024)
    ap.add_argument("--out", default="eval/extract_streaming.json")
    a = ap.parse_args()
    path = Path(a.data) / "ie_instructions/NER/CoNLL2003/test.json"
    sents = [r["sentence"] for r in json.loads(path.read_text(encoding="utf-8")) if r["sentence"].strip()]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tiny_model(tmp / "model", sents)
        src = tmp / "input.txt"
        with src.open("w", encoding="utf-8") as f:
            for i in range(a.lines):
                f.write(sents[i % len(sents)].replace("\n", " ") + "\n")
        out = tmp / "out.jsonl"
        cmd = [sys.executable, "-m", "instructie", "extract", str(src), "--per-line", "--model", str(tmp / "model"),
               "--device", "cpu", "-o", str(out), "--max-new-tokens", str(a.max_new_tokens),
               "--batch-size", str(a.batch_size), "--chunk-size", str(a.chunk_size)]
        t0 = time.time()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        samples = []  # (seconds, rss MiB, output bytes)
        while proc.poll() is None:
            m = rss_mib(proc.pid)
            if m is not None:
                samples.append((round(time.time() - t0, 1), round(m, 1), out.stat().st_size if out.exists() else 0))
            time.sleep(0.5)
        err = proc.stderr.read()
        secs = time.time() - t0
        if proc.returncode:
            print(err[-2000:], file=sys.stderr)
            return proc.returncode
        with out.open(encoding="utf-8") as f:
            written = sum(1 for _ in f)
    total = samples[-1][2] or 1
    tenths = []
    for k in range(1, 11):  # the memory when each tenth of the output had been written
        s = next((x for x in samples if x[2] >= total * k / 10), samples[-1])
        tenths.append({"written": f"{10 * k}%", "seconds": s[0], "rss_mib": s[1]})
    report = {"command": "python eval/extract_streaming.py " + " ".join(sys.argv[1:]), "lines": a.lines,
              "written": written, "seconds": round(secs, 1), "lines_per_s": round(a.lines / secs, 1),
              "rss_mib_max": max(s[1] for s in samples), "rss_by_progress": tenths}
    Path(a.out).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=1))
    return 0 if written == a.lines else 1


if __name__ == "__main__":
    sys.exit(main())
