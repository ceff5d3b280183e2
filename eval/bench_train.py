"""Training throughput benchmark (GPU): the instructie recipe vs. the plain recipe, one run.

For each T5 shape (random init, Flan-T5 small/base shapes), on real multi-task
instances from the shared data, it times training steps of:

* ``plain``: fp32, every batch padded to the max lengths, random order, torch's default AdamW;
* ``instructie``: bf16 autocast, length-grouped batches, padding bucketed to multiples
  of 16 (few shapes), fused AdamW -- the defaults of ``instructie train`` on a GPU;
* ``instructie+compile``: the same with ``torch.compile`` (``train.compile: true``).

and reports examples/s, target tokens/s, peak GPU memory and model-FLOPs utilisation
(useful FLOPs -- non-padding tokens only -- per second over the bf16 matmul peak
measured in the same run). Writes JSON and a Markdown table.

    python eval/bench_train.py --data DIR --out eval/bench_train.json
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch


def measure_peak_tflops(n: int = 8192, iters: int = 30) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(5):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(iters):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * iters / (time.perf_counter() - t) / 1e12


def load_instances(data: Path, n: int, seed: int = 0):
    from instructie.config import DataConfig, DatasetConfig
    from instructie.data.sources import load_sources, make_instances
    from instructie.prompts.instructions import load_templates

    dsets = [
        DatasetConfig("ie_instructions", str(data / "ie_instructions"), split="train"),
        DatasetConfig("duie", str(data / "duie/duie_train.json"), options={"schema": str(data / "duie/duie_schema.json")}),
        DatasetConfig("fin_negative", str(data / "fin_negative/Train_Data.csv")),
    ]
    dc = DataConfig(train=dsets, tasks=["NER", "RE", "EE", "NEG", "ES", "ET", "EP", "EPR", "EET", "EEA"])
    sources = load_sources(dsets)
    inst = make_instances(sources, dc, load_templates(), seed)
    random.Random(seed).shuffle(inst)
    return inst[:n], sources, dc


def bench_variant(name: str, size: str, tok, data, bs: int, steps: int, warmup: int, peak: float, *,
                  bf16: bool, grouped: bool, fixed: tuple[int, int] | None, fused: bool, compile_: bool) -> dict:
    from instructie.data.sources import collate, make_batches
    from instructie.model.loading import build_random_t5, model_flops_per_token

    torch.manual_seed(0)
    model = build_random_t5(size, ((len(tok) + 63) // 64) * 64, tok).cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused, foreach=None if fused else True)
    step_fn = model
    if compile_:
        # dynamic shapes: with per-batch padding a static compile recompiles for every new shape
        step_fn = torch.compile(model, dynamic=True)
    lengths = [len(s) + len(t) for s, t in zip(data.source_ids, data.target_ids)]
    batches = make_batches(lengths, bs, random.Random(0), grouped)
    flops = model_flops_per_token(model.config)
    torch.cuda.reset_peak_memory_stats()
    ex = tgt_tok = src_tok = 0
    useful = 0.0
    t0 = None
    k = 0
    for k in range(warmup + steps):
        b = collate(batches[k % len(batches)], data, 0, 16, *(fixed or (None, None)))
        b = {key: v.cuda(non_blocking=True) for key, v in b.items()}
        if k == warmup:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = step_fn(**b).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if k >= warmup:
            n_src = int(b["attention_mask"].sum())
            n_tgt = int((b["labels"] != -100).sum())
            ex += b["input_ids"].shape[0]
            src_tok += n_src
            tgt_tok += n_tgt
            useful += flops.train_flops(n_src, n_tgt)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    res = {"variant": name, "size": size, "batch_size": bs, "steps": steps, "seconds": round(dt, 3),
           "examples_per_s": round(ex / dt, 1), "target_tokens_per_s": round(tgt_tok / dt, 1),
           "source_tokens_per_s": round(src_tok / dt, 1),
           "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
           "model_tflops_per_s": round(useful / dt / 1e12, 2), "mfu": round(useful / dt / 1e12 / peak, 4),
           "final_loss": round(float(loss), 4)}
    del model, opt, step_fn
    torch.cuda.empty_cache()
    print(json.dumps(res), flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--sizes", nargs="+", default=["small", "base"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 128])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--max-source", type=int, default=256)
    ap.add_argument("--max-target", type=int, default=128)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--out", default="eval/bench_train.json")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False  # the plain recipe is true fp32
    from instructie.data.sources import tokenize
    from instructie.model.loading import train_tokenizer

    t = time.time()
    inst, sources, _ = load_instances(Path(a.data), 20000)
    tok = train_tokenizer([r.text for s in sources for r in s.records], 16000)
    data = tokenize(inst, tok, a.max_source, a.max_target)
    print(f"data: {len(inst)} instances, tokenizer {len(tok)}, {time.time() - t:.1f}s", flush=True)
    peak = measure_peak_tflops()
    print(f"measured bf16 matmul peak: {peak:.1f} TFLOP/s", flush=True)
    results = []
    for size in a.sizes:
        bs0 = a.batch_sizes[0]
        plans = [("plain", bs0, dict(bf16=False, grouped=False, fixed=(a.max_source, a.max_target), fused=False,
                                     compile_=False))]
        plans += [("instructie", bs, dict(bf16=True, grouped=True, fixed=None, fused=True, compile_=False))
                  for bs in a.batch_sizes]
        if not a.no_compile:
            plans.append(("instructie+compile", a.batch_sizes[-1],
                          dict(bf16=True, grouped=True, fixed=None, fused=True, compile_=True)))
        for name, bs, kw in plans:
            try:
                results.append(bench_variant(name, size, tok, data, bs, a.steps,
                                             a.warmup * (3 if kw["compile_"] else 1), peak, **kw))
            except Exception as e:  # record, don't lose the other numbers
                results.append({"variant": name, "size": size, "batch_size": bs,
                                "error": f"{type(e).__name__}: {str(e)[:300]}"})
                print(results[-1], flush=True)
    for r in results:
        base = next((x for x in results if x["variant"] == "plain" and x["size"] == r["size"]
                     and "examples_per_s" in x), None)
        if base and "examples_per_s" in r:
            r["speedup_vs_plain"] = round(r["examples_per_s"] / base["examples_per_s"], 2)
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
           "transformers": __import__("transformers").__version__, "peak_bf16_tflops": round(peak, 1),
           "max_source": a.max_source, "max_target": a.max_target, "results": results}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
