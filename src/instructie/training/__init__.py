"""Training recipes (fine-tuning, span-corruption pretraining) and the pieces they share."""
