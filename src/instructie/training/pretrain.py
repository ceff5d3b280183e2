"""T5 span-corruption pretraining on unlabeled text: ``instructie pretrain``.

Top to bottom: set up the texts, the tokenizer (+ sentinels) and model, the token stream and its epochs of
corrupted examples; train (the loop shared with ``instructie train``); save the model directory.

* Texts (data/texts.py): ``data.files`` and ``data.adapters`` (the texts of the fine-tuning data come from the
  same readers).
* Tokenizer: the model's own (T5's has the sentinels ``<extra_id_0>``..``<extra_id_99>``), ``model.tokenizer``,
  or, with ``init: random`` and neither, a byte-level BPE trained on the texts. Sentinels are added as special
  tokens where missing (and the embeddings grown to hold them).
* Examples (data/span_corruption.py): chunks of the token stream of ``data.max_source_length`` corrupted
  tokens, corrupted as T5 does, seeded per (seed, epoch, example).
* The loop (loop.py): accelerate, bf16 on GPU, gradient accumulation, atomic checkpoints, ``--resume`` at the
  exact batch, a per-call ``--max-time`` budget (exit code 3), progress bar and ``training.png``.
  ``data.eval_texts`` holds texts out for a validation loss.
* Output: ``model.safetensors`` + tokenizer (with sentinels) + ``instructie.json`` with ``kind: pretrained``.
  ``instructie train`` starts from it with ``model: {name_or_path: DIR, init: pretrained}`` and uses its
  tokenizer as it is.
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path

import torch

from .._version import __version__
from ..config import PretrainConfig
from ..core.io import ConfigError, write_json
from ..data.epochs import Epoch
from ..data.span_corruption import (EVAL_EPOCH, Corpus, add_sentinels, chunk_length, corrupted_epoch,
                                    corrupted_lengths, noise_counts, sentinel_ids)
from ..data.texts import read_texts
from ..model.loading import ModelSpec, load_model_and_tokenizer, resize_embeddings, save_model
from ..model.tokenizer import train_tokenizer
from ..prompts.instructions import load_templates
from .checkpoint import check_output_dir, find_resume, write_run_files
from .logs import log, plot_history
from .loop import make_accelerator, run_loop, trained_model


def pretrain(cfg: PretrainConfig, resume: bool = False, skip_invalid: bool = False) -> dict:
    """Pretrain (or continue pretraining) a seq2seq model with T5 span corruption; see the module docstring.
    Returns {"status": "done" | "incomplete", "step", ...}."""
    t, d = cfg.train, cfg.data
    out = Path(t.output_dir)
    check_output_dir(out, resume)
    accelerator, precision = make_accelerator(t)
    main = accelerator.is_main_process

    # 1. texts
    read = read_texts(d, skip_invalid)
    texts, data_report = read.texts, read.report
    if main and read.skipped:
        log(read.skipped)
    if main:
        for s in data_report["sources"]:
            log(f"text {s['source']}: {s['read']} read, {s.get('kept', 0)} kept"
                + "".join(f", {s[k]} {k.replace('_', ' ')}" for k in ("too_short", "duplicates", "over_max_texts")
                          if s.get(k)))
    if len(texts) < 1 + d.eval_texts:
        raise ConfigError(f"data: {len(texts)} text(s) left after filtering (data.min_chars={d.min_chars}), "
                          f"need more than data.eval_texts={d.eval_texts}")

    # 2. tokenizer (with sentinels) and model
    resume_from = find_resume(out, resume, main)
    spec = ModelSpec(**dataclasses.asdict(cfg.model))
    trained_tokenizer = False
    if resume_from is not None:
        spec.tokenizer = str(out / "tokenizer")  # the tokenizer the run started with
    elif not (spec.tokenizer or spec.name_or_path):
        # Trained once (on the main process), saved, and loaded back by every process: the model is then
        # sized for exactly the tokenizer that `train` will later load from the output directory.
        if main:
            templates = [s for v in load_templates(None).values() for s in v]  # the prompts `train` writes
            tok = train_tokenizer(texts + read.labels + templates, spec.vocab_size)
            add_sentinels(tok, d.sentinels)
            tok.save_pretrained(str(out / "tokenizer"))
        accelerator.wait_for_everyone()
        spec.tokenizer = str(out / "tokenizer")
        trained_tokenizer = True
    model, tokenizer, model_report = load_model_and_tokenizer(spec, texts)
    if trained_tokenizer:
        what = f"byte-level BPE trained on the texts, {d.sentinels} sentinels"
        model_report["summary"] = model_report["summary"].replace(f"({spec.tokenizer})", f"({what})")
        model_report["tokenizer"] = what
    added = add_sentinels(tokenizer, d.sentinels)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        resize_embeddings(model, len(tokenizer))
    sentinels = sentinel_ids(tokenizer, d.sentinels)
    assert sentinels is not None
    model_report.update(sentinels_added=added, sentinel_ids=[sentinels[0], sentinels[-1]],
                        embedding_rows=model.get_input_embeddings().num_embeddings, tokenizer_len=len(tokenizer))
    if main:
        write_run_files(out, resume_from, tokenizer, cfg, model_report)
        log(f"model: {model_report.get('summary', '')}" + (f"; added {added} sentinel tokens" if added else ""))

    # 3. the token stream, held-out texts, chunk sizes, total steps
    corpus = Corpus.build(texts, tokenizer)
    doc_order = list(range(len(corpus)))
    random.Random(f"{t.seed}:pretrain-eval").shuffle(doc_order)
    eval_docs = sorted(doc_order[: d.eval_texts])
    train_corpus = corpus.subset(sorted(doc_order[d.eval_texts :])) if eval_docs else corpus
    chunk = chunk_length(d.max_source_length, d.noise_density, d.mean_span_length)
    src_len, tgt_len = corrupted_lengths(chunk, d.noise_density, d.mean_span_length)
    if noise_counts(chunk, d.noise_density, d.mean_span_length)[1] > len(sentinels):
        raise ConfigError(f"data.max_source_length={d.max_source_length} makes "
                          f"{noise_counts(chunk, d.noise_density, d.mean_span_length)[1]} masked spans per example "
                          f"but there are {len(sentinels)} sentinels: raise data.sentinels or data.mean_span_length")
    global_bs = t.batch_size * accelerator.num_processes

    def make_epoch(epoch: int) -> Epoch:
        return corrupted_epoch(train_corpus, d, chunk, t.seed, epoch, global_bs, t.length_grouping, sentinels,
                               tokenizer.eos_token_id, tokenizer.pad_token_id, t.pad_to_multiple)

    n_examples = len(make_epoch(0).target_tokens)
    if not n_examples:
        raise ConfigError("data: the texts hold no example of 2 or more tokens")
    per_epoch = math.ceil(n_examples / global_bs / t.grad_accum)
    total_steps = t.max_steps or max(1, int(per_epoch * t.epochs))
    data_report.update(tokens=int(len(corpus.ids)), train_tokens=int(len(train_corpus.ids)),
                       eval_texts=len(eval_docs), chunk_tokens=chunk, max_source_length=src_len,
                       max_target_length=tgt_len, examples_per_epoch=n_examples, steps_per_epoch=per_epoch,
                       total_steps=total_steps)
    if main:
        before = out / "data_report.json"
        if resume_from is not None and before.exists():
            prev = json.loads(before.read_text(encoding="utf-8"))
            if (prev.get("texts"), prev.get("tokens")) != (data_report["texts"], data_report["tokens"]):
                log(f"warning: the texts changed since this run started ({prev.get('texts')} texts, "
                    f"{prev.get('tokens')} tokens then; {data_report['texts']}, {data_report['tokens']} now): "
                    "the resumed epoch's batches are not those of the interrupted one")
        write_json(before, data_report)
        log(f"{len(texts)} texts, {len(corpus.ids)} tokens -> {n_examples} examples/epoch of {chunk} tokens "
            f"(inputs {src_len}, targets {tgt_len}), {per_epoch} steps/epoch, {total_steps} steps, "
            f"precision {precision}, {accelerator.num_processes} process(es)")

    held_out = None
    if eval_docs:
        held_out = corrupted_epoch(corpus.subset(eval_docs), d, chunk, t.seed, EVAL_EPOCH, global_bs, True,
                                   sentinels, tokenizer.eos_token_id, tokenizer.pad_token_id, t.pad_to_multiple)

    def record_eval_loss(model, state: dict) -> float:
        loss = eval_loss(accelerator, model, held_out)
        state["evals"].append({"step": state["step"], "eval_loss": loss})
        if main:
            log(f"eval at step {state['step']}: eval_loss={loss:.4f}")
        return loss

    # 4. train (the loop of `instructie train`)
    model, state, stopped = run_loop(accelerator, model, t, out, total_steps, make_epoch, resume_from,
                                     on_eval=record_eval_loss if held_out else None, desc="pretrain")
    if stopped:
        return {"status": "incomplete", "step": state["step"], "total_steps": total_steps}

    # 5. the model directory
    final_loss = record_eval_loss(model, state) if held_out else None
    if main:
        save_model(trained_model(accelerator, model), tokenizer, out)
        write_json(out / "instructie.json", {
            "instructie_version": __version__,
            "kind": "pretrained",  # a base for `instructie train` (model.init: pretrained), not an extractor
            "objective": "t5_span_corruption",
            "noise_density": d.noise_density,
            "mean_span_length": d.mean_span_length,
            "max_source_length": src_len,
            "max_target_length": tgt_len,
            "sentinels": len(sentinels),
            "texts": len(texts),
            "tokens": int(len(corpus.ids)),
            "steps": state["step"],
            "pretrain_config": cfg.to_dict(),
        })
        hist = state["history"]
        write_json(out / "metrics.json", {"step": state["step"], "train_time_s": state["train_time_s"],
                                          "examples": state["examples"], "target_tokens": state["target_tokens"],
                                          "final_train_loss": hist[-1]["loss"] if hist else None,
                                          "eval_loss": final_loss, "evals": state["evals"]})
        plot_history(out, state)
        log(f"saved pretrained model to {out} (step {state['step']}, {state['train_time_s']:.0f} s of training); "
            f"fine-tune it with model: {{name_or_path: {out}, init: pretrained}}")
    accelerator.wait_for_everyone()
    return {"status": "done", "step": state["step"], "eval_loss": final_loss}


def eval_loss(accelerator, model, data: Epoch) -> float:
    """Mean per-token loss over the held-out examples (each rank scores its share of every batch)."""
    n_proc, rank = accelerator.num_processes, accelerator.process_index
    total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch_idx in data.batches:
            if len(batch_idx) < n_proc:
                continue
            batch = {k: v.to(accelerator.device) for k, v in data.collate(batch_idx[rank::n_proc]).items()}
            n_tok = (batch["labels"] != -100).sum()
            total[0] += model(**batch).loss.double() * n_tok
            total[1] += n_tok
    if n_proc > 1:
        total = accelerator.reduce(total, reduction="sum")
    model.train(was_training)
    return float(total[0] / total[1].clamp(min=1))
