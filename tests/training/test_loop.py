"""The logged training loss: the token mean of the window's finite batches."""
import math

from accelerate import Accelerator

from instructie.training.loop import LossWindow


def test_logged_loss_is_the_token_mean_of_finite_batches():
    w = LossWindow()
    w.add(1.0, 10)   # a batch of short answers
    w.add(3.0, 30)   # a batch of long answers weighs three times as much
    w.add(math.nan, 50)  # a skipped update is left out
    w.add(7.0, 0)    # a batch without target tokens carries no loss
    assert w.flush(Accelerator(cpu=True)) == 2.5
    assert w.flush(Accelerator(cpu=True)) is None  # the window starts empty again


def test_training_weighs_each_logged_batch_by_its_target_tokens(tmp_path, monkeypatch, one_thread):
    """The loop hands the window each batch's target tokens, packed or not: over a run they add up to the
    target tokens it trained on."""
    import json

    import yaml

    from instructie.config import load_config
    from instructie.training import finetune, loop
    from tests.helpers import tiny_config

    seen = []
    add = loop.LossWindow.add
    monkeypatch.setattr(loop.LossWindow, "add", lambda self, loss, tokens: (seen.append(tokens),
                                                                            add(self, loss, tokens)))
    for packed in (False, True):
        seen.clear()
        out = tmp_path / f"run-{packed}"
        path = tiny_config(tmp_path, out, packing=packed, pack_source_length=128, pack_target_length=48,
                           batch_size=2 if packed else 4, max_steps=4, save_every=4)
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
        cfg["data"].update(eval=[], test=[])
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
        finetune.train(load_config(path))
        state = json.loads((out / "checkpoints" / "step-4" / "trainer_state.json").read_text())
        assert len(seen) == 4 and min(seen) > 0
        assert sum(seen) == state["target_tokens"]
