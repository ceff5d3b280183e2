"""Extraction's planning (sentence splitting, token budgets, prompts: ``Extractor._plan``) on CPU, with token
counts measured once per sentence in batched tokenizer calls (``inference.predict.TokenCounts``, today's) against
one tokenizer call each time planning asks for a length (what it did before), in one run over the same sentences.

    python eval/bench_plan.py --sentences 1000 --repeats 5
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench_extract import load_texts, ner_prompts, random_model, save_ner_model  # eval/, beside this script


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    from instructie.inference import extractor as extractor_module
    from instructie.inference.extractor import Extractor, Schema
    from instructie.inference.predict import TokenCounts
    from instructie.model.tokenizer import train_tokenizer

    class OneCallEach(TokenCounts):
        """A tokenizer call every time a length is asked: nothing primed, nothing kept."""

        def prime(self, texts) -> None:
            pass

        def __call__(self, text: str) -> int:
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    texts = load_texts(Path(a.data), a.sentences)
    tok = train_tokenizer(texts + ner_prompts(texts[:50]), vocab_size=32000)
    with tempfile.TemporaryDirectory() as tmp:
        save_ner_model(random_model("tiny", tok, "cpu", torch.float32), tok, tmp, max_source_length=512,
                       max_target_length=16)
        ex = Extractor.from_pretrained(tmp, device="cpu")
    chunk = [(str(i), t) for i, t in enumerate(texts)]
    ex._plan(chunk[:50], ["NER"], Schema(), None)  # the sentence splitter's start-up, untimed
    times: dict[str, list[float]] = {"batched, each sentence once": [], "one call per length asked": []}
    prompts = {}
    for _ in range(a.repeats):  # the variants alternate
        for name, counts in (("batched, each sentence once", TokenCounts), ("one call per length asked", OneCallEach)):
            extractor_module.TokenCounts = counts
            try:
                t = time.perf_counter()
                _, _, planned = ex._plan(chunk, ["NER"], Schema(), None)
                times[name].append(time.perf_counter() - t)
            finally:
                extractor_module.TokenCounts = TokenCounts
            prompts[name] = [p.source for _, _, p in planned]
    same = len({tuple(v) for v in prompts.values()}) == 1
    print(f"planning {len(texts)} CoNLL2003 sentences ({len(prompts[next(iter(prompts))])} prompts), "
          f"{a.repeats} passes each, median seconds; the same prompts: {same}")
    for name, ts in times.items():
        print(f"  {name}: {statistics.median(ts):.3f} s (min {min(ts):.3f}, max {max(ts):.3f})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
