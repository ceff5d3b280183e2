"""Do a few hundred fine-tuning steps tell the characters a Flan-T5-like vocabulary extension adds apart?

Two starts for the rows of the added characters, each trained the same way (same data, order and seed):

* ``hf``: what a resize gives without ``embeddings.init_new_rows`` -- the first added characters take the
  checkpoint's never-trained spare rows, the rest transformers' mean resizing (mean and covariance x 1e-9:
  all nearly the same vector);
* ``init``: ``init_new_rows`` -- a kept character ('，') starts as its normalised form's rows (','), every
  other new row is drawn from the existing rows' mean and spread.

Model: the Flan-T5 stand-in of tests/flan_t5_standin.py (a tiny untied T5, d_model 128), extended for the
quickstart data (tests/fixtures: CoNLL2003, DuEE, DuIE, financial NEG); AdamW at each --lr, constant, batch 8,
sources cut at 128 tokens.
Reported per start and step: the mean pairwise distance among the rows of the new CJK characters a resize
places (past the checkpoint's table) over that among existing rows, for the input embedding and the output
layer (1.0: as spread as the model's own tokens); the mean distance between a kept character's output row and
its ASCII twin's; and, teacher-forced on training answers holding kept characters, how often the model scores the
kept character above its ASCII twin where the answer has it (``kept_over_twin``).

    python eval/experiments/new_rows.py [--steps 300] [--lr 5e-5 1e-3] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

import torch  # noqa: E402

from instructie.config import load_config  # noqa: E402
from instructie.data.sources import collate, load_sources, make_instances, tokenize, training_texts  # noqa: E402
from instructie.model.loading import (ModelSpec, _load_pretrained_model, load_model_and_tokenizer,  # noqa: E402
                                      load_tokenizer, resize_embeddings)
from instructie.model.tokenizer import new_row_sources  # noqa: E402
from instructie.prompts.instructions import load_templates  # noqa: E402


def _spread(w: torch.Tensor, ids: list[int], ref: list[int]) -> float:
    return float(torch.cdist(w[ids], w[ids]).mean() / torch.cdist(w[ref], w[ref]).mean())


def measure(model, tok, han: list[int], ref: list[int], kept: dict[int, int], batch) -> dict:
    emb, head = model.get_input_embeddings().weight.detach(), model.get_output_embeddings().weight.detach()
    out = {"cjk_spread_input": round(_spread(emb, han, ref), 4), "cjk_spread_output": round(_spread(head, han, ref), 4),
           "kept_vs_twin_distance_output": round(float(torch.stack(
               [(head[k] - head[a]).norm() for k, a in kept.items()]).mean()), 4)}
    model.eval()
    with torch.no_grad():
        logits = model(**batch).logits
    model.train()
    labels = batch["labels"]
    want = torch.zeros_like(labels, dtype=torch.bool)
    for k in kept:
        want |= labels == k
    pred = logits.argmax(-1)
    # among positions holding a kept character: the model's pick between that character and its ASCII twin
    k_logit = logits.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    twin = labels.clone()
    for k, a in kept.items():
        twin[labels == k] = a
    a_logit = logits.gather(-1, twin.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    n = int(want.sum())
    out["kept_positions"] = n
    out["kept_over_twin"] = round(float((k_logit > a_logit)[want].float().mean()) if n else float("nan"), 4)
    out["kept_argmax_exact"] = round(float((pred == labels)[want].float().mean()) if n else float("nan"), 4)
    return out


def main(argv: list[str] | None = None) -> int:
    import importlib.util  # the stand-in's builder lives with the tests that use it

    spec = importlib.util.spec_from_file_location("flan_t5_standin", ROOT / "tests" / "flan_t5_standin.py")
    standin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(standin)
    build_standin = standin.build_standin

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--lr", type=float, nargs="+", default=[5e-5, 1e-3])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-source-length", type=int, default=128)
    ap.add_argument("--json")
    a = ap.parse_args(argv)

    t0 = time.time()
    torch.set_num_threads(1)  # a tiny model: more threads only contend
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    for ds in cfg.data.train:
        ds.path = str(ROOT / ds.path)
        ds.options = {k: str(ROOT / v) if isinstance(v, str) and v.startswith("tests/") else v
                      for k, v in ds.options.items()}
    templates = load_templates(cfg.data.templates)
    sources = load_sources(cfg.data.train)
    texts = list(training_texts(sources, templates))
    standin = build_standin(Path(tempfile.mkdtemp()) / "standin")
    spec = ModelSpec(name_or_path=str(standin), init="pretrained")
    tok, report = load_tokenizer(spec, texts)
    base = report["base_tokenizer_len"]
    han = [i for i in range(base, len(tok)) if "\u4e00" <= tok.convert_ids_to_tokens(i) <= "\u9fff"]
    ref = list(range(3, min(base - 100, 1000)))  # ordinary pieces of the checkpoint
    sources_of = new_row_sources(tok, base)
    kept = {tok.convert_tokens_to_ids(c): sources_of[tok.convert_tokens_to_ids(c)][0] for c in report["kept_chars"]
            if len(sources_of.get(tok.convert_tokens_to_ids(c), [])) == 1}
    rows = json.loads((standin / "config.json").read_text())["vocab_size"]
    resized = [i for i in han if i >= rows]  # past the checkpoint's table: where a resize puts them
    print(f"stand-in {base} tokens in {rows} rows -> {len(tok)} tokens; {len(han)} CJK rows ({len(resized)} past the "
          f"checkpoint's table), kept characters {''.join(report['kept_chars'])} ({len(kept)} with a one-token "
          f"ASCII twin)", flush=True)

    insts = make_instances(sources, cfg.data, templates, seed=0)
    data = tokenize(insts, tok, a.max_source_length, 64)
    order = list(range(len(data.source_ids)))
    with_kept = [i for i in order if any(t in kept for t in data.target_ids[i])]
    eval_batch = collate(with_kept[:32], data, tok.pad_token_id, 8)

    results = {}
    for lr in a.lr:
        for start in ("hf", "init"):
            torch.manual_seed(0)
            if start == "init":
                model, _, _ = load_model_and_tokenizer(spec, texts)
            else:  # the resize alone, as before init_new_rows
                model = _load_pretrained_model(str(standin))
                if len(tok) > model.get_input_embeddings().num_embeddings:
                    resize_embeddings(model, len(tok))
            model.train()
            opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
            curve = {0: measure(model, tok, resized, ref, kept, eval_batch)}
            print(f"lr {lr:g} {start:<4} step    0: {json.dumps(curve[0])}", flush=True)
            rng = random.Random(0)
            for step in range(1, a.steps + 1):
                idx = rng.sample(order, a.batch_size)
                loss = model(**collate(idx, data, tok.pad_token_id, 8)).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                if step % a.every == 0 or step == a.steps:
                    curve[step] = {**measure(model, tok, resized, ref, kept, eval_batch),
                                   "loss": round(loss.item(), 4)}
                    print(f"lr {lr:g} {start:<4} step {step:>4}: {json.dumps(curve[step])} "
                          f"({time.time() - t0:.0f} s)", flush=True)
            results[f"lr={lr:g} {start}"] = curve
    out = {"steps": a.steps, "lrs": a.lr, "base_tokenizer_len": base, "tokenizer_len": len(tok),
           "cjk_rows": len(han), "cjk_rows_past_the_table": len(resized), "kept": {tok.convert_ids_to_tokens(k): tok.convert_ids_to_tokens(v)
                                          for k, v in kept.items()},
           "results": results, "seconds": round(time.time() - t0, 1)}
    if a.json:
        Path(a.json).write_text(json.dumps(out, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"{out['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
