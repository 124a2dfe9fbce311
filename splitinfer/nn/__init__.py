"""Torch modules (training only): entropy models, layers and models, split as in CompressAI."""
