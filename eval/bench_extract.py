"""Extraction decoding throughput: instructie's ``generate`` against a bare batched bf16
``model.generate`` loop, in one run, on one model, over the same prompts.

The alternative is what a competent user writes in fifteen lines (``bare_loop``): tokenise the
prompts once, sort them by length, pad each batch of ``--batch-size``, ``model.generate``
(greedy, bf16 weights), ``batch_decode``. instructie's side is
``instructie.decoding.generation.generate`` -- ``static`` (the static decoder: static buffers,
CUDA graphs, continuous feeding) and ``eager`` (its ``model.generate`` path) -- which returns
answers with per-token log-probabilities. With ``--extract`` it is also the whole
``Extractor.extract`` (prompts, decoding with confidences, parsing, grounding; every default on)
against the bare loop over the prompts extract sends (recorded in an untimed pass): with random
answers (``short``, ``long``), or with each sentence's gold answer written on both sides
(``gold``: ``ForcedAnswer``), so that parsing and grounding do a trained model's work.

Models: random weights at Flan-T5 shapes (small 77M, base 248M, large 783M; vocabulary 32,128
rows) in bf16, or a trained model directory (``--model``). Random weights decode
deterministically, and the answer lengths are set by the benchmark, the same on both sides:

* ``short``: at most 3 new tokens (the work of a 2-token answer and its ``</s>``; NER answers
  to most sentences are "None" or one entity);
* ``long``: at most 49 new tokens (48 and ``</s>``): a random model writes to the limit;
* ``mixed``: a logits processor (on both sides) ends each answer after 1..48 tokens, the number
  read from its prompt: what continuous feeding is for. ``static_batchwise`` decodes the same
  prompts a batch at a time (one ``generate`` call per batch), without refills;
* ``copy``: the contiguous-copy constraint (``constrained="copy"``) on both sides, at most 49
  new tokens: what the processor costs each side.

Prompts: NER prompts (the first template, CoNLL2003's four labels) over CoNLL2003 test
sentences. Reported per variant: sentences/s, generated tokens/s (up to and with each answer's
``</s>``, or to the limit: a random model's padding and special tokens count), decoding steps and ms per step, peak GPU memory (``max_memory_allocated``,
model weights included), the time in the decoding loop (the model's work and the loop around
it) and outside it (tokenising, padding, turning ids into answers), and how many answers
equal the bare loop's. Before it is timed, each variant runs once untimed over the same
prompts (``--warmup full``: cuBLAS heuristics and allocations of every shape met stay out of
both sides' times), and the static decoder's graphs are captured (``static_decoder.warm_up``;
the time is reported), as a long extraction run pays it once.
``step_ms_graph``: one decoding step of ``--batch-size`` rows replayed as a graph (CUDA events).

    python eval/bench_extract.py --sizes small,base,large --out eval/bench_extract.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SHAPES = {  # Flan-T5's
    "tiny": dict(num_layers=2, num_decoder_layers=2, d_model=128, d_ff=256, num_heads=4, d_kv=32),
    "small": dict(num_layers=8, num_decoder_layers=8, d_model=512, d_ff=1024, num_heads=6, d_kv=64),
    "base": dict(num_layers=12, num_decoder_layers=12, d_model=768, d_ff=2048, num_heads=12, d_kv=64),
    "large": dict(num_layers=24, num_decoder_layers=24, d_model=1024, d_ff=2816, num_heads=16, d_kv=64),
}
VOCAB_ROWS = 32128
LABELS = ["person", "organization", "location", "miscellaneous"]
MODES = {"short": 3, "long": 49, "mixed": 64, "copy": 49}  # mode -> max_new_tokens


# ------------------------------------------------------------------ data, model

def load_texts(data: Path, n: int) -> list[str]:
    path = data / "ie_instructions/NER/CoNLL2003/test.json"
    texts = [r["sentence"] for r in json.loads(path.read_text(encoding="utf-8")) if r.get("sentence", "").strip()]
    if len(texts) < n:  # top up from dev
        dev = data / "ie_instructions/NER/CoNLL2003/dev.json"
        if dev.exists():
            texts += [r["sentence"] for r in json.loads(dev.read_text(encoding="utf-8")) if r.get("sentence", "").strip()]
    return texts[:n]


def ner_prompts(texts: list[str]) -> list[str]:
    from instructie.core.records import Record
    from instructie.prompts.instructions import build_source, load_templates

    tmpl = load_templates()["NER"][0]
    return [build_source(Record("", "", "NER", t, options=LABELS), tmpl, LABELS) for t in texts]


def random_model(size: str, tokenizer, device: str, dtype: torch.dtype):
    """Random weights at a Flan-T5 shape, built on the device (fast init), in ``dtype``."""
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=VOCAB_ROWS, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      decoder_start_token_id=tokenizer.pad_token_id, dropout_rate=0.0, **SHAPES[size])
    torch.manual_seed(0)
    with torch.device(device):
        model = T5ForConditionalGeneration(config)
    return model.to(dtype).eval()


def save_ner_model(model, tokenizer, path, *, max_source_length: int, max_target_length: int,
                   labels: list[str] = LABELS) -> None:
    """A model directory ``Extractor.from_pretrained`` reads: the model, its tokenizer, and the card of an NER
    model trained on CoNLL2003's four labels (asked in the order of ``labels``)."""
    from instructie.model.card import ModelCard
    from instructie.model.loading import save_model

    save_model(model, tokenizer, path)
    ModelCard(instructie_version="bench", tasks=["NER"], labels={"CoNLL2003": {"NER": list(labels)}},
              languages={"CoNLL2003": "en"}, max_source_length=max_source_length,
              max_target_length=max_target_length).save(path)


