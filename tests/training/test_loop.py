"""The logged training loss: the token mean of the window's finite batches. Skipped updates: counted on the
device where the optimizer skips them itself, and read only when the loop settles the counts."""
import math
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator

from instructie.training.loop import LossWindow, SkippedUpdates, skips_on_device
from instructie.training.optim import Adafactor, KahanAdamW


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


def test_skips_flagged_on_the_device_are_counted_once_when_settled():
    s = SkippedUpdates()
    for flag in (0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0):  # 1.0: the optimizer skipped that update
        s.add(torch.tensor(flag))
    assert s.settle() == (5, 3)
    assert s.settle() == (0, 3)  # nothing new since; the run of skips goes on
    s.add(torch.tensor(1.0))
    assert s.settle() == (1, 4)
    s.add(torch.tensor(0.0))  # an update made ends the run
    assert s.settle() == (0, 0)


def test_adding_device_flags_reads_none_of_them():
    """Flags on a device whose values cannot be read (meta): adding them needs no value, only settling does."""
    s = SkippedUpdates()
    for _ in range(3):
        s.add(torch.ones((), device="meta"))
    assert s.on_device


def test_skips_decided_on_the_host_count_in_a_row_and_are_not_counted_again():
    s = SkippedUpdates()
    s.add(False)
    s.add(False)
    assert not s.on_device
    assert s.settle() == (0, 2)  # train_batch counted them in the state when it skipped them
    s.add(True)
    assert s.settle() == (0, 0)


def _params():
    return [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(3))]


@pytest.mark.parametrize("make, distributed, able", [
    (lambda ps: Adafactor(ps, lr=1e-3), "NO", True),
    (lambda ps: Adafactor(ps, lr=1e-3), "MULTI_GPU", True),
    (lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True), "NO", True),
    (lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True), "MULTI_GPU", True),
    (lambda ps: torch.optim.AdamW(ps, lr=1e-3), "NO", False),  # its step refuses found_inf
    (lambda ps: KahanAdamW(ps, lr=1e-3), "NO", False),  # its step ignores found_inf
    (lambda ps: Adafactor(ps, lr=1e-3), "FSDP", False),
    (lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True), "DEEPSPEED", False),
])
def test_only_optimizers_that_skip_on_the_device_are_handed_the_flag(make, distributed, able):
    inner = make(_params())
    wrapped = SimpleNamespace(optimizer=inner)  # as accelerate's prepared optimizer holds it
    assert skips_on_device(SimpleNamespace(distributed_type=distributed), wrapped) is able
    assert skips_on_device(SimpleNamespace(distributed_type=distributed), inner) is able


def test_several_processes_agree_on_the_time_budget_at_few_steps():
    """Agreeing to stop waits for every rank's GPU: ranks agree at the call's first step (a budget shorter than a
    step stops after it) and every Clock.AGREE_EVERY steps, not at every step."""
    from instructie.training.loop import Clock

    class TwoRanks:
        num_processes, device = 2, "cpu"

        def __init__(self):
            self.agreed_at = []

        def reduce(self, flag, reduction):
            self.agreed_at.append(step)
            return flag * 2

    ranks = TwoRanks()
    clock = Clock(0.0, 0.0, ranks)  # out of time from the start
    stops = []
    for step in range(7, 31):  # a resumed call's steps
        if clock.out_of_time(step):
            stops.append(step)
    assert ranks.agreed_at == [7, 10, 20, 30] and stops == [7, 10, 20, 30]
    assert Clock(None, 0.0, ranks).out_of_time(10) is False and ranks.agreed_at[-1] == 30


def test_the_loop_reads_no_device_value_between_log_lines(tmp_path, monkeypatch, one_thread):
    """On a GPU each value the host reads from a tensor waits for all queued GPU work. Packed rows with the stacked
    Adafactor: the loop reads tensors only when it logs the loss (every log_every steps) or counts skipped updates
    (there and every MAX_SKIPPED_IN_A_ROW steps), not at every step."""
    import sys

    import torch
    import yaml

    from instructie.config import load_config
    from instructie.training import finetune, loop
    from tests.helpers import tiny_config

    reads = []  # (step, function) of each read made by loop.py's own code
    step = {"now": 0}
    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        real = getattr(torch.Tensor, name)

        def reading(self, *a, _real=real, **k):
            caller = sys._getframe(1).f_code
            if caller.co_filename.endswith("training/loop.py") and self.numel() <= 2:
                reads.append((step["now"], caller.co_name))
            return _real(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, reading)
    add = loop.SkippedUpdates.add
    monkeypatch.setattr(loop.SkippedUpdates, "add",
                        lambda self, update: (step.__setitem__("now", step["now"] + 1), add(self, update)))
    out = tmp_path / "run"
    path = tiny_config(tmp_path, out, packing=True, pack_source_length=128, pack_target_length=48, batch_size=2,
                       optimizer="adafactor", lr=1e-3, max_steps=12, log_every=6, save_every=0)
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    cfg["data"].update(eval=[], test=[])
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    finetune.train(load_config(path))
    assert reads and {s for s, _ in reads} <= {6, 10, 12}
    assert {f for _, f in reads} <= {"flush", "settle"}
