"""Models: loading and saving, random-init T5 shapes, tokenizers and their vocabulary
extension, the copy head."""