class ForcedLength:
    """Ends each answer after k tokens (1..48, read from its prompt's ids), writing ordinary
    tokens before: a logits processor that both sides run."""

    def __init__(self, ids: torch.Tensor, mask: torch.Tensor, eos: int, first_token: int):
        h = (ids * mask * torch.arange(1, ids.shape[1] + 1, device=ids.device)).sum(1)
        self.k = h % 48 + 1
        self.eos, self.first = eos, first_token

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - 1
        target = torch.where(self.k > step, self.first + step % 50, self.eos)
        out = torch.full_like(scores, torch.finfo(scores.dtype).min)
        return out.scatter(1, target[:, None], 0.0)


class ForcedAnswer:
    """Writes each prompt's gold answer (looked up by the prompt's token ids in ``answers``; a prompt
    not there is answered with ``</s>`` at once) and ``</s>``: a random model answering as a trained
    one would, so that parsing and grounding do their real work. Both sides run it; building it (a
    host copy of the group's ids) is paid by both."""

    def __init__(self, ids: torch.Tensor, mask: torch.Tensor, answers: dict, eos: int, width: int):
        target = torch.full((ids.shape[0], width), eos, dtype=torch.long)
        for i, (row, m) in enumerate(zip(ids.tolist(), mask.tolist())):
            a = answers.get(tuple(t for t, k in zip(row, m) if k), ())[: width - 1]
            target[i, : len(a)] = torch.tensor(a, dtype=torch.long)
        self.target = target.to(ids.device)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = min(input_ids.shape[1] - 1, self.target.shape[1] - 1)
        out = torch.full_like(scores, torch.finfo(scores.dtype).min)
        return out.scatter(1, self.target[:, step, None], 0.0)


def gold_answers(data: Path) -> dict[str, str]:
    """Each CoNLL2003 test/dev sentence's NER answer in the answer grammar."""
    from instructie.prompts.targets import render_items

    out = {}
    for split in ("dev", "test"):
        path = data / f"ie_instructions/NER/CoNLL2003/{split}.json"
        if path.exists():
            for r in json.loads(path.read_text(encoding="utf-8")):
                out[r.get("sentence", "")] = render_items([(e["name"], e["type"]) for e in r.get("entities", [])])
    return out


def chain(*factories):
    given = [f for f in factories if f is not None]
    if not given:
        return None
    if len(given) == 1:
        return given[0]

    def make(ids, mask):
        procs = [f(ids, mask) for f in given]

        def call(input_ids, scores):
            for p in procs:
                scores = p(input_ids, scores)
            return scores
        return call
    return make


# ------------------------------------------------------------------ measuring

def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_mib(device: str) -> float | None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return None


