"""Model and tokenizer: load a pretrained seq2seq model, or build a random-init T5 (with a tokenizer
trained on the training texts; tokenizers and their vocabulary extension are in tokenizer.py), save/load
trained models, count parameters and FLOPs.

transformers 5.x details this module works around (checked in the 5.24 source; 5.17 checked by tests run
on the GPU image):

* ``T5Config.__post_init__`` forces ``tie_word_embeddings=True`` and turns the flag the caller passed into
  ``scale_decoder_outputs`` (``False`` -> T5 v1.1/Flan-T5 style, no ``d_model**-0.5`` scaling). A freshly
  built ``T5ForConditionalGeneration`` therefore *ties* ``lm_head`` to ``shared`` (std 1.0) with no output
  scaling: initial logits have std ~sqrt(d_model) and the loss starts near 100. We untie and re-init.
* ``PreTrainedModel.tie_weights()`` (called by ``resize_token_embeddings``) re-ties ``lm_head`` to ``shared``
  whenever ``config.tie_word_embeddings`` is true -- which it always is for a loaded T5 -- silently throwing
  away Flan-T5's separately trained output layer. ``_pin_untied_head`` sets the flag to ``False`` on the
  live config whenever the head is a separate tensor, so later ``tie_weights()`` calls leave it alone.
* ``from_pretrained`` of a checkpoint holding both ``shared.weight`` and a different ``lm_head.weight`` does
  not tie them but logs a warning that we silence (we check the outcome ourselves).
* ``save_pretrained`` always writes safetensors (the ``safe_serialization`` argument is gone).
* The same flag also ties the encoder's and decoder's input embeddings to ``shared``: a T5 built from a config
  whose flag is ``False`` (the copy head put around a loaded model) had three separate tables, trained apart,
  and a reload re-tied the decoder's to ``shared`` (its trained values lost). ``share_input_embeddings``
  makes the encoder and decoder read ``shared``, as T5 always does.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from ..core.io import ConfigError, usual_mode
from .embeddings import init_new_rows, pin_untied_head, share_input_embeddings
from .hub import hub_error, is_local
from .tokenizer import load_tokenizer, new_row_sources, quiet_length_warning

VOCAB_MULTIPLE = 64  # model embedding rows are padded to this (GPU-friendly matmuls; Flan-T5 has 32128 rows)

# Flan-T5 shapes (gated-GELU FFN, untied head, no output scaling). "tiny" is for tests and CPU quickstarts.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(num_layers=2, num_decoder_layers=2, d_model=128, d_ff=256, num_heads=4, d_kv=32),
    "small": dict(num_layers=8, num_decoder_layers=8, d_model=512, d_ff=1024, num_heads=6, d_kv=64),
    "base": dict(num_layers=12, num_decoder_layers=12, d_model=768, d_ff=2048, num_heads=12, d_kv=64),
}


def scales_decoder_output(config) -> bool:
    """Whether T5 scales the decoder's output by d_model**-0.5 before lm_head: transformers 5 names it
    ``scale_decoder_outputs``; earlier versions scaled whenever the head was tied to the embeddings."""
    scale = getattr(config, "scale_decoder_outputs", None)
    return bool(config.tie_word_embeddings if scale is None else scale)


@dataclass
class ModelSpec:
    name_or_path: str | None = None  # hub id (google/flan-t5-base) or local dir; required for "pretrained"
    init: str = "pretrained"  # "pretrained" | "random"
    size: str = "small"  # random init only: "tiny" | "small" | "base"
    tokenizer: str | None = None  # tokenizer dir/hub id; None: the model's (pretrained) or trained (random)
    vocab_size: int = 16000  # for a tokenizer trained from the texts
    extend_vocab: bool = True  # add characters the tokenizer maps to <unk> or rewrites (needs train_texts)
    copy_head: bool = False  # add a pointer-generator copy head (copy_head.py); kept when the model has one


# ---------------------------------------------------------------------------------------------- loading
def load_model_and_tokenizer(spec: ModelSpec, train_texts: Iterable[str] | None = None
                             ) -> tuple[nn.Module, Any, dict[str, Any]]:
    """(model, tokenizer, report). The model is fp32 on CPU in train mode.

    pretrained: ``name_or_path`` (local dir or hub id) with its tokenizer (or ``spec.tokenizer``).
    random: a T5 of ``spec.size``; tokenizer ``spec.tokenizer``, else ``name_or_path``'s, else one trained
    on ``train_texts``. With ``train_texts`` the characters the tokenizer maps to <unk> or rewrites are counted
    and, with ``extend_vocab``, made pieces of their own (tokenizer.py; embeddings resized). A pretrained model's
    rows past its own tokenizer start from ``embeddings.init_new_rows``."""
    if spec.init not in ("pretrained", "random"):
        raise ConfigError(f"model.init must be 'pretrained' or 'random', got {spec.init!r}")
    if spec.init == "pretrained" and not spec.name_or_path:
        raise ConfigError("model.name_or_path is required with init: pretrained (or use init: random)")
    tokenizer, report = load_tokenizer(spec, train_texts)
    report = {"init": spec.init, **report}

    # the model, sized to the tokenizer
    if spec.init == "pretrained":
        model = _load_pretrained_model(spec.name_or_path)
        report["source"] = spec.name_or_path
    else:
        if spec.size not in SIZES:
            raise ConfigError(f"model.size must be one of {sorted(SIZES)}, got {spec.size!r}")
        model = build_random_t5(spec.size, _round_up(len(tokenizer), VOCAB_MULTIPLE), tokenizer,
                                copy_head=spec.copy_head)
        report["source"] = f"random-init T5 ({spec.size})"
    if spec.copy_head and not getattr(model.config, "copy_head", False):
        from .copy_head import add_copy_head
        model = add_copy_head(model)
    report["copy_head"] = bool(getattr(model.config, "copy_head", False))
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:  # extended vocab, or resuming with an already-extended tokenizer
        resize_embeddings(model, len(tokenizer))
    base = report.get("base_tokenizer_len")
    if spec.init == "pretrained" and base is not None:
        # Rows past the checkpoint's tokenizer -- Flan-T5's 28 never-trained ones first, then those a resize
        # added -- hold nothing the model learned: new characters start from what they stand for.
        report["new_rows"] = init_new_rows(model, base, new_row_sources(tokenizer, base))
    model.train()

    head = model.get_output_embeddings()
    report.update(
        params=count_params(model),
        embedding_rows=model.get_input_embeddings().num_embeddings,
        tokenizer_len=len(tokenizer),
        lm_head_tied=head is not None and head.weight is model.get_input_embeddings().weight,
        scale_decoder_outputs=bool(getattr(model.config, "scale_decoder_outputs", False)),
    )
    if head is not None:
        report["lm_head_std"] = float(head.weight.detach().float().std())
    report["summary"] = (f"{report['source']}: {report['params']['total'] / 1e6:.1f}M params, "
                         f"tokenizer {len(tokenizer)} tokens ({report['tokenizer']})" + _coverage_summary(report))
    return model, tokenizer, report


def _coverage_summary(report: dict[str, Any]) -> str:
    before, after = report.get("unknown_rate_before"), report.get("unknown_rate_after")
    if before is None or after is None:
        return ""
    out = (f", unknown chars {before['rate']:.4%} -> {after['rate']:.4%}, rewritten chars "
           f"{before['lossy_rate']:.4%} -> {after['lossy_rate']:.4%}")
    if report.get("added_chars"):
        out += f" (added {len(report['added_chars'])} chars, {len(report.get('kept_chars', []))} kept from normalising)"
    return out


def build_random_t5(size: str, vocab_rows: int, tokenizer: Any = None, copy_head: bool = False) -> nn.Module:
    """A random-init Flan-T5-shaped model with the init fixes described in the module docstring
    (with ``copy_head``: the pointer-generator T5 of copy_head.py)."""
    from transformers import T5Config, T5ForConditionalGeneration

    pad = tokenizer.pad_token_id if tokenizer is not None and tokenizer.pad_token_id is not None else 0
    eos = tokenizer.eos_token_id if tokenizer is not None and tokenizer.eos_token_id is not None else 1
    config = T5Config(vocab_size=vocab_rows, feed_forward_proj="gated-gelu", dropout_rate=0.1,
                      tie_word_embeddings=False,  # 5.x: means "no output scaling"; 4.x: also "untied"
                      pad_token_id=pad, eos_token_id=eos, decoder_start_token_id=pad, **SIZES[size])
    if copy_head:
        from .copy_head import CopyT5ForConditionalGeneration
        model = CopyT5ForConditionalGeneration(config)
    else:
        model = T5ForConditionalGeneration(config)
    if getattr(model.config, "scale_decoder_outputs", False):  # would double-scale with our head init
        raise RuntimeError("transformers built a T5 that scales decoder outputs despite tie_word_embeddings=False")
    d = config.d_model
    head = model.get_output_embeddings()
    if head is None or head.weight is model.get_input_embeddings().weight:
        head = nn.Linear(d, vocab_rows, bias=False)  # 5.x ties it to `shared`: give it its own weight
        model.set_output_embeddings(head)
    # HF inits an untied head with std 1.0 (initial loss ~100); d**-0.5 gives unit-variance logits,
    # since the decoder's final RMSNorm outputs unit-RMS vectors.
    with torch.no_grad():
        head.weight.normal_(mean=0.0, std=d ** -0.5)
    pin_untied_head(model)
    return model


def resize_embeddings(model: nn.Module, n_tokens: int) -> int:
    """Grow input embeddings (and an untied lm_head) to hold ``n_tokens`` ids, padded to VOCAB_MULTIPLE.
    New rows start at the old rows' mean/covariance (HF ``mean_resizing``)."""
    pin_untied_head(model)  # why: resize calls tie_weights(), which would re-tie Flan-T5's head to `shared`
    rows = _round_up(n_tokens, VOCAB_MULTIPLE)
    with quiet_logs("mean and covariance"):
        model.resize_token_embeddings(rows, mean_resizing=True)
    return rows


