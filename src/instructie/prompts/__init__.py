"""What the model reads and writes: instruction templates, the answer grammar (render and
parse), and grounding answer spans back to character offsets in the text."""