@torch.inference_mode()
def bare_loop(model, tokenizer, prompts: list[str], *, batch_size: int, max_new_tokens: int,
              max_source_length: int, factory=None) -> tuple[list[str], dict]:
    """The fifteen lines: tokenise once, sort by length, pad each batch, ``model.generate``,
    ``batch_decode``. Returns the answers (input order) and where the time went."""
    from transformers import LogitsProcessorList

    device = next(model.parameters()).device
    t0 = time.perf_counter()
    enc = tokenizer(prompts, truncation=True, max_length=max_source_length)["input_ids"]
    order = sorted(range(len(enc)), key=lambda i: -len(enc[i]))
    out: list = [None] * len(prompts)
    t_model = steps = 0
    gens = []
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        batch = tokenizer.pad({"input_ids": [enc[i] for i in idx]}, return_tensors="pt").to(device)
        t = time.perf_counter()
        kw = {"logits_processor": LogitsProcessorList([factory(batch["input_ids"], batch["attention_mask"])])} \
            if factory is not None else {}
        seqs = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, **kw)
        gen = seqs[:, 1:].cpu().numpy()
        t_model += time.perf_counter() - t
        steps += gen.shape[1]
        for i, text in zip(idx, tokenizer.batch_decode(gen, skip_special_tokens=True)):
            out[i] = text
        gens.append((idx, gen))
    wall = time.perf_counter() - t0
    ids = answer_ids(tokenizer, gens, len(prompts))  # for the comparison and counts: not timed
    eos = tokenizer.eos_token_id
    tokens = sum(int(np.where((g == eos).any(1), (g == eos).argmax(1) + 1, g.shape[1]).sum()) for _, g in gens)
    return ids, {"seconds": wall, "seconds_decoding": t_model, "steps": steps, "tokens": tokens}


def answer_ids(tokenizer, gens, n: int) -> list[list[int]]:
    """Each answer's token ids as ``generate`` returns them (up to ``</s>`` or padding, other
    special tokens left out)."""
    special = set(tokenizer.all_special_ids)
    stops = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    out: list = [None] * n
    for idx, gen in gens:
        for i, row in zip(idx, gen.tolist()):
            ids = []
            for t in row:
                if t in stops:
                    break
                if t not in special:
                    ids.append(t)
            out[i] = ids
    return out


@torch.inference_mode()
def instructie_generate(model, tokenizer, prompts, *, decoder: str, batch_size: int, max_new_tokens: int,
                        max_source_length: int, factory=None, batchwise: bool = False) -> tuple[list[str], dict]:
    from instructie.decoding.generation import encode_sources, generate

    stats: dict = {}
    t0 = time.perf_counter()
    if batchwise:  # one call per length-sorted batch: no refills across batches
        enc, _ = encode_sources(tokenizer, prompts, max_source_length)
        order = sorted(range(len(prompts)), key=lambda i: -len(enc[i]))
        res = [None] * len(prompts)
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            for i, g in zip(idx, generate(model, tokenizer, [prompts[i] for i in idx], batch_size=batch_size,
                                          max_source_length=max_source_length, max_new_tokens=max_new_tokens,
                                          logits_processor_factory=factory, decoder=decoder, stats=stats)):
                res[i] = g
    else:
        res = generate(model, tokenizer, prompts, batch_size=batch_size, max_source_length=max_source_length,
                       max_new_tokens=max_new_tokens, logits_processor_factory=factory, decoder=decoder, stats=stats)
    _sync(str(next(model.parameters()).device))
    wall = time.perf_counter() - t0
    tokens = stats.get("tokens", 0)
    return [g.token_ids for g in res], {"seconds": wall, "seconds_decoding": stats.get("seconds_decoding", 0.0),
                                   "steps": stats.get("steps", 0), "tokens": tokens, "decoder": stats.get("decoder"),
                                   "graphs": stats.get("graphs"), "graph_error": stats.get("graph_error")}


def summarise(name: str, answers: list[list[int]], m: dict, n: int, device: str, reference: list[str] | None) -> dict:
    secs = m["seconds"]
    row = {"variant": name, "sentences": n, "seconds": round(secs, 3),
           "sentences_per_s": round(n / secs, 1), "tokens_per_s": round(m["tokens"] / secs, 1),
           "steps": m["steps"], "ms_per_step": round(1000 * m["seconds_decoding"] / max(1, m["steps"]), 2),
           "decoding_share": round(m["seconds_decoding"] / secs, 3), "peak_mib": _peak_mib(device)}
    for k in ("graphs", "graph_error"):
        if m.get(k) is not None:
            row[k] = m[k]
    if reference is not None:
        row["same_as_bare"] = round(sum(a == b for a, b in zip(answers, reference)) / max(1, len(answers)), 4)
    return row