@contextlib.contextmanager
def quiet_logs(*fragments: str, loggers: tuple[str, ...] = ("transformers.modeling_utils", "transformers")
               ) -> Iterator[None]:
    """Drop records containing any of ``fragments`` (known, handled warnings) from ``loggers`` (a filter
    acts only on records logged to its own logger, so name the module that logs them)."""
    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            msg = record.getMessage()
            return not any(f in msg for f in fragments)

    targets = [logging.getLogger(n) for n in loggers]
    flt = _Drop()
    for lg in targets:
        lg.addFilter(flt)
    try:
        yield
    finally:
        for lg in targets:
            lg.removeFilter(flt)


# what a trained model directory holds (save_model, train): never pickled weights
MODEL_DIR_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.png"]


def resolve_model_dir(name: str | os.PathLike) -> Path:
    """A trained model's local directory: ``name`` itself when it is a path, else a Hugging Face hub repo
    id ('org/name') fetched with ``huggingface_hub.snapshot_download`` (from the local cache when offline).
    Not found either way: a ConfigError saying both."""
    name = os.path.expanduser(str(name))
    if is_local(name):
        return Path(name)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=name, allow_patterns=MODEL_DIR_FILES))
    except Exception as err:  # offline, unknown repo, no access: all mean "not loadable from here"
        reason = " ".join(str(err).split())[:300].rstrip(".")
        raise ConfigError(f"model {name!r} is neither a local directory nor a model on the Hugging Face hub that "
                          f"can be fetched (offline?): {type(err).__name__}: {reason}. Give the directory "
                          f"`instructie train` wrote, or a hub id reachable from here") from None


