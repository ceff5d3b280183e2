"""Memory hints, an optional plug-in: a prompt line with what the training data says about
a text, decoding that leans toward it, and a filter for the items it did not propose."""
