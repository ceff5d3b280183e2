"""Training throughput at Flan-T5 shapes (GPU): HF Seq2SeqTrainer as InstructUIE configures it, instructie as it
trains without packing, and instructie on packed rows (compiled, with the memory options), one process per variant.

Two steps. ``prepare`` (CPU, where the data is): build one training epoch of a config's instances exactly as
``instructie train`` does (same sources, prompts, sampling, max lengths; a tokenizer trained on the texts) and
keep a seeded subset of their token ids in a small .npz. ``run`` (on the GPU, from the .npz): for each
(size, variant) a fresh process builds a random-weight model of that shape (Flan-T5's 32,128-row vocabulary; the
small recipe's own), trains ``--warmup`` steps, then times ``--steps`` steps, and reports examples/s, useful
(non-padding) source+target tokens/s, useful TFLOP/s (6 x matmul parameters per token, as
``model.loading.model_flops_per_token``; attention scores and padding not counted), MFU against the bf16 matmul
peak measured in the same run, peak memory, and the compile time (the first step's time, compile included).

    python eval/bench_train.py prepare --config configs/flan-t5-base.yaml --out .devdata/bench_flan.npz
    python eval/bench_train.py run --tokens .devdata/bench_flan.npz --sizes base large --out $OUT/bench.json

Variants (all bf16, dropout 0.1 as Flan-T5's config, grad-norm clipping 1.0, AdamW lr 5e-5 constant):
* ``hf``: ``Seq2SeqTrainer`` (bf16 autocast, group_by_length, its default fused AdamW), batches padded to their
  longest example (InstructUIE's collator);
* ``main``: instructie without packing: length-grouped batches padded to multiples of 16, bf16 autocast, fused
  AdamW, not compiled (``train.compile`` recompiles per padded shape);
* ``packed``: packed rows (``train.packing``), compiled block by block, bf16 autocast, fused AdamW;
* ``packed-bf16w``: the same with bf16 weights and Kahan-compensated AdamW (``train.bf16_weights``);
* ``packed-bf16w-ckpt``: and gradient checkpointing (``train.gradient_checkpointing``);
* ``main-adafactor``, ``packed-adafactor``: the random-init recipe's optimizer (``optimizer: adafactor``, lr 5e-3)
  instead of AdamW; ``packed-hfadafactor``: transformers' Adafactor, which it computes the same updates as;
  ``packed-bf16w-adafactor``, ``packed-bf16w-ckpt-adafactor``: bf16 weights with the Kahan-compensated Adafactor
  (~6 bytes per weight against KahanAdamW's 14), without and with checkpointing.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# Flan-T5 shapes (gated-GELU feed-forward, untied head); "small" is the random-init recipe's (model.loading.SIZES)
SHAPES = {
    "small": dict(num_layers=8, num_decoder_layers=8, d_model=512, d_ff=1024, num_heads=6, d_kv=64),
    "base": dict(num_layers=12, num_decoder_layers=12, d_model=768, d_ff=2048, num_heads=12, d_kv=64),
    "large": dict(num_layers=24, num_decoder_layers=24, d_model=1024, d_ff=2816, num_heads=16, d_kv=64),
    "xl": dict(num_layers=24, num_decoder_layers=24, d_model=2048, d_ff=5120, num_heads=32, d_kv=64),
    "tiny": dict(num_layers=2, num_decoder_layers=2, d_model=64, d_ff=128, num_heads=2, d_kv=32),  # a CPU smoke run
}
FLAN_VOCAB = 32128
DEVICE = "cuda"  # "cpu" (``variant --device cpu``): a smoke run of the code path, timings meaningless
VARIANTS = ("hf", "main", "packed", "packed-bf16w", "packed-bf16w-ckpt", "main-adafactor", "packed-adafactor",
            "packed-hfadafactor", "packed-bf16w-adafactor", "packed-bf16w-ckpt-adafactor")


# ---------------------------------------------------------------- prepare (CPU)
def prepare(a) -> None:
    from instructie.config import load_config
    from instructie.data.sources import build_epoch, load_sources, training_texts
    from instructie.hints.memory import training_memory
    from instructie.model.loading import ModelSpec, load_tokenizer
    from instructie.prompts.instructions import load_templates

    cfg = load_config(a.config, a.set or [])
    templates = load_templates(cfg.data.templates)
    sources = load_sources(cfg.data.train)
    spec = ModelSpec(init="random", vocab_size=cfg.model.vocab_size)  # a trained tokenizer: no weights needed
    tok, _ = load_tokenizer(spec, list(training_texts(sources, templates)))
    fold_memory, _ = training_memory(sources, cfg.hints)
    epoch = build_epoch(sources, cfg.data, templates, cfg.train.seed, 0, fold_memory, tok)
    keep = random.Random(0).sample(range(len(epoch.source_ids)), min(a.n, len(epoch.source_ids)))
    src = [np.asarray(epoch.source_ids[i]) for i in keep]
    tgt = [np.asarray(epoch.target_ids[i]) for i in keep]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(a.out, src=np.concatenate(src).astype(np.int32), tgt=np.concatenate(tgt).astype(np.int32),
                        src_len=np.array([len(s) for s in src]), tgt_len=np.array([len(t) for t in tgt]),
                        meta=json.dumps({"config": a.config, "instances_in_epoch": len(epoch.source_ids),
                                         "vocab": len(tok), "max_source": cfg.data.max_source_length,
                                         "max_target": cfg.data.max_target_length,
                                         "copy_head": cfg.model.copy_head}))
    sl, tl = np.array([len(s) for s in src]), np.array([len(t) for t in tgt])
    print(f"{len(keep)} of {len(epoch.source_ids)} instances; source mean {sl.mean():.1f} (max {sl.max()}), "
          f"target mean {tl.mean():.1f} (max {tl.max()}); vocab {len(tok)}")


def load_tokens(path: str):
    z = np.load(path)
    meta = json.loads(str(z["meta"]))
    so = np.concatenate([[0], np.cumsum(z["src_len"])])
    to = np.concatenate([[0], np.cumsum(z["tgt_len"])])
    flat_src, flat_tgt = z["src"].astype(np.int64), z["tgt"].astype(np.int64)  # each z[...] decompresses anew
    src = [flat_src[so[i] : so[i + 1]] for i in range(len(so) - 1)]
    tgt = [flat_tgt[to[i] : to[i + 1]] for i in range(len(to) - 1)]
    return src, tgt, meta


# ---------------------------------------------------------------- one variant (GPU, its own process)
def sync(reset: bool = False) -> int:
    """Wait for the GPU; the peak memory so far (0 on CPU)."""
    import torch
    if DEVICE != "cuda":
        return 0
    torch.cuda.synchronize()
    if reset:
        torch.cuda.reset_peak_memory_stats()
    return torch.cuda.max_memory_allocated()


def measure_peak_tflops(n: int = 8192, iters: int = 50) -> float:
    import torch
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(iters):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * iters / (time.perf_counter() - t) / 1e12


def build_model(size: str, copy_head: bool, vocab: int):
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    from instructie.model.copy_head import CopyT5ForConditionalGeneration
    from instructie.model.embeddings import pin_untied_head

    config = T5Config(vocab_size=vocab, feed_forward_proj="gated-gelu", dropout_rate=0.1,
                      tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
                      **SHAPES[size])
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = (CopyT5ForConditionalGeneration if copy_head else T5ForConditionalGeneration)(config)
    if model.get_output_embeddings().weight is model.get_input_embeddings().weight:
        model.set_output_embeddings(torch.nn.Linear(config.d_model, vocab, bias=False, device=DEVICE))
    pin_untied_head(model)
    return model.train()


def run_variant(a) -> dict:
    from instructie.model.loading import model_flops_per_token

    src, tgt, meta = load_tokens(a.tokens)
    copy_head = meta["copy_head"]
    res = {"size": a.size, "variant": a.variant, "batch": a.batch, "copy_head": copy_head}
    if a.variant.startswith("packed"):
        res["attention"] = a.attention
    model = build_model(a.size, copy_head, meta["vocab"] if a.size == "small" else FLAN_VOCAB)
    flops = model_flops_per_token(model.config)
    res["params_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 1)
    sync(reset=True)
    steps = a.warmup + a.steps
    if a.variant == "hf":
        times, counts = run_hf(model, src, tgt, a.batch, steps)
    else:
        times, counts = run_instructie(model, src, tgt, meta, a, steps)
    sync()
    timed = slice(a.warmup, steps)
    dt = times[steps] - times[a.warmup]
    ex = sum(c[0] for c in counts[timed])
    n_src = sum(c[1] for c in counts[timed])
    n_tgt = sum(c[2] for c in counts[timed])
    useful = flops.train_flops(n_src, n_tgt) / dt / 1e12
    res.update(examples_per_s=round(ex / dt, 1), useful_tokens_per_s=round((n_src + n_tgt) / dt),
               examples_per_step=round(ex / a.steps, 1), step_ms=round(1000 * dt / a.steps, 1),
               useful_tflops=round(useful, 1), mfu=round(useful / a.peak, 4),
               padding=round(1 - (n_src + n_tgt) / sum(c[3] for c in counts[timed]), 3),
               first_step_s=round(times[1] - times[0], 1), peak_mem_gib=round(sync() / 2**30, 1))
    return res


def run_hf(model, src, tgt, batch: int, steps: int):
    """Seq2SeqTrainer as InstructUIE runs it: bf16, group_by_length, lr 5e-5 constant, no warmup."""
    import tempfile

    import torch
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback

    data = [{"input_ids": s.tolist(), "labels": t.tolist()} for s, t in zip(src, tgt)]
    counts = []

    def collate(rows):  # InstructUIE's collator: pad to the longest in the batch, labels with -100
        ls, lt = max(len(r["input_ids"]) for r in rows), max(len(r["labels"]) for r in rows)
        ids = torch.zeros(len(rows), ls, dtype=torch.long)
        mask = torch.zeros(len(rows), ls, dtype=torch.long)
        labels = torch.full((len(rows), lt), -100, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
            mask[i, : len(r["input_ids"])] = 1
            labels[i, : len(r["labels"])] = torch.tensor(r["labels"])
        counts.append((len(rows), int(mask.sum()), int((labels != -100).sum()), ls * len(rows) + lt * len(rows)))
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    times = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if not times:
                sync()
                times.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            sync()
            times.append(time.perf_counter())

    import dataclasses
    # grouped by length: `group_by_length=True` until transformers 5.2x, `train_sampling_strategy` since
    fields = {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments)}
    grouped = ({"train_sampling_strategy": "group_by_length"} if "train_sampling_strategy" in fields
               else {"group_by_length": True})
    with tempfile.TemporaryDirectory() as tmp:
        args = Seq2SeqTrainingArguments(output_dir=tmp, per_device_train_batch_size=batch, bf16=True,
                                        learning_rate=5e-5, lr_scheduler_type="constant", warmup_steps=0,
                                        max_steps=steps, logging_steps=10**6, save_strategy="no", report_to=[],
                                        dataloader_num_workers=0, seed=0, use_cpu=DEVICE != "cuda", **grouped)
        trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=data, data_collator=collate,
                                 callbacks=[Clock()])
        trainer.train()
    return times, counts


def run_instructie(model, src, tgt, meta, a, steps: int):
    """The step ``instructie train`` takes (training/loop.py train_batch) on its batches."""
    import torch

    from instructie.config import TrainConfig
    from instructie.data.packing import collate_packed, pack_rows
    from instructie.data.sources import Tokenized, collate, make_batches
    from instructie.training.loop import training_model
    from instructie.training.optim import build_optimizer

    packed = a.variant.startswith("packed")
    t = TrainConfig(lr=5e-5, schedule="constant", warmup_steps=0, packing=packed, compile=packed,
                    bf16_weights="bf16w" in a.variant, gradient_checkpointing="ckpt" in a.variant,
                    attention=a.attention)
    if "adafactor" in a.variant:
        t.optimizer, t.lr = "adafactor", 5e-3
    model = training_model(model, t)
    if a.variant.endswith("hfadafactor"):
        from transformers.optimization import Adafactor
        opt = Adafactor(model.parameters(), lr=t.lr, scale_parameter=True, relative_step=False, warmup_init=False)
    else:
        opt = build_optimizer(model, t)
    rng = random.Random(0)
    if packed:
        S, T = a.pack_source or meta["max_source"], a.pack_target or meta["max_target"]
        rows = pack_rows([len(s) for s in src], [len(x) for x in tgt], S, T, rng)
        batches = [rows[i : i + a.batch] for i in range(0, len(rows) - a.batch + 1, a.batch)]
        make = lambda b: collate_packed(b, src, tgt, S, T, 0, 0)  # noqa: E731
        count = lambda b, x: (sum(map(len, b)), int((x["source_segments"] > 0).sum()),  # noqa: E731
                              int((x["labels"] != -100).sum()), len(b) * (S + T))
    else:
        tok = Tokenized(src, tgt, 0, 0)
        batches = make_batches([len(s) + len(x) for s, x in zip(src, tgt)], a.batch, rng, True)
        batches = [b for b in batches if len(b) == a.batch]
        make = lambda b: collate(b, tok, 0, 16)  # noqa: E731
        count = lambda b, x: (len(b), int(x["attention_mask"].sum()), int((x["labels"] != -100).sum()),  # noqa: E731
                              x["input_ids"].numel() + x["labels"].numel())
    autocast = torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=not t.bf16_weights)
    times, counts = [], []
    sync()
    times.append(time.perf_counter())
    for k in range(steps):
        b = batches[k % len(batches)]
        x = make(b)
        counts.append(count(b, x))
        x = {key: v.to(DEVICE, non_blocking=True) for key, v in x.items()}
        with autocast:
            loss = model(**x, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync() if k < a.warmup or k == steps - 1 else None
        times.append(time.perf_counter())
    if not torch.isfinite(loss):
        raise RuntimeError(f"loss {float(loss)}")
    if a.profile:  # two more steps under the profiler: where a step's GPU time goes
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for k in range(2):
                x = {key: v.to(DEVICE, non_blocking=True) for key, v in make(batches[k]).items()}
                with autocast:
                    model(**x, use_cache=False).loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
            sync()
        Path(a.profile).write_text(prof.key_averages().table(sort_by="cuda_time_total", row_limit=40))
    return times, counts


# ---------------------------------------------------------------- the plan (one process per variant)
def run_all(a) -> None:
    import torch

    peak = measure_peak_tflops()
    print(f"{torch.cuda.get_device_name()}: bf16 matmul peak {peak:.0f} TFLOP/s", flush=True)
    results = []
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
           "transformers": __import__("transformers").__version__, "peak_bf16_tflops": round(peak, 1),
           "tokens": a.tokens, "steps": a.steps, "warmup": a.warmup, "results": results}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    for item in a.plan:
        size, variant, batch, *attention = item.split(":")
        left = a.budget - (time.time() - start)
        if left < 30:
            results.append({"size": size, "variant": variant, "batch": int(batch), "error": "not run (time budget)"})
            continue
        cmd = [sys.executable, __file__, "variant", "--tokens", a.tokens, "--size", size, "--variant", variant,
               "--batch", batch, "--steps", str(a.steps), "--warmup", str(a.warmup), "--peak", str(peak),
               "--attention", attention[0] if attention else a.attention]
        if a.pack_source:
            cmd += ["--pack-source", str(a.pack_source), "--pack-target", str(a.pack_target)]
        t0 = time.time()
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=min(a.timeout, left))
            line = next((x for x in reversed(r.stdout.splitlines()) if x.startswith("{")), None)
            res = json.loads(line) if line else {"size": size, "variant": variant, "batch": int(batch),
                                                   "error": (r.stderr.strip().splitlines() or ["?"])[-1][:300]}
            if r.returncode and a.log_dir:  # keep the failing process's output
                Path(a.log_dir, f"{size}_{variant}_{batch}.log").write_text(r.stdout + r.stderr)
        except subprocess.TimeoutExpired:
            res = {"size": size, "variant": variant, "batch": int(batch), "error": "timed out"}
        res["process_s"] = round(time.time() - t0, 1)
        results.append(res)
        print(json.dumps(res), flush=True)
        Path(a.out).write_text(json.dumps(out, indent=2))
    Path(a.out).write_text(json.dumps(out, indent=2))
    print(table(out))


def join(out_path: str, parts: list[str]) -> None:
    """One file from several ``run`` outputs of one machine, all of one setup: their results in order, each with
    the bf16 peak measured by its own run, against which its MFU was computed."""
    runs = [json.loads(Path(p).read_text(encoding="utf-8")) for p in parts]
    setup = ("device", "torch", "transformers", "tokens", "steps", "warmup")
    for key in setup:
        if len({json.dumps(r[key]) for r in runs}) > 1:
            sys.exit(f"bench_train.py join: the files differ in {key!r}; only runs of one setup join")
    out = {key: runs[0][key] for key in setup}
    out["peak_bf16_tflops"] = [r["peak_bf16_tflops"] for r in runs]
    out["results"] = [dict(res, peak_bf16_tflops=r["peak_bf16_tflops"]) for r in runs for res in r["results"]]
    Path(out_path).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(table(out))


def table(out: dict) -> str:
    lines = ["| size | variant | batch | examples/step | examples/s | useful tokens/s | useful TFLOP/s | MFU | padding "
             "| peak GiB | first step s | vs hf |", "|" + "---|" * 12]
    for r in out["results"]:
        if "error" in r:
            lines.append(f"| {r['size']} | {r['variant']} | {r['batch']} | {r['error'][:80]} |" + " |" * 8)
            continue
        hf = next((x for x in out["results"] if x["size"] == r["size"] and x["variant"] == "hf"
                   and "examples_per_s" in x), None)
        ratio = f"{r['examples_per_s'] / hf['examples_per_s']:.2f}x" if hf else ""
        name = r["variant"] + (f" ({r['attention']})" if "attention" in r else "")
        lines.append(f"| {r['size']} | {name} | {r['batch']} | {r['examples_per_step']} | {r['examples_per_s']} "
                     f"| {r['useful_tokens_per_s']} | {r['useful_tflops']} | {r['mfu']:.1%} | {r['padding']:.0%} "
                     f"| {r['peak_mem_gib']} | {r['first_step_s']} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--config", required=True)
    p.add_argument("--set", action="append")
    p.add_argument("--n", type=int, default=12000)
    p.add_argument("--out", required=True)
    for name in ("run", "variant"):
        p = sub.add_parser(name)
        p.add_argument("--tokens", required=True)
        p.add_argument("--steps", type=int, default=12)
        p.add_argument("--warmup", type=int, default=3)
        p.add_argument("--attention", default="sdpa")
        p.add_argument("--pack-source", type=int)
        p.add_argument("--pack-target", type=int)
    run = sub.choices["run"]
    run.add_argument("--plan", nargs="+", required=True, help="size:variant:batch[:attention] ...")
    run.add_argument("--timeout", type=int, default=240, help="seconds per variant")
    run.add_argument("--budget", type=float, default=1e9, help="seconds for the whole plan: later variants are skipped")
    run.add_argument("--log-dir", help="where a failing variant's output is kept")
    run.add_argument("--out", required=True)
    j = sub.add_parser("join", help="one file from several run outputs of one machine")
    j.add_argument("out")
    j.add_argument("parts", nargs="+")
    var = sub.choices["variant"]
    var.add_argument("--size", required=True, choices=SHAPES)
    var.add_argument("--variant", required=True, choices=VARIANTS)
    var.add_argument("--batch", type=int, required=True)
    var.add_argument("--peak", type=float, required=True)
    var.add_argument("--device", default="cuda")
    var.add_argument("--profile", help="a profile of two more steps written here (instructie variants)")
    a = ap.parse_args()
    global DEVICE
    DEVICE = getattr(a, "device", DEVICE)
    if a.cmd == "prepare":
        prepare(a)
    elif a.cmd == "join":
        join(a.out, a.parts)
    elif a.cmd == "run":
        run_all(a)
    else:
        try:
            print(json.dumps(run_variant(a)), flush=True)
        except Exception as e:  # one line for the table (out of memory, above all)
            import torch
            oom = isinstance(e, torch.cuda.OutOfMemoryError)
            print(json.dumps({"size": a.size, "variant": a.variant, "batch": a.batch,
                              "error": "out of memory" if oom else f"{type(e).__name__}: {str(e)[:240]}"}), flush=True)
            sys.exit(0 if oom else 1)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
