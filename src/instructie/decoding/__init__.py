"""Decoding: batched generation and the logits processors that constrain it."""