def _load_pretrained_model(name: str, dtype: torch.dtype = torch.float32) -> nn.Module:
    name = os.path.expanduser(name)
    try:
        # dtype explicit: 5.x defaults to the checkpoint's dtype; training wants fp32 master weights.
        model = _from_pretrained(name, dtype=dtype)
    except Exception as err:
        raise hub_error("model", name, err) from err
    pin_untied_head(model)
    return model


def _from_pretrained(name: str, **kwargs: Any) -> nn.Module:
    """A seq2seq model by path or hub id; a checkpoint saved with ``copy_head: true`` gets our copy-head
    class (a class of this package, not remote code)."""
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    config = AutoConfig.from_pretrained(name, trust_remote_code=False,
                                        local_files_only=kwargs.get("local_files_only", False))
    cls: Any = AutoModelForSeq2SeqLM
    if getattr(config, "copy_head", False):
        from .copy_head import CopyT5ForConditionalGeneration
        cls = CopyT5ForConditionalGeneration
    with quiet_logs("so we will NOT tie them"):
        model = cls.from_pretrained(name, config=config, use_safetensors=True, trust_remote_code=False, **kwargs)
    share_input_embeddings(model)
    return model


# ---------------------------------------------------------------------------------------------- saving
def save_model(model: nn.Module, tokenizer: Any, out_dir: str | os.PathLike) -> Path:
    """model.safetensors + config + generation config + tokenizer files in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper saves with prefixed keys
    model = getattr(model, "module", model)  # DDP
    pin_untied_head(model)  # config.json then says tie_word_embeddings: false, like Flan-T5's
    since = time.time_ns()
    model.save_pretrained(str(out))  # 5.x: safetensors only
    tokenizer.save_pretrained(str(out))
    share_written_files(out, since)
    if not (out / "model.safetensors").exists() and not (out / "model.safetensors.index.json").exists():
        raise RuntimeError(f"{out}: save_pretrained wrote no safetensors file")
    return out


def share_written_files(directory: Path, since_ns: int) -> None:
    """Files written in ``directory`` since ``since_ns`` get the mode ``open()`` would give them: safetensors
    writes through a private (0600) temporary file, and a model directory is read by other users too."""
    mode = usual_mode()
    for f in directory.iterdir():
        st = f.stat()
        if f.is_file() and st.st_mtime_ns >= since_ns - 1_000_000_000 and st.st_mode & 0o777 == 0o600:
            f.chmod(mode)


def load_trained(path: str | os.PathLike, device: str | torch.device | None = None,
                 dtype: str | torch.dtype | None = None) -> tuple[nn.Module, Any]:
    """(model, tokenizer) from a ``save_model`` directory, offline, in eval mode.
    device None: cuda if available else cpu. dtype None: float32; a str like "bfloat16" is accepted."""
    from transformers import AutoTokenizer

    p = Path(path)
    if not (p / "config.json").exists():
        raise ConfigError(f"{p}: not a saved model directory (no config.json)")
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None) if dtype != "bf16" else torch.bfloat16
        if not isinstance(dtype, torch.dtype):
            raise ConfigError(f"unknown dtype {dtype!r}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = _from_pretrained(str(p), local_files_only=True, dtype=dtype or torch.float32)
    pin_untied_head(model)
    tokenizer = AutoTokenizer.from_pretrained(str(p), local_files_only=True, trust_remote_code=False)
    tokenizer.clean_up_tokenization_spaces = False
    quiet_length_warning(tokenizer)
    return model.to(device).eval(), tokenizer


# ---------------------------------------------------------------------------------------------- accounting
def count_params(model: nn.Module) -> dict[str, int]:
    """total / trainable / embedding (input embeddings + an untied lm_head) / non_embedding parameters;
    tied tensors are counted once."""
    params = {id(p): p for p in model.parameters()}.values()
    total = sum(p.numel() for p in params)
    emb = {id(model.get_input_embeddings().weight): model.get_input_embeddings().weight}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None:
        emb[id(head.weight)] = head.weight
    n_emb = sum(p.numel() for p in emb.values())
    return {"total": total, "trainable": sum(p.numel() for p in params if p.requires_grad),
            "embedding": n_emb, "non_embedding": total - n_emb}


@dataclass(frozen=True)
class Flops:
    """Training FLOPs (forward + backward = 3x forward; matmuls only, 2 FLOPs per multiply-add).

    encoder_per_src_token: encoder layers, plus each decoder layer's cross-attention K/V projections
    (computed once per source token). decoder_per_tgt_token: decoder layers incl. cross-attention and
    the lm_head. Attention score/value terms use the padded lengths given (full, not causal-halved, as
    executed). ``n_enc``/``n_dec``: the matmul parameters a source/target token passes through, so the
    rule of thumb is train_flops ~= 6 * (n_enc * src_tokens + n_dec * tgt_tokens) + attention terms."""
    encoder_per_src_token: float
    decoder_per_tgt_token: float
    n_enc: int
    n_dec: int

    def train_flops(self, src_tokens: float, tgt_tokens: float) -> float:
        return self.encoder_per_src_token * src_tokens + self.decoder_per_tgt_token * tgt_tokens


def model_flops_per_token(config: Any, src_len: int = 0, tgt_len: int = 0) -> Flops:
    """Per-token training FLOPs of a T5-style encoder-decoder (see ``Flops``); ``src_len``/``tgt_len``
    are the (padded) sequence lengths for the attention terms (0: leave them out)."""
    d, inner = config.d_model, config.num_heads * config.d_kv
    ffn = (3 if getattr(config, "is_gated_act", False) else 2) * d * config.d_ff
    l_enc = config.num_layers
    l_dec = getattr(config, "num_decoder_layers", None) or l_enc
    n_enc = l_enc * (4 * d * inner + ffn) + l_dec * 2 * d * inner  # + cross-attn K,V
    n_dec = l_dec * (4 * d * inner + 2 * d * inner + ffn) + d * config.vocab_size  # self, cross Q/O, ffn, head
    attn_enc = l_enc * 4 * inner * src_len  # QK^T and AV over the source
    attn_dec = l_dec * 4 * inner * (tgt_len + src_len)  # self-attention + cross-attention
    return Flops(encoder_per_src_token=3.0 * (2 * n_enc + attn_enc),
                 decoder_per_tgt_token=3.0 * (2 * n_dec + attn_dec), n_enc=n_enc, n_dec=n_dec)


def _round_up(n: int, k: int) -> int:
    return int(math.ceil(n / k) * k)