def step_ms_graph(model, batch_size: int, max_new_tokens: int, src_len: int, reps: int = 50) -> float | None:
    """One decoding step of ``batch_size`` rows over ``src_len`` source positions, replayed as a
    graph: median of ``reps`` event-timed replays."""
    from instructie.decoding.static_decoder import bucket, decoder_for

    if not torch.cuda.is_available():
        return None
    dec = decoder_for(model, batch_size, batch_size, src_len, max_new_tokens, True)
    S = bucket(src_len)
    g = dec._graph(("fused", S), lambda: (dec._model_step(S), dec._select(dec.raw)), S)
    if g is None:
        return None
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    dec.fin.fill_(True)
    return round(float(np.median(times)), 3)


# ------------------------------------------------------------------ Extractor.extract

def run_extract(model, tokenizer, texts, *, batch_size: int, max_new_tokens: int, device: str,
                gold: dict[str, str] | None = None, profile: Path | None = None,
                docs_per_chunk: int | None = None, repeats: int = 3) -> list[dict]:
    """``Extractor.extract`` on ``texts`` (NER, the card's labels, every default on) against the bare
    loop over the prompts extract sends to ``generate`` (recorded in an untimed pass). With ``gold``
    (sentence -> answer), both sides write each prompt's gold answer (``ForcedAnswer``): realistic
    answers, parsed and grounded. ``profile``: a cProfile of one more extract pass, written there. Each side
    is timed ``repeats`` times, alternating; the median run is reported (all times in ``seconds_each``)."""
    from instructie.decoding import generation
    from instructie.decoding.constraints import chain_factories
    from instructie.inference.extractor import Extractor

    with tempfile.TemporaryDirectory() as tmp:
        save_ner_model(model, tokenizer, tmp, max_source_length=512, max_target_length=max_new_tokens)
        ex = Extractor.from_pretrained(tmp, device=device, dtype="bfloat16" if device.startswith("cuda") else None)
    calls, stats = [], {}
    forced: dict = {}  # prompt ids -> answer ids (filled below, once the prompts are known)
    tok = ex.tokenizer
    force = (lambda ids, mask, rows=None: ForcedAnswer(ids, mask, forced, tok.eos_token_id, max_new_tokens)) \
        if gold is not None else None
    real = generation.generate

    def spy(model_, tok_, sources, **kw):
        calls.append((list(sources), [getattr(r, "text", None) for r in kw.get("rows") or [None] * len(sources)]))
        kw["logits_processor_factory"] = chain_factories(kw.get("logits_processor_factory"), force)
        kw["stats"] = stats
        return real(model_, tok_, sources, **kw)

    def run(n=None):
        kw = {"docs_per_chunk": docs_per_chunk} if docs_per_chunk else {}
        return sum(1 for _ in ex.extract(texts[:n] if n else texts, ["NER"], batch_size=batch_size, **kw))

    generation.generate = spy
    try:
        run()  # the prompts it sends
        prompts = [p for srcs, _ in calls for p in srcs]
        asked = [t for _, ts in calls for t in ts]  # the text each prompt asks about (a sentence, or a part)
        msl = ex.max_source_length
        missing = 0
        if gold is not None:
            enc, _ = generation.encode_sources(tok, prompts, msl)
            for text, ids in zip(asked, enc):
                missing += text not in gold
                forced[tuple(ids)] = tok(gold.get(text, "None"), add_special_tokens=False)["input_ids"]
        run(4 * batch_size)  # warm-up, answers as timed
        run()
        factory = (lambda ids, mask: force(ids, mask)) if force is not None else None  # noqa: E731
        bare = dict(batch_size=batch_size, max_new_tokens=max_new_tokens, max_source_length=msl, factory=factory)
        bare_loop(ex.model, tok, prompts, **bare)  # warm-up
        calls.clear()
        # the sides alternate, ``repeats`` times each: a slow spell of the machine falls on both; medians reported
        ex_runs, bare_runs, peaks = [], [], {}
        for r in range(repeats):
            stats.clear()
            _reset_peak(device)
            t0 = time.perf_counter()
            n_docs = run()
            _sync(device)
            secs = time.perf_counter() - t0
            ex_runs.append((secs, stats.get("seconds_decoding", 0.0), stats.get("tokens")))
            peaks.setdefault("extract", _peak_mib(device))
            _reset_peak(device)
            _, m = bare_loop(ex.model, tok, prompts, **bare)
            bare_runs.append((m["seconds"], m["seconds_decoding"], m["tokens"]))
            peaks.setdefault("bare", _peak_mib(device))
        if profile is not None:
            import cProfile
            import io
            import pstats
            prof = cProfile.Profile()
            prof.runcall(run)
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(40)
            profile.write_text(buf.getvalue(), encoding="utf-8")
    finally:
        generation.generate = real

    def row(variant: str, runs: list, n: int, peak) -> dict:
        secs, in_loop, tokens = sorted(runs)[len(runs) // 2]  # the median run
        return {"variant": variant, "sentences": n, "prompts": len(prompts), "answers":
                "gold (forced)" if gold is not None else f"random, <= {max_new_tokens} tokens",
                "seconds": round(secs, 3), "seconds_each": [round(x[0], 3) for x in runs],
                "sentences_per_s": round(n / secs, 1), "decoding_share": round(in_loop / secs, 3),
                "tokens": tokens, "peak_mib": peak}

    rows = [row("Extractor.extract" + (f" (docs_per_chunk={docs_per_chunk})" if docs_per_chunk else ""), ex_runs,
                n_docs, peaks.get("extract")),
            row("bare loop over extract's prompts", bare_runs, len(texts), peaks.get("bare"))]
    if missing:
        rows[0]["prompts_without_gold"] = missing
    rows[0]["vs_bare"] = round(rows[0]["sentences_per_s"] / rows[1]["sentences_per_s"], 2)
    return rows


# ------------------------------------------------------------------ main

def bench_size(size: str, args, tokenizer, texts: dict[str, list[str]], device: str) -> dict:
    from instructie.decoding.static_decoder import release
    from instructie.model.loading import load_trained

    if args.model:
        model, _ = load_trained(args.model, device=device, dtype=torch.bfloat16 if device.startswith("cuda") else None)
        model.eval()
    else:
        model = random_model(size, tokenizer, device, torch.bfloat16 if device.startswith("cuda") else torch.float32)
    params = sum(p.numel() for p in model.parameters())
    out = {"size": size, "params_m": round(params / 1e6, 1), "modes": {}}
    for mode in args.modes:
        try:
            out["modes"][mode] = bench_mode(model, tokenizer, mode, texts[mode], args, device)
        except Exception as e:  # noqa: BLE001 -- a failed mode is reported, the others still run
            import traceback
            traceback.print_exc()
            out.setdefault("errors", {})[mode] = f"{type(e).__name__}: {e}"
        print(json.dumps({size: {mode: out["modes"].get(mode)}}), flush=True)
    try:
        if device.startswith("cuda"):
            release(model)
            lens = [len(x) for x in tokenizer(ner_prompts(texts["long"]))["input_ids"]]
            out["step_ms_graph"] = {"rows": args.batch_size, "source_tokens": int(np.median(lens)),
                                    "ms": step_ms_graph(model, args.batch_size, 49, int(np.median(lens)))}
            release(model)
        for mode in args.extract:
            for chunk in args.docs_per_chunk:
                prof = Path(args.profile_dir, f"profile_{size}_{mode}{chunk or ''}.txt") if args.profile_dir else None
                key = mode + (f" docs_per_chunk={chunk}" if chunk else "")
                out.setdefault("extract", {})[key] = run_extract(
                    model, tokenizer, texts[mode], batch_size=args.batch_size, device=device, profile=prof,
                    max_new_tokens=64 if mode == "gold" else MODES[mode], gold=args.gold if mode == "gold" else None,
                    docs_per_chunk=chunk, repeats=args.repeats)
                print(json.dumps({size: {"extract " + key: out["extract"][key]}}), flush=True)
    except Exception as e:  # noqa: BLE001
        import traceback
        traceback.print_exc()
        out.setdefault("errors", {})["step/extract"] = f"{type(e).__name__}: {e}"
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return out


def bench_mode(model, tokenizer, mode: str, texts: list[str], args, device: str) -> dict:
    from instructie.decoding.constraints import make_factory
    from instructie.decoding.static_decoder import release, warm_up

    B, msl = args.batch_size, args.max_source_length
    first_token = 100
    mnt = MODES[mode]
    prompts = ner_prompts(texts)
    factory = None
    if mode == "mixed":
        factory = lambda ids, mask: ForcedLength(ids, mask, tokenizer.eos_token_id, first_token)  # noqa: E731
    elif mode == "copy":
        factory = make_factory("copy", tokenizer, model.config.vocab_size)
    kw = dict(batch_size=B, max_new_tokens=mnt, max_source_length=msl, factory=factory)
    rows = []
    # warm-up, untimed: kernels, cuBLAS handles and heuristics of each shape met, allocator growth.
    # "full": every variant once over all the prompts first (the batches' widths are the timed
    # run's); "batch": one batch only, so that a shape seen first lands in whichever runs first
    warm = prompts if args.warmup == "full" else prompts[:B]
    bare_loop(model, tokenizer, warm, **kw)
    if mode == "short":
        instructie_generate(model, tokenizer, warm, decoder="eager", **kw)
    release(model)  # the static decoder's buffers are not the bare loop's memory
    _reset_peak(device)
    ref, m = bare_loop(model, tokenizer, prompts, **kw)
    rows.append(summarise("bare model.generate loop", ref, m, len(prompts), device, None))
    if mode == "short":
        _reset_peak(device)
        txt, m = instructie_generate(model, tokenizer, prompts, decoder="eager", **kw)
        rows.append(summarise("instructie generate, eager", txt, m, len(prompts), device, ref))
    _reset_peak(device)
    t = time.perf_counter()
    graphs = warm_up(model, batch_size=B, max_new_tokens=mnt, max_source_length=msl, processors=factory is not None)
    capture = round(time.perf_counter() - t, 2)
    instructie_generate(model, tokenizer, warm, decoder="static", **kw)
    if mode == "mixed":
        instructie_generate(model, tokenizer, warm, decoder="static", batchwise=True, **kw)
    _reset_peak(device)  # from here: the decoder's buffers and graphs included
    txt, m = instructie_generate(model, tokenizer, prompts, decoder="static", **kw)
    rows.append(summarise("instructie generate, static", txt, m, len(prompts), device, ref))
    if mode == "mixed":
        _reset_peak(device)
        txt, m = instructie_generate(model, tokenizer, prompts, decoder="static", batchwise=True, **kw)
        rows.append(summarise("instructie generate, static, batch by batch", txt, m, len(prompts), device, ref))
    bare = rows[0]["sentences_per_s"]
    for r in rows:
        r["vs_bare"] = round(r["sentences_per_s"] / bare, 2)
    return {"max_new_tokens": mnt, "prompts": len(prompts), "graphs_captured": graphs,
            "capture_seconds": capture, "rows": rows}


def table(r: dict) -> str:
    lines = [f"Decoding throughput on {r['device_name']}, torch {r['torch']}, transformers {r.get('transformers')}, "
             f"batch {r['batch_size']}; NER prompts over CoNLL2003 test sentences", "",
             "| shape | answers | variant | sentences/s | tokens/s | steps | ms/step | in decoding loop | peak MiB | same as bare | vs bare |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in r["sizes"]:
        for mode, m in s["modes"].items():
            for row in m["rows"]:
                lines.append(f"| {s['size']} ({s['params_m']}M) | {mode} ({m['prompts']}, ≤{m['max_new_tokens']} new) | "
                             f"{row['variant']}{' (no CUDA graphs)' if row.get('graphs') is False else ''} | {row['sentences_per_s']} | {row['tokens_per_s']} | {row['steps']} | "
                             f"{row['ms_per_step']} | {row['decoding_share']:.0%} | {row['peak_mib']} | "
                             f"{row.get('same_as_bare', '-')} | **{row['vs_bare']}×** |")
    lines.append("")
    for s in r["sizes"]:
        for k, e in (s.get("errors") or {}).items():
            lines.append(f"- {s['size']}, {k}: failed: {e}")
        caps = ", ".join(f"{mode} {m['graphs_captured']} in {m['capture_seconds']} s" for mode, m in s["modes"].items())
        g = s.get("step_ms_graph")
        if g:
            lines.append(f"- {s['size']}: one decoding step of {g['rows']} rows over {g['source_tokens']} source "
                         f"tokens, replayed as a graph: {g['ms']} ms. Graphs captured before timing: {caps}.")
        for mode, rows in (s.get("extract") or {}).items():
            lines.append(f"- {s['size']}, {mode} answers: " + "; ".join(
                f"{x['variant']} {x['sentences_per_s']} sentences/s ({x['prompts']} prompts, {x['tokens']} tokens, "
                f"{x['decoding_share']:.0%} in the decoding loop, peak {x['peak_mib']} MiB)"
                for x in rows) + f": **{rows[0]['vs_bare']}×**")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="small,base,large", help=f"comma-separated: {', '.join(SHAPES)}")
    ap.add_argument("--model", default=None, help="a trained model directory instead of random weights (one size)")
    ap.add_argument("--modes", default="short,long,mixed,copy", help=f"comma-separated: {', '.join(MODES)}")
    ap.add_argument("--data", default=os.environ.get("INSTRUCTIE_DATA", "../shared/data"))
    ap.add_argument("--sentences", default="short=2000,long=512,mixed=1024,copy=512",
                    help="sentences per mode, e.g. short=2000,long=512")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-source-length", type=int, default=512)
    ap.add_argument("--warmup", choices=("full", "batch"), default="full",
                    help="untimed pass of each variant before timing: over all prompts (full) or one batch")
    ap.add_argument("--extract", default="", help="also time Extractor.extract against the bare loop, answers: "
                    "comma-separated short, long (random, at most 3 / 49 tokens), gold (each sentence's gold answer)")
    ap.add_argument("--docs-per-chunk", default="", help="comma-separated values of extract's docs_per_chunk to "
                    "time (default: its own)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes of each side of an --extract run")
    ap.add_argument("--profile-dir", default=None, help="a cProfile of each extract run (one more pass) written here")
    ap.add_argument("--tokenizer-vocab", type=int, default=32000, help="byte-level BPE trained on the sentences")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default="eval/bench_extract.json")
    args = ap.parse_args(argv)
    args.modes = [m for m in args.modes.split(",") if m]  # none: only --extract
    args.extract = [m for m in args.extract.split(",") if m]
    args.docs_per_chunk = [int(c) for c in args.docs_per_chunk.split(",") if c] or [None]
    bad = ([m for m in args.modes if m not in MODES] + [m for m in args.extract if m not in ("short", "long", "gold")]
           + [s for s in args.sizes.split(",") if s not in SHAPES])
    if bad:
        print(f"bench_extract: unknown mode or size: {', '.join(bad)}", file=sys.stderr)
        return 2
    counts = dict(kv.split("=") for kv in args.sentences.split(",") if kv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    n_max = max(int(v) for v in counts.values())
    all_texts = load_texts(Path(args.data), n_max)
    if not all_texts:
        print(f"bench_extract: no CoNLL2003 sentences under {args.data}", file=sys.stderr)
        return 2
    texts = {m: all_texts[: int(counts.get(m, 512))] for m in (*MODES, "gold")}
    args.gold = gold_answers(Path(args.data)) if "gold" in args.extract else None
    if args.model:
        from transformers import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        sizes = ["model"]
    else:
        from instructie.model.tokenizer import train_tokenizer
        tokenizer = train_tokenizer(all_texts + ner_prompts(all_texts[:50]), vocab_size=args.tokenizer_vocab)
        sizes = args.sizes.split(",")
    report = {"device": device, "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda")
              else platform.processor() or "cpu", "torch": torch.__version__, "batch_size": args.batch_size,
              "command": "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
              "sizes": []}
    try:
        import transformers
        report["transformers"] = transformers.__version__
    except ImportError:
        pass
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for size in sizes:
        report["sizes"].append(bench_size(size, args, tokenizer, texts, device))
        report["table"] = table(report)
        out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(report["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
