"""Torch-free point-cloud pipeline pieces: preprocessing, file reading, encoder/classifier runtimes."""
