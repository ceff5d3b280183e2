"""CPU load and extraction time of a model on 30 English sentences (the CoNLL2003 fixture sentences, one
document each), as `instructie extract` runs them: the model's default tasks and labels, then NER only.
Prints one JSON object; the machine's load average is in it, since a shared machine's numbers depend on it.

    python eval/cpu_extract_time.py MODEL_DIR [--chunk-size N ...]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sentences(n: int = 30) -> list[str]:
    out = []
    for split in ("test", "dev", "train"):
        data = json.loads((ROOT / "tests/fixtures/ie_instructions/NER/CoNLL2003" / f"{split}.json").read_text())
        out += [r["sentence"] for r in data]
    return out[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--chunk-size", type=int, nargs="+", default=[8])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    a = ap.parse_args()
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    from instructie.inference.extractor import Extractor

    texts = sentences()
    report = {"sentences": len(texts), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "load_average_before": os.getloadavg()}
    t = time.perf_counter()
    ex = Extractor.from_pretrained(a.model, device="cpu")
    report["load_s"] = round(time.perf_counter() - t, 2)
    runs = []
    for tasks in (None, ["NER"]):
        for chunk in a.chunk_size:
            prompts = []
            t = time.perf_counter()
            docs = list(ex.extract(texts, tasks, docs_per_chunk=chunk, progress=prompts.append))
            runs.append({"tasks": tasks or ex.default_tasks(), "chunk_size": chunk,
                         "seconds": round(time.perf_counter() - t, 2), "prompts": sum(prompts),
                         "items": sum(len(d.entities) + len(d.relations) + len(d.events) for d in docs)})
    report["runs"] = runs
    report["load_average_after"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
