"""Prediction: records or raw texts -> prompts -> generation -> parsed, grounded items with
confidences. One path serves test, eval, extract, the Python API and the spaCy component."""
