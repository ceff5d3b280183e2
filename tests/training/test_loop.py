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
