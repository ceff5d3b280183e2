"""Constrained decoding: only tokens that can spell a copy of the input or an option."""
import torch

from instructie.decoding.constraints import source_vocabulary_factory


def _allowed(tok, source: str) -> torch.Tensor:
    enc = tok([source], return_tensors="pt")
    proc = source_vocabulary_factory(tok, len(tok))(enc["input_ids"], enc["attention_mask"])
    return proc.allowed[0]


def test_labels_and_spans_can_be_written_at_the_start_of_the_answer(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    source = "Find the relation.\nOption: mother, child\nText: Barack Obama visited Paris .\nAnswer:"
    allowed = _allowed(tok, source)
    # the answer's first item has no leading space: its tokens differ from the prompt's
    for answer in ("child", "Obama | child", "Barack Obama", "Paris; Obama | mother"):
        ids = tok(answer, add_special_tokens=False)["input_ids"]
        assert all(allowed[i] for i in ids), answer
    assert allowed[tok.eos_token_id]


def test_words_absent_from_the_input_are_blocked(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    allowed = _allowed(tok, "Option: person\nText: EU rejects German call .\nAnswer:")
    blocked = tok("王小明", add_special_tokens=False)["input_ids"]
    assert not any(allowed[i] for i in blocked)


def test_processor_masks_scores_and_handles_beams(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    enc = tok(["Option: person\nText: Obama .\nAnswer:"], return_tensors="pt")
    proc = source_vocabulary_factory(tok, len(tok))(enc["input_ids"], enc["attention_mask"])
    scores = torch.zeros(2, len(tok) + 5)  # two beams, a model vocab padded past the tokenizer
    out = proc(torch.zeros(2, 1, dtype=torch.long), scores)
    assert out.shape == scores.shape
    assert (out[:, len(tok):] < -1e30).all()
    assert (out[0] == out[1]).all()
    assert out[0, tok.eos_token_id] == 0
