"""Scoring: P/R/F1 per task and label, the competition score, no-model baselines, paired
bootstrap significance, and scoring prediction files."""
