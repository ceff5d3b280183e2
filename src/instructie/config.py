"""One config system for train / pretrain: YAML -> typed dataclasses, validated up front.

Unknown keys, wrong types and impossible values fail with the key's dotted path
before any work starts. CLI ``--set a.b=value`` overrides single keys.
"""
from __future__ import annotations

import dataclasses
import os
import re
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .core.io import ConfigError, read_yaml
from .core.records import TASKS


@dataclass
class ModelConfig:
    name_or_path: str | None = None   # hub id or local dir; None with init: random
    init: str = "pretrained"          # pretrained | random
    size: str = "small"               # random init: tiny | small | base
    tokenizer: str | None = None      # path or hub id; None -> trained on the training texts
    vocab_size: int = 16000           # for a trained tokenizer
    extend_vocab: bool = True         # add characters a pretrained tokenizer maps to <unk>
    copy_head: bool = False           # T5 + pointer-generator copy head (copy_head.py): learn to copy spans


@dataclass
class DatasetConfig:
    adapter: str
    path: str
    split: str = ""
    name: str | None = None           # rename the dataset in reports
    max_records: int | None = None    # cap (InstructUIE task configs cap per dataset)
    weight: float = 1.0               # sampling weight: >1 repeats, <1 subsamples per epoch
    tasks: list[str] | None = None    # override data.tasks for this dataset
    options: dict[str, Any] = field(default_factory=dict)  # adapter options (schema, pid2name, ...)


@dataclass
class DataConfig:
    train: list[DatasetConfig] = field(default_factory=list)
    eval: list[DatasetConfig] = field(default_factory=list)   # dev: scored during training
    test: list[DatasetConfig] = field(default_factory=list)   # scored once at the end
    tasks: list[str] | None = None    # main + auxiliary tasks to train; None -> main only
    templates: str | None = None      # template file; None -> the packaged prompts/templates.yaml
    template: Any = "random"          # an index or "random"
    max_options: int | None = 16
    shuffle_options: bool = True
    max_source_length: int = 256
    max_target_length: int = 128
    max_eval_records: int | None = 500  # per dataset, during training (the test set is full)
    mention_replacement: float = 0.0  # lever: probability to swap spans for other same-type spans
    mention_novel: float = 0.3        # share of those swaps that put in an unseen string, not a training name


@dataclass
class TrainConfig:
    output_dir: str = "runs/model"
    seed: int = 0
    optimizer: str = "adamw"          # adamw | adafactor (steps scaled by each tensor's RMS)
    lr: float = 5e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "cosine"          # constant | linear | cosine (after warmup)
    warmup_steps: int = 200
    grad_clip: float | None = 1.0     # max gradient norm; 0 or null: no clipping
    batch_size: int = 32
    grad_accum: int = 1
    max_batch_tokens: int | None = None  # padded source tokens per forward pass: a batch of long prompts is
                                      # run in parts (gradients summed: the same update, less memory)
    epochs: float = 1.0
    max_steps: int | None = None      # overrides epochs when set
    max_time_s: float | None = None   # stop (with a checkpoint) after this much training time in this
                                      # invocation (each --resume gets the budget afresh)
    precision: str = "auto"           # auto (bf16 on GPU, fp32 on CPU) | bf16 | fp32
    length_grouping: bool = True      # batches of similar length
    pad_to_multiple: int = 16         # bucket padded lengths (few shapes: compile-friendly)
    compile: bool = False             # torch.compile the training step (packed rows: once, for one shape)
    packing: bool = False             # several examples per fixed-length row (data/packing.py): one shape, almost
                                      # no padding; batch_size then counts rows
    pack_source_length: int | None = None  # a packed row's source tokens (null: data.max_source_length)
    pack_target_length: int | None = None  # a packed row's target tokens (null: data.max_target_length)
    attention: str = "sdpa"           # packed rows: sdpa | efficient | eager | flex (model/packing.py)
    gradient_checkpointing: bool = False  # recompute activations in the backward pass: less memory, ~1/3 more compute
    bf16_weights: bool = False        # weights in bf16 (no autocast casts, half the weight memory); AdamW and
                                      # Adafactor keep the updates bf16 rounds away (Kahan summation, training/optim.py)
    eval_every: int = 0               # steps; 0 -> only at the end
    save_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 20
    prefetch_min_build_s: float | None = 2.0  # an epoch that takes this long to build is built in a background
                                      # process while the one before trains (prefetch.py); null: never


