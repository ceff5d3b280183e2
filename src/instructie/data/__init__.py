"""Training data: records from the configured sources, turned into prompt/answer instances
(with augmentation), tokenized and batched."""
