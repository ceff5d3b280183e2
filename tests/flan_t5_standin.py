"""A stand-in for ``google/flan-t5-*`` built offline in a few seconds: what every pretrained-path test loads.

Its tokenizer has the properties of Flan-T5's that cost spans: a SentencePiece **unigram** model trained here
with the ``sentencepiece`` library, **no byte fallback** (a character outside the vocabulary is ``<unk>``),
**nmt_nfkc** normalisation (fullwidth punctuation becomes ASCII, newlines become spaces), a vocabulary trained
on English only (no CJK) with none of ``{ } < > ~ \\``, ``<pad>`` ``</s>`` ``<unk>`` at ids 0, 1, 2 and 100
sentinels ``<extra_id_99>`` ... ``<extra_id_0>`` after the pieces. The model is a tiny untied T5 whose
embedding has 28 rows more than the tokenizer has tokens, as the hub's checkpoints have (32,100 tokens in
32,128 rows); the spare rows hold what an unused row of a trained checkpoint holds: values never trained.

    python tests/flan_t5_standin.py OUT_DIR     # writes the checkpoint directory (for eval/tokenizer_ceiling.py)
"""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXTRA_IDS = 100
SPARE_ROWS = 28
EXCLUDED = set("{}<>~\\")  # characters Flan-T5's vocabulary cannot write

# Plain English besides the fixtures' sentences, so the vocabulary has the pieces of ordinary prose and every
# printable ASCII character but ``EXCLUDED``, as Flan-T5's has.
PROSE = """\
The committee met on Tuesday to discuss the budget for the coming year. Several members said the plan was too
expensive, while others argued that the investment would pay off within five years. A final vote is expected
next month, after the finance department has published its report. The company reported a profit of 12.5
million dollars in the third quarter, up from 9.8 million a year earlier. Its chief executive said demand for
the new products had been stronger than expected in Europe and Asia. Researchers at the university have
developed a method that lets computers recognise speech in noisy rooms. The system was trained on thousands of
hours of recordings and tested in schools, hospitals and railway stations. Heavy rain caused flooding in
several towns along the river, and the police closed two bridges as a precaution. Emergency services said no
one had been injured. The novel, first published in 1851, tells the story of a sailor who joins a whaling ship
and of its captain's obsession with a white whale. Critics at the time were divided, but the book is now
regarded as one of the great works of American literature. She was born in Paris, studied physics in Warsaw and
later became the first woman to win the prize twice. The museum will reopen in spring with an exhibition of
paintings, drawings and photographs from private collections. Tickets can be booked online or bought at the door.
Café owners in Zürich and Köln said the new rules would hurt small businesses; the mayor's office disagreed.
Really? Yes! "Quoted" words, (brackets) and [lists]: 50% off at $9.99 & more; a+b=c * 2 / 4 | x ^ y @home #1_2.
"""


def english_texts() -> list[str]:
    """English text from the test fixtures (sentences, relation names, templates) plus ``PROSE``."""
    from instructie.prompts.instructions import load_templates

    out = [line for line in PROSE.splitlines() if line]
    for split in ("train", "dev", "test"):
        out += [r["sentence"] for r in json.loads(
            (FIXTURES / "ie_instructions" / "NER" / "CoNLL2003" / split).with_suffix(".json").read_text("utf-8"))]
    out += [r["sentence"] for r in json.loads((FIXTURES / "scoring" / "conll2003_sample.json").read_text("utf-8"))]
    for rows in json.loads((FIXTURES / "fewrel" / "val_wiki_excerpt.json").read_text("utf-8")).values():
        out += [" ".join(r["tokens"]) for r in rows]
    for name, desc in json.loads((FIXTURES / "fewrel" / "pid2name_excerpt.json").read_text("utf-8")).values():
        out += [name, desc]
    out += [t for ts in load_templates().values() for t in ts]
    out += ["person organization location miscellaneous None Option Text Answer Entities Pairs Event Head Tail"]
    return out


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (0x2E80 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF or 0xF900 <= o <= 0xFAFF or 0xFE30 <= o <= 0xFE4F
            or 0xFF00 <= o <= 0xFFEF or 0x20000 <= o <= 0x2FFFF)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = buf[i]
        n |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return n, i
        shift += 7


def _fields(buf: bytes):
    """(field number, value) of a serialised protobuf message: ints for varints, bytes for the rest."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, i = _varint(buf, i)
        elif wire == 2:
            size, i = _varint(buf, i)
            val, i = buf[i:i + size], i + size
        elif wire == 5:
            val, i = buf[i:i + 4], i + 4
        elif wire == 1:
            val, i = buf[i:i + 8], i + 8
        else:
            raise ValueError(f"protobuf wire type {wire} not expected in a SentencePiece model")
        yield num, val


def precompiled_charsmap(model_proto: bytes) -> bytes:
    """The normaliser's compiled rules (``ModelProto.normalizer_spec.precompiled_charsmap``): what
    transformers' converter hands to ``tokenizers.normalizers.Precompiled`` for a T5 checkpoint."""
    for num, val in _fields(model_proto):
        if num == 3:  # normalizer_spec
            for n2, v2 in _fields(val):
                if n2 == 2:
                    return v2
    raise ValueError("SentencePiece model without a normalizer spec")


def train_spm(texts: list[str], vocab_size: int = 1200) -> bytes:
    """A T5-style SentencePiece unigram model (serialised) trained on ``texts`` less CJK and ``EXCLUDED``."""
    import sentencepiece as spm

    clean = ["".join(ch for ch in t if ch not in EXCLUDED and not _is_cjk(ch)) for t in texts]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([t for t in clean if t.strip()] * 3), model_writer=buf, model_type="unigram",
        vocab_size=vocab_size, hard_vocab_limit=False, character_coverage=1.0, byte_fallback=False,
        normalization_rule_name="nmt_nfkc", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>", num_threads=1, minloglevel=2)
    return buf.getvalue()


def standin_tokenizer(model_proto: bytes):
    """transformers' ``T5Tokenizer`` over the SentencePiece model: pieces with their scores, the sentinels
    after them (``<extra_id_0>`` last, as in T5), the model's own compiled normaliser."""
    import sentencepiece as spm
    from transformers import T5Tokenizer

    sp = spm.SentencePieceProcessor(model_proto=model_proto)
    vocab = [(sp.id_to_piece(i), float(sp.get_score(i))) for i in range(sp.get_piece_size())]
    vocab += [(f"<extra_id_{i}>", 0.0) for i in range(EXTRA_IDS - 1, -1, -1)]
    return T5Tokenizer(vocab=vocab, extra_ids=EXTRA_IDS, _spm_precompiled_charsmap=precompiled_charsmap(model_proto))


def build_standin(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the stand-in checkpoint (tokenizer files, ``spiece.model``, config, safetensors) to ``out_dir``."""
    import torch

    from instructie.model.loading import build_random_t5, save_model

    out = Path(out_dir)
    proto = train_spm(english_texts())
    tok = standin_tokenizer(proto)
    torch.manual_seed(seed)
    model = build_random_t5("tiny", len(tok) + SPARE_ROWS, tok)
    save_model(model, tok, out)
    (out / "spiece.model").write_bytes(proto)
    return out


@pytest.fixture(scope="session")
def flan_t5_standin(tmp_path_factory) -> Path:
    """The stand-in checkpoint's directory (built once per test session)."""
    return build_standin(tmp_path_factory.mktemp("flan_t5_standin"))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    print(build_standin(sys.argv[1]))