@dataclass
class EvalConfig:
    batch_size: int = 64
    num_beams: int = 1
    max_new_tokens: int = 128
    constrained: Any = False          # false | vocab (tokens of the input) | copy (contiguous copies)
    option_order: str = "sorted"      # the options' order in a prompt: sorted (answers cannot depend on the
                                      # schema's order) or schema (as given; the runs in eval/RESULTS.md were scored so)


@dataclass
class HintsConfig:
    """Memory hints, an optional plug-in (``instructie.hints``): each prompt carries what the training data
    says about its text, and decoding may lean toward it. Off unless ``memory`` is true."""
    memory: bool = False              # prompts carry the training memory's answer for the text (hints/memory.py)
    folds: int = 5                    # training hints come from the other folds' records
    max_items: int = 16               # items per hint line
    bias: Any = 0.0                   # lean decoding toward the hint's items (hints/bias.py): a number or
                                      # {task: number}; 0: plain decoding
    unhinted_floor: Any = 0.0         # an item the hint did not propose is kept only with at least this
                                      # confidence: 0 to 1 or {task: value}; 0: off


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    hints: HintsConfig = field(default_factory=HintsConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class PretrainDataConfig:
    """Unlabeled text for span-corruption pretraining (``instructie pretrain``)."""
    files: list[str] = field(default_factory=list)  # .txt (a text per line), .jsonl, .csv; globs and folders
    adapters: list[DatasetConfig] = field(default_factory=list)  # the texts of dataset records
    text_field: str = "text"          # .jsonl key / .csv column holding the text
    min_chars: int = 20               # shorter texts are dropped (after stripping)
    dedup: bool = True                # identical texts count once
    max_texts: int | None = None      # cap (first come first kept), e.g. for quick runs
    eval_texts: int = 0               # texts held out (seeded) for a validation loss
    noise_density: float = 0.15       # T5: fraction of tokens masked
    mean_span_length: float = 3.0     # T5: mean length of a masked span
    max_source_length: int = 256      # corrupted input length incl. </s>; targets' length follows from it
    pack: bool = True                 # concatenate texts into full-length chunks (T5); false: one text per
                                      # example, long ones split
    sentinels: int = 100              # <extra_id_0>.. added to a tokenizer that has none


@dataclass
class PretrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return _build(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML reads 1e-3 as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(number):  # .inf / .nan: no setting means them (null turns a limit off)
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _build(cls, data: dict, where: str):
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    names = {f.name for f in fields}
    at = f"{where}: " if where else ""
    unknown = set(data) - names
    moved = [f"{where}.{k} is now {MOVED[f'{where}.{k}']}" for k in sorted(map(str, unknown)) if f"{where}.{k}" in MOVED]
    if moved:
        raise ConfigError("; ".join(moved))
    if unknown:
        keys = ", ".join(f"{where}.{k}" if where else str(k) for k in sorted(map(str, unknown)))
        raise ConfigError(f"unknown key(s) {keys} (allowed{' in ' + where if where else ''}: "
                          f"{', '.join(sorted(names))})")
    missing = [f.name for f in fields if f.name not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{at}missing required key(s) {', '.join(missing)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where or 'config'}: {e}") from None


# Keys that moved to another section: a config written for the old place says where to write them now.
MOVED = {"data.memory_hints": "hints.memory", "data.memory_folds": "hints.folds",
         "data.memory_max_items": "hints.max_items", "eval.hint_bias": "hints.bias",
         "eval.unhinted_floor": "hints.unhinted_floor"}


_KEY = re.compile(r"^(\w+)((?:\[(?:\d+|\+)\])*)$")
APPEND = "+"  # data.train[+]={...}: a new last list item (add a dataset to a mix from the command line)


def parse_override(item: str) -> tuple[list[str | int], Any]:
    """``a.b=value`` -> (["a", "b"], value parsed as YAML). List items are addressed as
    ``data.train[0].weight=2`` (or ``data.train.0.weight=2``); ``data.train[+]={...}`` appends one."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key.path=value")
    key, raw = item.split("=", 1)
    keys: list[str | int] = []
    for part in key.strip().split("."):
        m = _KEY.match(part)
        if not m:
            raise ConfigError(f"--set {item!r}: bad key {part!r} (expected names like train.lr or data.train[0].path)")
        keys.append(int(part) if part.isdigit() else m.group(1))
        keys += [i if i == APPEND else int(i) for i in re.findall(r"\[(\d+|\+)\]", m.group(2))]
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {item!r}: value is not valid YAML: {e}") from None
    return keys, value


def overrides_set(items, keys: list[str | int]) -> bool:
    """Whether one of the ``--set`` items sets ``keys`` (as ``parse_override`` reads a key): a value given
    there wins over one a caller would otherwise take from elsewhere (a model's card)."""
    return any(parse_override(x)[0] == keys for x in items or [])


def apply_override(data: dict, item: str) -> None:
    """Set one ``--set key.path=value`` in the raw config mapping (sections are created as needed)."""
    keys, value = parse_override(item)
    node: Any = data
    for i, k in enumerate(keys):
        last = i == len(keys) - 1
        if k == APPEND:
            if not isinstance(node, list) or not last:
                raise ConfigError(f"--set {item!r}: [+] appends to a list and must end the key")
            node.append(value)
            continue
        if isinstance(k, int):
            if not isinstance(node, list) or not -len(node) <= k < len(node):
                raise ConfigError(f"--set {item!r}: no list item [{k}] there")
            if last:
                node[k] = value
            else:
                node = node[k]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"--set {item!r}: {keys[i - 1]} is not a section")
        if last:
            node[k] = value
        else:
            if node.get(k) is None:
                node[k] = [] if isinstance(keys[i + 1], int) or keys[i + 1] == APPEND else {}
            node = node[k]


_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def expand_vars(node: Any, where: str = "") -> Any:
    """``${NAME}`` / ``${NAME:-default}`` in config strings, from the environment
    (e.g. ``${INSTRUCTIE_DATA:-../shared/data}`` lets one config run anywhere)."""
    if isinstance(node, str):
        def sub(m):
            val = os.environ.get(m.group(1))
            if val is None and m.group(2) is None:
                raise ConfigError(f"{where or 'config'}: environment variable {m.group(1)} is not set "
                                  f"(set it, or write ${{{m.group(1)}:-default}})")
            return val if val is not None else m.group(2)
        return _VAR.sub(sub, node)
    if isinstance(node, list):
        return [expand_vars(v, f"{where}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, dict):
        return {k: expand_vars(v, f"{where}.{k}" if where else str(k)) for k, v in node.items()}
    return node


def load_config(path: str | Path | None, overrides: list[str] = (), base: dict | None = None) -> RunConfig:
    """A fine-tuning config (``instructie train``)."""
    cfg, src = _load(RunConfig, path, overrides, base)
    validate(cfg, src)
    return cfg


def load_pretrain_config(path: str | Path | None, overrides: list[str] = (),
                         base: dict | None = None) -> PretrainConfig:
    """A pretraining config (``instructie pretrain``): model and train sections as in ``train``,
    a data section of unlabeled text (``PretrainDataConfig``)."""
    cfg, src = _load(PretrainConfig, path, overrides, base)
    validate_pretrain(cfg, src)
    return cfg


def _load(cls, path: str | Path | None, overrides: list[str], base: dict | None):
    data: dict = dict(base or {})
    if path:
        p = Path(path)
        data = read_yaml(p, "config file")
        if data is None:
            raise ConfigError(f"{p}: the config file is empty (configs/quickstart.yaml is a small complete one)")
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level")
    for item in overrides:
        apply_override(data, item)
    src = str(path or "config")
    try:
        cfg = _build(cls, expand_vars(data), "")
    except ConfigError as e:
        raise ConfigError(f"{src}: {e}") from None
    return cfg, src


def _validate_model(m: ModelConfig, bad) -> None:
    if m.vocab_size < 1:
        bad(f"model.vocab_size must be >= 1 (tokens of the tokenizer trained on the texts), got {m.vocab_size}")
    if m.init not in ("pretrained", "random"):
        bad(f"model.init must be 'pretrained' or 'random', got {m.init!r}")
    if m.init == "pretrained" and not m.name_or_path:
        bad("model.name_or_path is required with init: pretrained (or use init: random)")
    if m.init == "random" and m.size not in ("tiny", "small", "base"):  # modeling.SIZES
        bad(f"model.size must be tiny, small or base, got {m.size!r}")


def _validate_datasets(dsets: list[DatasetConfig], where: str, bad) -> None:
    from instructie.data_adapters import adapter_names
    for i, ds in enumerate(dsets):
        if ds.adapter not in adapter_names():
            bad(f"{where}[{i}].adapter: unknown adapter {ds.adapter!r} (known: {', '.join(adapter_names())})")
        if not Path(ds.path).exists():
            bad(f"{where}[{i}].path: {ds.path} does not exist")
        if ds.weight <= 0:
            bad(f"{where}[{i}].weight must be > 0, got {ds.weight}")
        if ds.max_records is not None and ds.max_records < 1:  # 0 read as "no cap" once: say what is meant
            bad(f"{where}[{i}].max_records must be >= 1 (leave it out for every record), got {ds.max_records}")
        for t in ds.tasks or []:
            if t not in TASKS:
                bad(f"{where}[{i}].tasks: unknown task {t!r}")


def _validate_train(t: TrainConfig, bad) -> None:
    if t.optimizer not in ("adamw", "adafactor"):
        bad(f"train.optimizer must be adamw or adafactor, got {t.optimizer!r}")
    if t.schedule not in ("constant", "linear", "cosine"):
        bad(f"train.schedule must be constant, linear or cosine, got {t.schedule!r}")
    if t.precision not in ("auto", "bf16", "fp32"):
        bad(f"train.precision must be auto, bf16 or fp32 (fp16 overflows in T5), got {t.precision!r}")
    if t.attention not in ("sdpa", "efficient", "eager", "flex"):
        bad(f"train.attention must be sdpa, efficient, eager or flex, got {t.attention!r}")
    if t.attention == "flex" and t.packing and not t.compile:
        bad("train.attention flex needs train.compile: true (uncompiled, flex_attention makes the full score "
            "tensors it exists to avoid)")
    if t.bf16_weights and t.precision == "fp32":
        bad("train.bf16_weights computes in bf16: leave train.precision auto or bf16, or turn bf16_weights off")


def _check_minimums(checks, bad) -> None:
    for key, value, low in checks:
        if value is not None and value < low:
            bad(f"{key} must be >= {low}, got {value}")


def _train_minimums(t: TrainConfig) -> list[tuple[str, Any, int]]:
    return [("train.batch_size", t.batch_size, 1), ("train.grad_accum", t.grad_accum, 1),
            ("train.max_batch_tokens", t.max_batch_tokens, 1),
            ("train.log_every", t.log_every, 1), ("train.pad_to_multiple", t.pad_to_multiple, 1),
            ("train.keep_checkpoints", t.keep_checkpoints, 1), ("train.warmup_steps", t.warmup_steps, 0),
            ("train.save_every", t.save_every, 0), ("train.eval_every", t.eval_every, 0),
            ("train.max_steps", t.max_steps, 1), ("train.pack_source_length", t.pack_source_length, 1),
            ("train.pack_target_length", t.pack_target_length, 1)]


SEED_MAX = 2**32 - 1  # every RNG is seeded with train.seed; numpy's takes 0 to 2**32 - 1


def _validate_train_values(t: TrainConfig, bad) -> None:
    """Numbers the optimizer, schedule and loop would take without complaint and train wrongly with (a
    negative grad_clip flips the gradients), or fail on only after the data and model are built."""
    if not t.lr > 0:
        bad(f"train.lr must be > 0, got {t.lr}")
    if not t.weight_decay >= 0:
        bad(f"train.weight_decay must be >= 0, got {t.weight_decay}")
    for i, beta in enumerate(t.betas):
        if not 0 <= beta < 1:
            bad(f"train.betas[{i}] must be in [0, 1) (a decay rate of Adam's moving averages), got {beta}")
    if t.grad_clip is not None and t.grad_clip < 0:
        bad(f"train.grad_clip is the largest gradient norm, > 0 (0 or null: no clipping), got {t.grad_clip}")
    if not 0 <= t.seed <= SEED_MAX:
        bad(f"train.seed must be from 0 to {SEED_MAX}, got {t.seed}")
    if t.max_steps is None and not t.epochs > 0:
        bad("train.epochs must be > 0 (or set train.max_steps)")
    if t.max_time_s is not None and not t.max_time_s > 0:
        bad(f"train.max_time_s must be > 0 seconds, got {t.max_time_s}")
    if t.prefetch_min_build_s is not None and t.prefetch_min_build_s < 0:
        bad(f"train.prefetch_min_build_s must be >= 0 seconds (null: never build epochs ahead), "
            f"got {t.prefetch_min_build_s}")
    out = Path(t.output_dir)
    for p in (out, *out.parents):  # the run would fail creating it, after the data load
        if p.exists():
            if not p.is_dir():
                bad(f"train.output_dir: {p} is a file, not a folder" + ("" if p == out else f" (in {out})"))
            break


def validate(cfg: RunConfig, src: str) -> None:
    def bad(msg):
        raise ConfigError(f"{src}: {msg}")

    _validate_model(cfg.model, bad)
    d = cfg.data
    for t in d.tasks or []:
        if t not in TASKS:
            bad(f"data.tasks: unknown task {t!r} (known: {', '.join(TASKS)})")
    for sect in ("train", "eval", "test"):
        _validate_datasets(getattr(d, sect), f"data.{sect}", bad)
    if not d.train:
        bad("data.train: at least one training dataset is required")
    if d.template != "random" and (not isinstance(d.template, int) or isinstance(d.template, bool)):
        bad(f"data.template must be an index or 'random', got {d.template!r}")
    if isinstance(d.template, int) and not isinstance(d.template, bool):
        from .prompts.instructions import load_templates, template_index_problem
        problem = template_index_problem(load_templates(d.templates), d.template)
        if problem:
            bad(f"data.template {d.template}: {problem}")
    t = cfg.train
    _validate_train(t, bad)
    e = cfg.eval
    _check_minimums(_train_minimums(t) + [
        ("data.max_source_length", d.max_source_length, 1), ("data.max_target_length", d.max_target_length, 1),
        ("data.max_options", d.max_options, 1), ("data.max_eval_records", d.max_eval_records, 1),
        ("eval.batch_size", e.batch_size, 1), ("eval.num_beams", e.num_beams, 1),
        ("eval.max_new_tokens", e.max_new_tokens, 1)], bad)
    _validate_train_values(t, bad)
    for key, row, longest in (("pack_source_length", t.pack_source_length, d.max_source_length),
                              ("pack_target_length", t.pack_target_length, d.max_target_length)):
        if t.packing and row is not None and row < longest:
            bad(f"train.{key} {row} is shorter than data.max_{key[5:]} {longest}: a packed row must hold the "
                f"longest example")
        if t.packing and t.attention == "efficient" and (row or longest) % 16:
            bad(f"train.attention efficient needs rows of a multiple of 16 tokens, got train.{key} "
                f"{row or longest} (the kernel pads other lengths, a path that has crashed compiled)")
    if not 0.0 <= d.mention_replacement <= 1.0:
        bad(f"data.mention_replacement is a probability (0 to 1), got {d.mention_replacement}")
    if not 0.0 <= d.mention_novel <= 1.0:
        bad(f"data.mention_novel is a share (0 to 1), got {d.mention_novel}")
    if e.constrained not in (False, True, "off", "on", "vocab", "copy"):
        bad(f"eval.constrained must be false, vocab or copy, got {e.constrained!r}")
    from .prompts.instructions import OPTION_ORDERS
    if e.option_order not in OPTION_ORDERS:
        bad(f"eval.option_order must be {' or '.join(OPTION_ORDERS)}, got {e.option_order!r}")
    elif e.option_order == "sorted" and not d.shuffle_options:
        bad("eval.option_order sorted asks the options in an order a model trained with data.shuffle_options false "
            "never saw (it saw the schema's): set eval.option_order: schema, or shuffle the options")
    h = cfg.hints
    try:
        h.bias = check_bias(h.bias)
    except ValueError as err:
        bad(f"hints.bias: {err}")
    try:
        h.unhinted_floor = check_floor(h.unhinted_floor)
    except ValueError as err:
        bad(f"hints.unhinted_floor: {err}")
    if (h.bias or h.unhinted_floor) and not h.memory:
        bad("hints.bias and hints.unhinted_floor act on memory hints: set hints.memory: true, or leave them at 0")
    _check_minimums([("hints.folds", h.folds, 2), ("hints.max_items", h.max_items, 1)], bad)


# ---------------------------------------------------------------- hint settings
def check_bias(bias, what: str = "a hint bias", top: float = math.inf) -> float | dict[str, float]:
    """A hint bias as given (config, card, API): a number >= 0, or a mapping of tasks to numbers
    where a key may also name a dataset (``{"NER": 4, "NER/CrossNER_AI": 16}``: that dataset's
    records get 16, other NER records 4; see ``setting_for``); ValueError otherwise. Zero
    entries of a task are dropped, and an empty mapping is 0 (off)."""
    def number(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 <= v <= top and math.isfinite(v)):
            kind = "number >= 0" if top == math.inf else f"number from 0 to {top:g}"
            raise ValueError(f"{what} is a {kind} or {{task: number}}, got {v!r}")
        return float(v)

    if isinstance(bias, dict):
        out = {}
        for key, v in bias.items():
            task, _, dataset = str(key).partition("/")
            if task not in TASKS or (key != task and not dataset):
                raise ValueError(f"{what} for unknown task {key!r} (keys: a task, {', '.join(TASKS)}, or "
                                 f"TASK/DATASET)")
            # a dataset's own 0 stays: it overrides its task's value
            if (v := number(v)) or dataset:
                out[key] = v
        return out if any(out.values()) else 0.0
    return number(bias)


def check_floor(floor) -> float | dict[str, float]:
    """An unhinted-item floor as given: a confidence from 0 to 1 or {task: confidence}."""
    return check_bias(floor, "an unhinted-item floor", 1.0)


PRETRAIN_SUFFIXES = (".txt", ".jsonl", ".csv")


def pretrain_files(entry: str, where: str) -> list[Path]:
    """The files one ``data.files`` entry names: a file, a folder (its .txt/.jsonl/.csv files, recursively)
    or a glob pattern. Raises ``ConfigError`` naming ``where`` when it names none or an unknown format."""
    import glob

    p = Path(entry).expanduser()
    if any(c in entry for c in "*?["):
        found = sorted(Path(x) for x in glob.glob(str(p), recursive=True) if Path(x).is_file())
        if not found:
            raise ConfigError(f"{where}: the pattern {entry} matches no file")
    elif p.is_dir():
        found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in PRETRAIN_SUFFIXES)
        if not found:
            raise ConfigError(f"{where}: the folder {entry} holds no {'/'.join(PRETRAIN_SUFFIXES)} file")
    elif p.is_file():
        found = [p]
    else:
        raise ConfigError(f"{where}: {entry} does not exist")
    for f in found:
        if f.suffix.lower() not in PRETRAIN_SUFFIXES:
            raise ConfigError(f"{where}: {f} is not a .txt (a text per line), .jsonl or .csv file")
    return found


def validate_pretrain(cfg: PretrainConfig, src: str) -> None:
    def bad(msg):
        raise ConfigError(f"{src}: {msg}")

    _validate_model(cfg.model, bad)
    d = cfg.data
    if not d.files and not d.adapters:
        bad("data.files / data.adapters: at least one source of text is required")
    for i, entry in enumerate(d.files):
        try:
            pretrain_files(entry, f"data.files[{i}]")
        except ConfigError as e:
            bad(str(e))
    _validate_datasets(d.adapters, "data.adapters", bad)
    if not d.text_field:
        bad("data.text_field must name a field")
    if not 0.0 < d.noise_density < 1.0:
        bad(f"data.noise_density is a fraction of tokens (between 0 and 1), got {d.noise_density}")
    if not d.mean_span_length >= 1.0:
        bad(f"data.mean_span_length must be >= 1 (tokens), got {d.mean_span_length}")
    t = cfg.train
    _validate_train(t, bad)
    _check_minimums(_train_minimums(t) + [
        ("data.max_source_length", d.max_source_length, 8), ("data.min_chars", d.min_chars, 0),
        ("data.max_texts", d.max_texts, 1), ("data.eval_texts", d.eval_texts, 0),
        ("data.sentinels", d.sentinels, 1)], bad)
    _validate_train_values(t, bad)
    if t.packing:
        bad("train.packing is for instructie train: pretraining fills its rows from the token stream already "
            "(data.pack)")
