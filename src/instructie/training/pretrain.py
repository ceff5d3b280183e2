"""T5 span-corruption pretraining on unlabeled text: ``instructie pretrain``.

config -> texts -> tokenizer (+ sentinels) -> model -> token stream -> the loop of ``train`` -> model dir.

* Texts: ``data.files`` (.txt a text per line, .jsonl with ``data.text_field``, .csv with that column; globs
  and folders allowed) and ``data.adapters`` (the ``text`` of every record a dataset adapter reads, so the
  texts of the fine-tuning data come from the same readers). Short texts are dropped, duplicates kept once.
* Tokenizer: the model's own (T5's has the sentinels ``<extra_id_0>``..``<extra_id_99>``), ``model.tokenizer``,
  or, with ``init: random`` and neither, a byte-level BPE trained on the texts. Sentinels are added as special
  tokens where missing (and the embeddings grown to hold them).
* Examples: texts are concatenated in a seeded order per epoch and cut into chunks whose corrupted input is
  exactly ``data.max_source_length`` tokens (T5's packing; ``data.pack: false`` keeps one text per example
  and splits long ones). Each chunk is corrupted as in T5 (``random_spans_noise_mask``): inputs keep the
  clean tokens with one sentinel per masked span, targets list each sentinel followed by its span, both end
  in ``</s>``. The noise is drawn from a generator seeded by (seed, epoch, example): resuming rebuilds the
  same batches.
* The loop is ``train.run_loop``: accelerate, bf16 on GPU, gradient accumulation, atomic checkpoints,
  ``--resume`` at the exact batch, a per-call ``--max-time`` budget (exit code 3), progress bar and
  ``training.png``. ``data.eval_texts`` holds texts out for a validation loss.
* Output: ``model.safetensors`` + tokenizer (with sentinels) + ``instructie.json`` with ``kind: pretrained``.
  ``instructie train`` starts from it with ``model: {name_or_path: DIR, init: pretrained}`` and uses its
  tokenizer as it is.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from .._version import __version__
from ..config import PretrainConfig, PretrainDataConfig, load_pretrain_config, pretrain_files
from ..data.sources import load_records, make_batches, round_up
from ..core.io import ConfigError, InputError, SkipCounter, _decoded_lines, iter_jsonl, read_text, write_json
from .finetune import Epoch, check_output_dir, find_resume, log, make_accelerator, plot_history, run_loop, write_run_files

__all__ = ["pretrain", "load_pretrain_config", "span_corrupt", "corrupt_array", "random_spans_noise_mask",
           "noise_counts", "corrupted_lengths", "chunk_length", "read_texts", "Texts", "Corpus", "add_sentinels",
           "sentinel_ids", "SENTINEL"]

SENTINEL = "<extra_id_{}>"
EVAL_EPOCH = 2**31 - 1  # the generator key of the held-out examples (never a training epoch)


# ---------------------------------------------------------------- span corruption (T5)
def noise_counts(length: int, density: float, mean_span: float) -> tuple[int, int]:
    """(noise tokens, noise spans) for a sequence of ``length`` tokens, as T5's ``random_spans_noise_mask``:
    round(length * density) noise tokens (at least 1, at most length - 1) in round(noise / mean_span) spans
    (at least 1; never more spans than there are noise or clean tokens)."""
    n_noise = min(max(int(round(length * density)), 1), length - 1)
    n_spans = max(int(round(n_noise / mean_span)), 1)
    return n_noise, min(n_spans, n_noise, length - n_noise)


def corrupted_lengths(length: int, density: float, mean_span: float) -> tuple[int, int]:
    """(input length, target length) after corrupting ``length`` tokens, both counting the final </s>."""
    n_noise, n_spans = noise_counts(length, density, mean_span)
    return length - n_noise + n_spans + 1, n_noise + n_spans + 1


def chunk_length(max_source_length: int, density: float, mean_span: float) -> int:
    """The longest chunk whose corrupted input fits ``max_source_length`` (T5's ``random_spans_helper``)."""
    n = max(2, max_source_length // 2)
    while corrupted_lengths(n + 1, density, mean_span)[0] <= max_source_length:
        n += 1
    while n > 2 and corrupted_lengths(n, density, mean_span)[0] > max_source_length:
        n -= 1
    return n


def _random_segmentation(n_items: int, n_segments: int, rng: np.random.Generator) -> np.ndarray:
    """Lengths of ``n_segments`` non-empty parts of ``n_items``, uniformly at random (T5's algorithm)."""
    first = np.arange(n_items - 1) < (n_segments - 1)
    rng.shuffle(first)
    segment_id = np.cumsum(np.concatenate([[False], first]))
    return np.bincount(segment_id, minlength=n_segments)


def _span_lengths(length: int, density: float, mean_span: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(clean span lengths, noise span lengths), alternating clean first (T5's draw, in T5's order)."""
    n_noise, n_spans = noise_counts(length, density, mean_span)
    noise_lengths = _random_segmentation(n_noise, n_spans, rng)
    clean_lengths = _random_segmentation(length - n_noise, n_spans, rng)
    return clean_lengths, noise_lengths


def random_spans_noise_mask(length: int, density: float, mean_span: float,
                            rng: np.random.Generator) -> np.ndarray:
    """Boolean mask, True = noise: clean and noise spans alternate, starting with clean and ending with noise,
    span lengths random (T5 ``random_spans_noise_mask``). ``length`` >= 2."""
    clean, noise = _span_lengths(length, density, mean_span, rng)
    return np.repeat(np.tile([False, True], len(clean)), np.stack([clean, noise], axis=1).reshape(-1))


def corrupt_array(tokens: np.ndarray, sentinels: np.ndarray, eos_id: int, density: float, mean_span: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``span_corrupt`` on numpy arrays (int64 in, int64 out): the data loader's fast path."""
    length = len(tokens)
    if length < 2:
        raise ValueError("span corruption needs at least 2 tokens")
    clean, noise = _span_lengths(length, density, mean_span, rng)
    n_spans = len(clean)
    if n_spans > len(sentinels):
        raise ConfigError(f"{n_spans} masked spans but only {len(sentinels)} sentinel tokens: lower "
                          "data.max_source_length or raise data.mean_span_length / data.sentinels")
    sent = sentinels[:n_spans]
    mask = np.repeat(np.tile([False, True], n_spans), np.stack([clean, noise], axis=1).reshape(-1))
    steps = np.arange(n_spans)
    # inputs: clean span k, then sentinel k; targets: sentinel k, then noise span k; both end in </s>
    inputs = np.empty(length - len(mask.nonzero()[0]) + n_spans + 1, dtype=np.int64)
    at = np.cumsum(clean) + steps
    keep = np.ones(len(inputs), dtype=bool)
    keep[at] = False
    keep[-1] = False
    inputs[at] = sent
    inputs[keep] = tokens[~mask]
    inputs[-1] = eos_id
    targets = np.empty(int(noise.sum()) + n_spans + 1, dtype=np.int64)
    at = np.cumsum(noise) - noise + steps
    keep = np.ones(len(targets), dtype=bool)
    keep[at] = False
    keep[-1] = False
    targets[at] = sent
    targets[keep] = tokens[mask]
    targets[-1] = eos_id
    return inputs, targets


def span_corrupt(tokens: Sequence[int] | np.ndarray, sentinels: Sequence[int], eos_id: int, density: float,
                 mean_span: float, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """(inputs, targets) of T5's span corruption. inputs: the clean tokens, each masked span replaced by the
    next sentinel, then </s>; targets: each sentinel followed by the tokens it replaced, then </s>."""
    inputs, targets = corrupt_array(np.asarray(tokens, dtype=np.int64), np.asarray(sentinels, dtype=np.int64),
                                    eos_id, density, mean_span, rng)
    return inputs.tolist(), targets.tolist()


def example_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The noise generator of one example: the same (seed, epoch, example) gives the same corruption."""
    return np.random.default_rng([seed % 2**63, epoch, index])


# ---------------------------------------------------------------- texts
@dataclass
class TextSource:
    name: str
    texts: list[str]
    read: int = 0  # before filtering


@dataclass
class Texts:
    texts: list[str]  # what is pretrained on, in a fixed order
    report: dict[str, Any]  # per source: read, kept, too_short, duplicates, over_max_texts
    labels: list[str]  # the adapters' label names (options), one string per distinct option list: a tokenizer
    # trained here sees them, as `train`'s does, so fine-tuning prompts tokenize as compactly


def read_texts(data: PretrainDataConfig, skip_invalid: bool = False) -> Texts:
    """The texts to pretrain on and a report per source. Bad lines raise ``InputError`` naming file and
    line (with ``skip_invalid``: counted and skipped)."""
    errors = SkipCounter(skip_invalid)
    sources: list[TextSource] = []
    labels: dict[str, None] = {}
    for i, entry in enumerate(data.files):
        for f in pretrain_files(entry, f"data.files[{i}]"):
            got = list(_read_file(f, data.text_field, errors))
            sources.append(TextSource(str(f), got, len(got)))
    for ds in data.adapters:
        recs = load_records(ds, skip_invalid)
        sources.append(TextSource(f"{ds.adapter}:{ds.path}" + (f" [{ds.split}]" if ds.split else ""),
                                  [r.text for r in recs], len(recs)))
        labels.update((" ".join(r.options), None) for r in recs if r.options)
    seen: set[str] = set()
    texts: list[str] = []
    report: dict[str, Any] = {"sources": []}
    for s in sources:
        c = Counter()
        for text in s.texts:
            text = text.strip()
            if len(text) < max(1, data.min_chars):
                c["too_short"] += 1
            elif data.dedup and text in seen:
                c["duplicates"] += 1
            elif data.max_texts is not None and len(texts) >= data.max_texts:
                c["over_max_texts"] += 1
            else:
                seen.add(text)
                texts.append(text)
                c["kept"] += 1
        report["sources"].append({"source": s.name, "read": s.read, **c})
    report["texts"] = len(texts)
    report["chars"] = sum(map(len, texts))
    if errors.count:
        report["skipped_invalid"] = errors.count
        log(errors.report())
    return Texts(texts, report, list(labels))


def _read_file(path: Path, field: str, on_error: Callable[[InputError], None]) -> Iterator[str]:
    suffix = path.suffix.lower()
    if suffix == ".txt":
        for no, line in _decoded_lines(path):
            if isinstance(line, InputError):
                on_error(line)
            else:
                yield line
    elif suffix == ".jsonl":
        for no, obj in iter_jsonl(path, on_error):
            text = obj.get(field) if isinstance(obj, dict) else None
            if not isinstance(text, str):
                on_error(InputError(path, no, f"expected a JSON object with a string field {field!r} "
                                              "(data.text_field)"))
                continue
            yield text
    elif suffix == ".csv":
        reader = csv.reader(io.StringIO(read_text(path), newline=""))
        header = next(reader, None) or []
        if field not in header:
            raise InputError(path, 1, f"no column {field!r} (data.text_field) in the header {header}")
        col = header.index(field)
        line = reader.line_num + 1
        for row in reader:
            where, line = line, reader.line_num + 1  # a quoted field may span several lines
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                on_error(InputError(path, where, f"expected {len(header)} columns, got {len(row)}"))
                continue
            yield row[col]
    else:  # pretrain_files lets no other suffix through
        raise ConfigError(f"{path}: not a .txt, .jsonl or .csv file")


# ---------------------------------------------------------------- sentinels
def sentinel_ids(tokenizer: Any, n: int) -> list[int] | None:
    """Ids of ``<extra_id_0>``..``<extra_id_{n-1}>``; None if the tokenizer lacks any of them."""
    names = [SENTINEL.format(i) for i in range(n)]
    vocab = tokenizer.get_vocab()
    if not all(s in vocab for s in names):
        return None
    return [vocab[s] for s in names]


def add_sentinels(tokenizer: Any, n: int) -> int:
    """Add the sentinels a tokenizer lacks as special tokens (not split, skipped when decoding with
    ``skip_special_tokens``; saved in tokenizer.json). Returns how many were added."""
    vocab = tokenizer.get_vocab()
    missing = [SENTINEL.format(i) for i in range(n) if SENTINEL.format(i) not in vocab]
    if not missing:
        return 0
    import inspect

    kwargs = {}
    if "replace_extra_special_tokens" in inspect.signature(tokenizer.add_special_tokens).parameters:
        kwargs["replace_extra_special_tokens"] = False  # 5.x: keep special tokens the tokenizer already has
    return tokenizer.add_special_tokens({"additional_special_tokens": missing}, **kwargs)


# ---------------------------------------------------------------- the token stream
@dataclass
class Corpus:
    """Every text's token ids (no special tokens) in one flat array; text k is ``ids[offsets[k]:offsets[k+1]]``."""
    ids: np.ndarray
    offsets: np.ndarray

    @classmethod
    def build(cls, texts: Sequence[str], tokenizer: Any, batch: int = 4096) -> "Corpus":
        parts, lengths = [], []
        for s in range(0, len(texts), batch):
            enc = tokenizer(list(texts[s : s + batch]), add_special_tokens=False, verbose=False)["input_ids"]
            for ids in enc:
                parts.append(np.asarray(ids, dtype=np.int32))
                lengths.append(len(ids))
        ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
        return cls(ids, np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def subset(self, docs: Sequence[int]) -> "Corpus":
        parts = [self.ids[self.offsets[d] : self.offsets[d + 1]] for d in docs]
        lengths = [len(p) for p in parts]
        ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
        return Corpus(ids, np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]))


def make_chunks(corpus: Corpus, chunk: int, pack: bool, rng: random.Random | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(token stream, starts, ends) of one epoch's examples. pack: the texts in ``rng``'s order (corpus
    order without one), concatenated and cut every ``chunk`` tokens; else each text alone, a long one split
    into near-equal pieces of at most ``chunk`` tokens. Pieces shorter than 2 tokens are dropped."""
    if pack:
        order = list(range(len(corpus)))
        if rng is not None:
            rng.shuffle(order)
        stream = corpus.subset(order).ids
        starts = np.arange(0, len(stream), chunk, dtype=np.int64)
        ends = np.minimum(starts + chunk, len(stream))
    else:
        stream = corpus.ids
        lengths = np.diff(corpus.offsets)
        pieces = np.maximum(1, -(-lengths // chunk))
        starts_l, ends_l = [], []
        for off, n, k in zip(corpus.offsets[:-1].tolist(), lengths.tolist(), pieces.tolist()):
            bounds = [off + (n * j) // k for j in range(k + 1)]
            starts_l += bounds[:-1]
            ends_l += bounds[1:]
        starts, ends = np.asarray(starts_l, dtype=np.int64), np.asarray(ends_l, dtype=np.int64)
    keep = ends - starts >= 2
    return stream, starts[keep], ends[keep]


def corrupted_epoch(corpus: Corpus, d: PretrainDataConfig, chunk: int, seed: int, epoch: int, batch_size: int,
                    length_grouping: bool, sentinels: list[int], eos_id: int, pad_id: int,
                    pad_multiple: int) -> Epoch:
    """One epoch of span-corruption examples for ``run_loop`` (``EVAL_EPOCH``: the fixed held-out set)."""
    order_rng = None if epoch == EVAL_EPOCH else random.Random(f"{seed}:pretrain-order:{epoch}")
    stream, starts, ends = make_chunks(corpus, chunk, d.pack, order_rng)
    sizes = (ends - starts).tolist()
    cache: dict[int, tuple[int, int]] = {}
    for n in set(sizes):
        cache[n] = corrupted_lengths(n, d.noise_density, d.mean_span_length)
    lengths = [sum(cache[n]) for n in sizes]
    batches = make_batches(lengths, batch_size, random.Random(f"{seed}:batches:{epoch}"),
                           length_grouping and not d.pack)

    sent = np.asarray(sentinels, dtype=np.int64)

    def collate_batch(idx: list[int]) -> dict[str, torch.Tensor]:
        pairs = [corrupt_array(stream[starts[i] : ends[i]].astype(np.int64), sent, eos_id, d.noise_density,
                               d.mean_span_length, example_rng(seed, epoch, i)) for i in idx]
        return pad_batch(pairs, pad_id, pad_multiple)

    return Epoch(batches, collate_batch, [cache[n][1] for n in sizes])


def pad_batch(pairs: list[tuple[np.ndarray, np.ndarray]], pad_id: int, pad_multiple: int) -> dict[str, torch.Tensor]:
    """(inputs, targets) arrays -> input_ids / attention_mask / labels (-100 past each target), padded as
    ``data.collate`` pads (to a multiple of ``pad_multiple``) but filled with numpy, not row by row in torch."""
    ls = round_up(max(len(a) for a, _ in pairs), pad_multiple)
    lt = round_up(max(len(b) for _, b in pairs), pad_multiple)
    input_ids = np.full((len(pairs), ls), pad_id, dtype=np.int64)
    attn = np.zeros((len(pairs), ls), dtype=np.int64)
    labels = np.full((len(pairs), lt), -100, dtype=np.int64)
    for r, (a, b) in enumerate(pairs):
        input_ids[r, : len(a)] = a
        attn[r, : len(a)] = 1
        labels[r, : len(b)] = b
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attn),
            "labels": torch.from_numpy(labels)}


# ---------------------------------------------------------------- the recipe
def pretrain(cfg: PretrainConfig, resume: bool = False, skip_invalid: bool = False) -> dict:
    """Pretrain (or continue pretraining) a seq2seq model with T5 span corruption; see the module docstring.
    Returns {"status": "done" | "incomplete", "step", ...}."""
    from ..model.loading import ModelSpec, load_model_and_tokenizer, resize_embeddings, save_model, train_tokenizer

    t, d = cfg.train, cfg.data
    out = Path(t.output_dir)
    check_output_dir(out, resume)
    accelerator, precision = make_accelerator(t)
    main = accelerator.is_main_process

    # 1. texts
    read = read_texts(d, skip_invalid)
    texts, data_report = read.texts, read.report
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
            from ..prompts.instructions import load_templates
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

    # 4. the loop of `train`
    model, state, stopped = run_loop(accelerator, model, t, out, total_steps, make_epoch, resume_from,
                                     on_eval=record_eval_loss if held_out else None, desc="pretrain")
    if stopped:
        return {"status": "incomplete", "step": state["step"], "total_steps": total_steps}

    # 5. the model directory
    final_loss = record_eval_loss(model, state) if held_out else None
    if main:
        save_model(accelerator.unwrap_model(model), tokenizer, out)
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
